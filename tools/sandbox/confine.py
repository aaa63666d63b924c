"""Filesystem, TCP and signal confinement of a sandbox worker with Linux Landlock.

Applied by the worker right before it imports the candidate (`confine(roots)`), so it
holds for the candidate, every thread it starts and every child it spawns:
- writes (create, delete, rename, truncate, write) only beneath the `write` roots: the
  throw-away working directory, /dev/shm (exchange arenas), /dev (GPU device files)
  and the caches the request may fill;
- reads and executes only beneath the `read` roots: the system folders, the Python
  installation and its import path, the CUDA libraries, the caches; so no home folder,
  project secret or other checkout can be read;
- no TCP bind or connect (on top of the network namespace), no signals to processes
  outside the sandbox, and no ptrace-style access (/proc/PID/environ, /proc/PID/mem)
  to them.

Needs Landlock (Linux 5.13+; TCP rules 6.7+, signal scoping 6.12+): what the kernel
lacks is reported, not faked, and the worker says whether the filesystem is confined.
Imports only the standard library (it runs inside the sandbox).
"""
import ctypes
import os
import sys

SYS_CREATE_RULESET, SYS_ADD_RULE, SYS_RESTRICT_SELF = 444, 445, 446   # x86-64 and arm64 alike
PR_SET_NO_NEW_PRIVS = 38
RULE_PATH_BENEATH = 1
CREATE_RULESET_VERSION = 1

EXECUTE, WRITE_FILE, READ_FILE, READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
WRITE_DIR = sum(1 << bit for bit in range(4, 13))           # remove, make char/dir/reg/sock/fifo/block/sym
REFER, TRUNCATE = 1 << 13, 1 << 14
READ = EXECUTE | READ_FILE | READ_DIR
FILE_RIGHTS = EXECUTE | WRITE_FILE | READ_FILE | TRUNCATE
NET_BIND_TCP, NET_CONNECT_TCP = 1 << 0, 1 << 1
SCOPE_SIGNAL = 1 << 1

SYSTEM_READ_ROOTS = ("/usr", "/lib", "/lib64", "/lib32", "/bin", "/sbin", "/etc", "/proc", "/sys", "/dev", "/opt",
                     "/run")


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64),
                ("scoped", ctypes.c_uint64)]


class _PathBeneath(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def read_roots(extra: list[str]) -> list[str]:
    """Everything a worker legitimately reads: the system, Python and its import path,
    the dynamic libraries' folders, and `extra` (working directory, caches)."""
    roots = list(SYSTEM_READ_ROOTS) + [sys.prefix, sys.base_prefix, sys.exec_prefix,
                                       os.path.dirname(os.path.realpath(sys.executable))]
    roots += [p for p in sys.path if p and os.path.isdir(p)]
    roots += [p for p in os.environ.get("LD_LIBRARY_PATH", "").split(os.pathsep) if p]
    roots += [os.environ[name] for name in ("CUDA_HOME", "CUDA_PATH") if name in os.environ]
    return roots + extra


def confine(write: list[str], read: list[str]) -> str:
    """Restrict this process as the module docstring says; '' when fully applied, else
    what could not be (the caller reports it)."""
    libc = ctypes.CDLL(None, use_errno=True)
    abi = libc.syscall(SYS_CREATE_RULESET, None, 0, CREATE_RULESET_VERSION)
    if abi < 1:
        return f"Landlock unavailable ({os.strerror(ctypes.get_errno())})"
    handled = READ | WRITE_FILE | WRITE_DIR | (REFER if abi >= 2 else 0) | (TRUNCATE if abi >= 3 else 0)
    attr = _RulesetAttr(handled, (NET_BIND_TCP | NET_CONNECT_TCP) if abi >= 4 else 0, SCOPE_SIGNAL if abi >= 6 else 0)
    size = ctypes.sizeof(attr) if abi >= 6 else 16 if abi >= 4 else 8
    ruleset = libc.syscall(SYS_CREATE_RULESET, ctypes.byref(attr), size, 0)
    if ruleset < 0:
        return f"Landlock ruleset refused ({os.strerror(ctypes.get_errno())})"
    try:
        writable = handled & ~READ
        for path in dict.fromkeys(read):
            _allow(libc, ruleset, path, READ)
        for path in dict.fromkeys(write):
            _allow(libc, ruleset, path, READ | writable)
        libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
        if libc.syscall(SYS_RESTRICT_SELF, ruleset, 0) != 0:
            return f"Landlock restriction refused ({os.strerror(ctypes.get_errno())})"
    finally:
        os.close(ruleset)
    missing = [what for what, needed in (("TCP rules", 4), ("signal scoping", 6)) if abi < needed]
    return f"Landlock ABI {abi} lacks {', '.join(missing)}" if missing else ""


def _allow(libc, ruleset: int, path: str, access: int) -> None:
    try:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except OSError:
        return   # a root that does not exist on this machine
    try:
        if not os.path.isdir(path):
            access &= FILE_RIGHTS
        rule = _PathBeneath(access, fd)
        if libc.syscall(SYS_ADD_RULE, ruleset, RULE_PATH_BENEATH, ctypes.byref(rule), 0) != 0:
            raise OSError(ctypes.get_errno(), f"landlock_add_rule({path})")
    finally:
        os.close(fd)
