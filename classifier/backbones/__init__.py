"""Pretrained backbones built in Keras from weights that pip packages ship (never downloaded)."""
