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

A trusted process that is not root cannot hand out users: the worker then shares its
user, says so in `ready` (`privilege_note`), and the evaluation is flagged. Imports
only the standard library (it runs inside the sandbox).
"""
import ctypes
import os
import signal

UID_BASE = 1_600_000_000    # above any real account; pid_max is at most 2**22
PR_SET_PDEATHSIG, PR_SET_DUMPABLE = 1, 4


def worker_uid(pid: int) -> int:
    """The user (and group) id of the worker with this pid."""
    return UID_BASE + pid


def is_worker_uid(uid: int) -> bool:
    return UID_BASE <= uid < UID_BASE + (1 << 22)


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
