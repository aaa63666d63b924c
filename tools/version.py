"""kernelpilot's own version, apart from tools/device.py (which imports torch) so that
`kernelpilot --version` answers at once."""
from importlib.metadata import PackageNotFoundError, version


def own_version() -> str:
    """kernelpilot's installed version (the CLI's --version, the grader's API, a training manifest)."""
    try:
        return version("kernelpilot")
    except PackageNotFoundError:    # run from a checkout on PYTHONPATH (the GPU machines), not installed
        return "(not installed: run from a source checkout)"
