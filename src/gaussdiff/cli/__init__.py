"""The command line: one module per subcommand, tyro over the configs of the rooms below."""

from .main import COMMANDS, main

__all__ = ["COMMANDS", "main"]
