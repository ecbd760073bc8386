"""The `gdws` command line (`gdws convert`, `gdws export`) and the converted-model file it writes and reads."""
from gdws.cli.commands import main

__all__ = ["main"]
