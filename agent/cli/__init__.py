"""`kernelpilot`: the command line (the console script is `agent.cli:main`)."""
from agent.cli.main import main

__all__ = ["main"]
