"""A worker's own unprivileged user: what it may not read, open or signal.

When the trusted process runs as root, each process-sandbox worker drops to a user id
of its own, `worker_uid(pid)` (a fixed base plus its pid, so two live workers never
share one and no real account is reused), right after its CUDA context exists and
before the candidate is imported. As that user the candidate cannot:
- read any other process's /proc entries (environ, maps, mem, cmdline of root's
  processes: the trusted side, the fork server, other workers), /etc/shadow, or any
  root-only file;
- open raw devices (block devices, /dev/kvm, loop-control are root-only; the GPU nodes
  are open to all users);
- write the trusted side's caches (baselines, roofline ceilings: root's files), or
  another worker's exchange arena (each is handed to one worker's user);
- signal or trace another worker (another user), nor hide a process from the trusted
  side: every process of the worker's user is the candidate's, whatever its parent,
  so the trusted side finds and kills them all by user (`tools/sandbox/leftovers.py`).

Before it changes user the worker (still root) gives itself a private view of the
mounts (`private_view`): /proc shows only its own user's processes (hidepid), so not
even the command lines of the trusted side are visible, and the folders of the import
path that other users may not enter (a Python under /root) are reached through a
tmpfs that holds only them, so the rest of such a folder stays hidden.

A trusted process that is not root cannot hand out users: the worker then shares its
user, says so in `ready` (`privilege_note`), and the evaluation is flagged. Imports
only the standard library (it runs inside the sandbox).
"""
import ctypes
import os
import signal
from pathlib import Path

UID_BASE = 1_600_000_000    # above any real account; pid_max is at most 2**22
PR_SET_PDEATHSIG, PR_SET_DUMPABLE = 1, 4
CLONE_NEWNS = 0x00020000
MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_BIND, MS_REC, MS_PRIVATE = 0x2, 0x4, 0x8, 0x1000, 0x4000, 0x40000


def worker_uid(pid: int) -> int:
    """The user (and group) id of the worker with this pid."""
    return UID_BASE + pid


def is_worker_uid(uid: int) -> bool:
    return UID_BASE <= uid < UID_BASE + (1 << 22)


def proc_status(pid: int | str) -> dict[str, str]:
    """The fields of /proc/PID/status (its Uid line cannot be hidden the way /proc/PID's
    owner can, by a process that makes itself non-dumpable); OSError once the process is gone."""
    with open(f"/proc/{pid}/status") as status:
        return dict(line.split(":", 1) for line in status if ":" in line)


def can_drop() -> bool:
    """Only root can hand a worker a user of its own."""
    return os.geteuid() == 0


def drop(workdir: str, owned: list[str]) -> int:
    """Become `worker_uid(getpid())`: the working directory and `owned` files (made as
    root before) are handed over first. Returns the new uid; raises OSError if the
    kernel refuses (the worker then fails to start: never a silent root worker)."""
    uid = worker_uid(os.getpid())
    for path in [workdir, *owned]:
        os.chown(path, uid, uid)
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)
    if os.getuid() != uid or os.geteuid() != uid or os.getgid() != uid:
        raise OSError(f"the worker is still uid {os.geteuid()} after dropping to {uid}")
    libc = ctypes.CDLL(None, use_errno=True)
    # A change of credentials clears both: die with the fork server again, and keep
    # /proc/self readable by the worker itself (no other user shares its uid).
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    libc.prctl(PR_SET_DUMPABLE, 1, 0, 0, 0)
    return uid


def private_view(read_roots: list[str]) -> None:
    """A mount namespace of the worker's own (call as root, before `drop`): /proc with
    only the worker user's processes, and every read root that lies below a folder other
    users cannot enter reachable through a tmpfs over that folder. Raises OSError."""
    libc = ctypes.CDLL(None, use_errno=True)
    _check(libc, libc.unshare(CLONE_NEWNS), "unshare(mount namespace)")
    _check(libc, libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None), "make / private")
    for folder, roots in closed_folders(read_roots).items():
        _reopen(libc, folder, roots)
    _check(libc, libc.mount(b"proc", b"/proc", b"proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, b"hidepid=2"), "mount /proc")


def closed_folders(read_roots: list[str]) -> dict[str, list[str]]:
    """{folder others cannot enter: [read roots below it]}, outermost roots only."""
    found: dict[str, list[str]] = {}
    roots = sorted({os.path.realpath(r) for r in read_roots if os.path.isdir(r)})
    for root in roots:
        if any(root != other and root.startswith(other + "/") for other in roots):
            continue   # inside another root, which brings it along
        for ancestor in reversed(Path(root).parents[:-1] if len(Path(root).parents) > 1 else []):
            if not os.stat(ancestor).st_mode & 0o001:
                found.setdefault(str(ancestor), []).append(root)
                break
    return found


def _reopen(libc, folder: str, roots: list[str]) -> None:
    """Cover `folder` with a tmpfs others may enter and bind `roots` back into it."""
    handles = [os.open(root, os.O_PATH | os.O_CLOEXEC) for root in roots]
    try:
        _check(libc, libc.mount(b"tmpfs", folder.encode(), b"tmpfs", MS_NOSUID | MS_NODEV, b"mode=0755"),
               f"tmpfs over {folder}")
        for root, handle in zip(roots, handles):
            os.makedirs(root, mode=0o755, exist_ok=True)
            _check(libc, libc.mount(f"/proc/self/fd/{handle}".encode(), root.encode(), None, MS_BIND | MS_REC, None),
                   f"bind {root}")
    finally:
        for handle in handles:
            os.close(handle)


def _check(libc, code: int, what: str) -> None:
    if code != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")
