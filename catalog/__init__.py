"""The catalog: data model, image store, hashing, ingest, labels, dedupe, review queue, export."""
