"""The commands, one module a group; options several of them share are defined here once."""

import typer

MODEL = typer.Option(None, "--model", help="Model version \\[default: the active one].",
                     show_default=False)
