"""Where kernelpilot keeps its files: $KERNELPILOT_HOME, default ~/.kernelpilot.

It holds the history store (history.db), the agent's checkpoints (sessions.db), the
caches (cache/: baselines, device ceilings, Triton's and Inductor's compile caches)
and config.toml.
"""
import os
from pathlib import Path


def kernelpilot_home() -> Path:
    return Path(os.environ.get("KERNELPILOT_HOME", Path.home() / ".kernelpilot"))
