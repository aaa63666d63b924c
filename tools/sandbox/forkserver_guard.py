"""Makes the fork server die the moment the trusted process dies.

Imported once, as the last preload module, by the fork server of
`tools/sandbox/process.py`; it does nothing in any other process (the trusted side
names the fork server's parent in `GUARD_ENV` of the environment the fork server
starts with, and nothing else carries that variable).

multiprocessing's fork server notices its parent's death only as EOF on a pipe, then
raises SystemExit and finalises an interpreter that imported torch and Triton, which
can take seconds on a loaded machine; its workers (PR_SET_PDEATHSIG on the fork
server) live until it is gone. Here the fork server asks the kernel for SIGKILL at its
parent's death, when the parent started it from its main thread (the signal follows
the thread that forked, and only the main thread lives as long as the process), and
in any case leaves at once instead of finalising. `die_with` serves any child that must
not outlive its parent (the bench run's lane processes)."""
import atexit
import ctypes
import os
import signal

GUARD_ENV = "KERNELPILOT_FORKSERVER_PARENT"   # "<pid>" or "<pid>:thread" (started off the main thread)
PR_SET_PDEATHSIG = 1


def guard(value: str) -> None:
    pid, _, where = value.partition(":")
    atexit.register(os._exit, 0)   # registered last, so it runs first: no slow finalisation
    if where != "thread":
        die_with(int(pid))


def die_with(parent: int) -> None:
    """SIGKILL for this process when the thread of `parent` that started it ends (start it
    from the main thread); exits now if `parent` is gone already."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:   # the parent died before the request took effect
        os._exit(0)


if os.environ.get(GUARD_ENV):
    guard(os.environ.pop(GUARD_ENV))
