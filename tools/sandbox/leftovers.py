"""What a process-sandbox worker leaves behind, found and removed by the trusted side.

A worker runs as a user of its own (`tools/sandbox/privilege.py`), so whatever the
candidate started or wrote carries that user's id, whatever it did to hide it:
- `kill_user(uid)`: every process of the user (a detached `setsid` chain, a child that
  cleared its parent-death signal and left the worker's subreaper), killed until none is
  left;
- `remove_owned(uid)`: the files the user made in the shared scratch folders (/dev/shm,
  /dev/mqueue), which would otherwise outlive the worker;
- `sweep_stale()`: what a trusted process killed with SIGKILL could not clean (its
  workers' folders and exchange arenas, named with its pid; files of worker users whose
  worker is gone), removed by the next sandbox that starts.

Trusted side only.
"""
import contextlib
import os
import shutil
import signal
import tempfile
from pathlib import Path

from tools.sandbox.privilege import UID_BASE, is_worker_uid, proc_status
from tools.sandbox.shm import ARENA_PREFIX

SCRATCH_DIRS = ("/dev/shm", "/dev/mqueue")
WORKDIR_PREFIX = "kernelpilot-sbx-"
KILL_ROUNDS = 20


def workdir_prefix() -> str:
    """Folders (and arenas) carry the trusted pid, so a sweep knows whose they were."""
    return f"{WORKDIR_PREFIX}{os.getpid()}-"


def processes_of(uid: int) -> list[int]:
    """Live processes whose real or effective user is `uid` (from /proc/PID/status)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = proc_status(entry)
        except (OSError, ValueError):
            continue
        real, effective = (int(v) for v in fields.get("Uid", "-1 -1").split()[:2])
        if uid in (real, effective) and fields.get("State", "").split()[:1] != ["Z"]:
            found.append(int(entry))
    return found


def kill_user(uid: int) -> list[int]:
    """SIGKILL every process of `uid` until none is left; the pids killed."""
    killed: list[int] = []
    for _ in range(KILL_ROUNDS):
        found = processes_of(uid)
        if not found:
            return killed
        for pid in found:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        killed += found
    return killed


def remove_owned(uid: int, folders=SCRATCH_DIRS) -> list[str]:
    """Delete what `uid` made directly in the shared scratch folders; the paths removed."""
    return _remove_where(lambda owner: owner == uid, folders)


def sweep_stale() -> list[str]:
    """Remove leftovers of dead trusted processes and of dead workers' users."""
    removed = []
    for folder, prefix in ((tempfile.gettempdir(), WORKDIR_PREFIX), ("/dev/shm", ARENA_PREFIX)):
        for path in Path(folder).glob(prefix + "*"):
            owner = path.name[len(prefix):].split("-", 1)[0]
            if owner.isdigit() and not _alive(int(owner)):
                _remove(str(path))
                removed.append(str(path))
    return removed + _remove_where(lambda owner: is_worker_uid(owner) and not _alive(owner - UID_BASE), SCRATCH_DIRS)


def _remove_where(owned_by, folders) -> list[str]:
    """Delete the entries of `folders` whose owner's uid satisfies `owned_by`; the paths removed."""
    removed = []
    for folder in folders:
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            try:
                if owned_by(entry.stat(follow_symlinks=False).st_uid):
                    _remove(entry.path)
                    removed.append(entry.path)
            except OSError:
                continue
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove(path: str) -> None:
    """Remove a file or a folder; one already gone is what was wanted (two sandboxes starting
    at once, as a batch run's lanes do, sweep the same leftovers)."""
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
