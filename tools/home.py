"""Where kernelpilot keeps its files: $KERNELPILOT_HOME, default ~/.kernelpilot.

It holds the history store (history.db), the agent's checkpoints (sessions.db), the
caches (cache/: baselines, device ceilings, Triton's and Inductor's compile caches)
and config.toml. `prepare_home()` makes it (and cache/) before a sandbox starts, so a
home that cannot be written is one clear error, not a worker's traceback.
"""
import os
import tempfile
from pathlib import Path


class HomeError(RuntimeError):
    """$KERNELPILOT_HOME (or its cache folder) cannot be made or written: which folder, and why."""


def kernelpilot_home() -> Path:
    return Path(os.environ.get("KERNELPILOT_HOME", Path.home() / ".kernelpilot"))


def prepare_home() -> Path:
    """The home, with its cache folder, made if missing and checked writable (a file is
    created and removed in each: as root, permissions say nothing, a read-only mount does)."""
    home = kernelpilot_home()
    for folder in (home, home / "cache"):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            tempfile.TemporaryFile(dir=folder).close()
        except OSError as error:
            raise HomeError(f"KERNELPILOT_HOME cannot be used: {folder}: {error.strerror}") from error
    return home
