"""Makes the fork server die the moment the trusted process dies, and its children start
without the trusted process's main module.

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
not outlive its parent (the bench run's lane processes).

Every child of this fork server is a sandbox worker, whose target lives in
`tools/sandbox/process.py`. multiprocessing would first run the trusted process's
`__main__` again in each child (as `__mp_main__`: `kernelpilot`'s entry point, the grader's
throughput script), importing the agent, the store and their libraries: 2-4 s of a worker's
start on a loaded machine, before it is even isolated. Here each child skips that, and is
not handed the trusted side's command line (`sys.argv`) either."""
import atexit
import ctypes
import os
import signal

GUARD_ENV = "KERNELPILOT_FORKSERVER_PARENT"   # "<pid>" or "<pid>:thread" (started off the main thread)
PR_SET_PDEATHSIG = 1
NOT_FOR_WORKERS = ("init_main_from_name", "init_main_from_path", "sys_argv")   # of the preparation data


def guard(value: str) -> None:
    pid, _, where = value.partition(":")
    atexit.register(os._exit, 0)   # registered last, so it runs first: no slow finalisation
    without_main()
    if where != "thread":
        die_with(int(pid))


def without_main() -> None:
    """This process's forked children prepare from their parent's data less NOT_FOR_WORKERS
    (multiprocessing's fork server calls `spawn.prepare` in each child before its target)."""
    from multiprocessing import spawn

    prepare = spawn.prepare

    def prepare_worker(data: dict) -> None:
        prepare({key: value for key, value in data.items() if key not in NOT_FOR_WORKERS})

    spawn.prepare = prepare_worker


def die_with(parent: int) -> None:
    """SIGKILL for this process when the thread of `parent` that started it ends (start it
    from the main thread); exits now if `parent` is gone already."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:   # the parent died before the request took effect
        os._exit(0)


if os.environ.get(GUARD_ENV):
    guard(os.environ.pop(GUARD_ENV))
