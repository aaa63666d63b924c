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
    """The kernelpilot checkout's commit (bench's summary, the recipe's steps); where the copy has no
    git history (the GPU machines get a copy of the working tree), KERNELPILOT_COMMIT names it."""
    try:
        done = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent, capture_output=True,
                              text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        done = None
    return (done.stdout.strip() if done else "") or os.environ.get("KERNELPILOT_COMMIT") or None
