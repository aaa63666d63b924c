"""The agent's errors that reach the command line, each of which agent/cli/main.py turns into
an exit code. They live here, apart from the code that raises them, so that the command line
can catch them without importing torch, LangGraph or the bench runner for every command."""
import shutil
from pathlib import Path


class PolicyError(RuntimeError):
    """The policy itself cannot go on (endpoint down, key refused, unknown model): one clear line."""


class SessionError(LookupError):
    """No session to go on with: none named, or no checkpoint under the id given (a usage error)."""


class CheckpointError(RuntimeError):
    """The checkpoint database cannot be used (not a database, a full disk): one line
    naming the file and the cause."""

    def __init__(self, path: Path, cause: str):
        # SQLite says only "disk I/O error" when the disk fills as it maps its WAL index.
        full = path.parent.is_dir() and shutil.disk_usage(path.parent).free < 64 * 1024
        super().__init__(f"cannot use the session checkpoints at {path}: {cause}" + (" (its disk is full)" if full else ""))


class LaneError(RuntimeError):
    """A lane's runtime broke or its process died: the run stops (run it again to resume)."""
