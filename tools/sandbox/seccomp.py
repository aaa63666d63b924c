"""A seccomp filter for the sandbox worker: no socket but the network namespace's own.

Installed by the worker right before it imports the candidate, for every thread of
the process (TSYNC), inherited by every child:
- `socket()` of any family other than AF_INET and AF_INET6 fails with EACCES. Those two
  reach nothing (the worker's network namespace has no interface but a down loopback,
  and Landlock refuses TCP bind and connect); every other family could reach outside
  the worker: pathname Unix sockets (docker.sock, a PostgreSQL socket, the grader
  service), netlink, vsock (the hypervisor), packet sockets. Sockets made before the
  filter (the worker's own pipe to the trusted side) keep working.
- `io_uring_setup()` fails with EPERM: io_uring can open sockets and files without
  the system calls this filter and Landlock see.
- any system call of a foreign ABI (x86-64's 32-bit `int 0x80` entry, its x32 numbers)
  fails with EPERM.

Socket pairs (`socketpair`) stay allowed: they connect nothing outside the process.
Imports only the standard library (it runs inside the sandbox).
"""
import ctypes
import os
import platform

# (audit arch, socket, io_uring_setup, seccomp) per machine
ABI = {"x86_64": (0xC000003E, 41, 425, 317), "aarch64": (0xC00000B7, 198, 425, 277)}
AF_INET, AF_INET6 = 2, 10
BPF_LD_W_ABS, BPF_JEQ_K, BPF_JGE_K, BPF_RET_K = 0x20, 0x15, 0x35, 0x06
X32_BIT = 0x40000000
RET_ALLOW, RET_ERRNO = 0x7FFF0000, 0x00050000
EACCES, EPERM = 13, 1
SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC = 1, 1
PR_SET_NO_NEW_PRIVS = 38
OFFSET_NR, OFFSET_ARCH, OFFSET_ARG0 = 0, 4, 16     # struct seccomp_data (arg0's low word: little-endian)


class _Filter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8), ("k", ctypes.c_uint32)]


class _Program(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_Filter))]


def program(arch: int, nr_socket: int, nr_io_uring_setup: int) -> list[tuple[int, int, int, int]]:
    """The filter as (code, jump-if-true, jump-if-false, k) rows; jumps count rows skipped."""
    return [
        (BPF_LD_W_ABS, 0, 0, OFFSET_ARCH),
        (BPF_JEQ_K, 1, 0, arch),
        (BPF_RET_K, 0, 0, RET_ERRNO | EPERM),             # a foreign ABI
        (BPF_LD_W_ABS, 0, 0, OFFSET_NR),
        (BPF_JGE_K, 0, 1, X32_BIT),
        (BPF_RET_K, 0, 0, RET_ERRNO | EPERM),             # x86-64's x32 entry (same arch word)
        (BPF_JEQ_K, 0, 1, nr_io_uring_setup),
        (BPF_RET_K, 0, 0, RET_ERRNO | EPERM),
        (BPF_JEQ_K, 0, 4, nr_socket),                     # not socket(): allow
        (BPF_LD_W_ABS, 0, 0, OFFSET_ARG0),                # the address family
        (BPF_JEQ_K, 2, 0, AF_INET),
        (BPF_JEQ_K, 1, 0, AF_INET6),
        (BPF_RET_K, 0, 0, RET_ERRNO | EACCES),
        (BPF_RET_K, 0, 0, RET_ALLOW),
    ]


def restrict_sockets() -> str:
    """Install the filter on every thread; '' when installed, else why not (reported)."""
    abi = ABI.get(platform.machine())
    if abi is None:
        return f"no socket filter for {platform.machine()}"
    arch, nr_socket, nr_io_uring_setup, nr_seccomp = abi
    rows = program(arch, nr_socket, nr_io_uring_setup)
    filters = (_Filter * len(rows))(*[_Filter(*row) for row in rows])
    prog = _Program(len(rows), filters)
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    if libc.syscall(nr_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC, ctypes.byref(prog)) != 0:
        return f"seccomp filter refused ({os.strerror(ctypes.get_errno())})"
    return ""
