"""kernelpilot's own version, apart from tools/device.py (which imports torch) so that
`kernelpilot --version` answers at once."""
import os
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path


def own_version() -> str:
    """kernelpilot's installed version (the CLI's --version, the grader's API, a training manifest)."""
    try:
        return version("kernelpilot")
    except PackageNotFoundError:    # run from a checkout on PYTHONPATH (the GPU machines), not installed
        return "(not installed: run from a source checkout)"


def own_commit() -> str | None:
    """The kernelpilot checkout's commit (bench's summary, the recipe's steps): KERNELPILOT_COMMIT when
    set (a GPU machine gets a copy of the working tree whose git history, if any, may be older than
    the files), else git's HEAD."""
    if os.environ.get("KERNELPILOT_COMMIT"):
        return os.environ["KERNELPILOT_COMMIT"]
    try:
        done = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent, capture_output=True,
                              text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() or None
