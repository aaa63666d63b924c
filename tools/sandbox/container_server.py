"""The server inside a sandbox container: forks a fresh worker child per candidate.

It is the container's PID 1 (`python -m tools.sandbox.container_server`), started by
`tools/sandbox/docker.py`. It imports torch, triton and the worker once, then listens
on `/run/kernelpilot/control.sock` (a folder bind-mounted from the trusted host) for
exactly one control connection: the host's. Per candidate the host sends `spawn` with
the worker's settings; the server opens a fresh one-shot socket, answers its path,
accepts the host's worker connection there and forks a child that runs the unchanged
`tools.sandbox.worker.serve(conn, settings)`. The host speaks the worker protocol
with that child directly. On `end` the server SIGKILLs every process in the container
but itself (`kill(-1)`: strays the candidate detached included), reaps them, removes
the child's scratch folder and answers how the child ended.

Why PID 1: the kernel ignores SIGKILL sent to a namespace's init from inside it, so a
candidate (same uid) cannot kill the server; it is also made non-dumpable, so the
candidate cannot ptrace it. When the control connection closes (the host died or is
done), it kills everything and exits, and Docker removes the container.

Control messages are JSON lines, one per `send_bytes`. Imports only the standard
library (torch and triton are preloaded for the children's sake).
"""
import ctypes
import json
import os
import shutil
import signal
import socket
import sys
import time
from multiprocessing.connection import Connection, Listener

RUN_DIR = "/run/kernelpilot"
SCRATCH = "/scratch"
PR_SET_DUMPABLE = 4
REAP_S = 10.0
CHILD_SETTINGS = {"env": dict, "cuda": bool, "cuda_index": int, "gpu_memory_fraction": float,
                  "host_memory_bytes": int, "max_file_bytes": int}
OOM_COUNTERS = ("/sys/fs/cgroup/memory.events", "/sys/fs/cgroup/memory/memory.oom_control")


def main() -> None:
    preload()
    ctypes.CDLL(None).prctl(PR_SET_DUMPABLE, 0)
    control = accept_control()
    serial = 0
    while True:
        try:
            message = json.loads(control.recv_bytes(64 * 1024))
        except (EOFError, OSError):
            break   # the host is gone: nothing may outlive it
        serial += 1
        reply = spawn(control, message, serial) if message.get("kind") == "spawn" else \
            {"kind": "error", "message": f"unknown request {message.get('kind')!r}"}
        if reply is not None:
            control.send_bytes(json.dumps(reply).encode())
    sweep()
    sys.exit(0)


def preload() -> None:
    import torch  # noqa: F401  (imported once here, so a forked child starts in milliseconds)
    import triton  # noqa: F401
    import triton.language  # noqa: F401

    import tools.sandbox.worker  # noqa: F401


def accept_control() -> Connection:
    path = os.path.join(RUN_DIR, "control.sock")
    listener = Listener(path, family="AF_UNIX")
    try:
        return listener.accept()
    finally:
        listener.close()   # one control connection, ever: the candidate cannot open a second


def spawn(control: Connection, message: dict, serial: int) -> dict | None:
    """Serve one candidate: a one-shot socket, the host's connection, a forked child,
    then wait for `end` and clean up. Returns the `ended` reply (None if the host left)."""
    settings, problem = child_settings(message.get("settings"), serial)
    if problem:
        return {"kind": "error", "message": problem}
    path = os.path.join(RUN_DIR, f"worker-{serial}.sock")
    listener = Listener(path, family="AF_UNIX")
    listener._listener._socket.settimeout(message.get("accept_s", 30.0))
    control.send_bytes(json.dumps({"kind": "listening", "path": path}).encode())
    try:
        conn = listener.accept()
    except socket.timeout:
        return {"kind": "error", "message": "the host never connected to the worker socket"}
    finally:
        listener.close()
    child = fork_child(conn, settings)
    conn.close()
    oom_before = oom_kills()
    try:
        request = json.loads(control.recv_bytes(64 * 1024))
    except (EOFError, OSError):
        request = None
    status, was_alive = finish(child)
    shutil.rmtree(settings["workdir"], ignore_errors=True)
    if request is None:
        sweep()
        sys.exit(0)
    return {"kind": "ended", "status": status, "killed": was_alive, "oom_kills": oom_kills() - oom_before}


def child_settings(raw, serial: int) -> tuple[dict, str]:
    """The worker's settings from the host's message, type-checked; the workdir is ours."""
    if not isinstance(raw, dict) or set(raw) != set(CHILD_SETTINGS):
        return {}, f"spawn settings must have exactly the keys {sorted(CHILD_SETTINGS)}"
    for key, kind in CHILD_SETTINGS.items():
        if type(raw[key]) is not kind:
            return {}, f"spawn setting {key!r} must be a {kind.__name__}"
    workdir = os.path.join(SCRATCH, f"candidate-{serial}")
    os.mkdir(workdir, 0o700)
    env = dict(raw["env"], HOME=workdir, TMPDIR=workdir)
    return dict(raw, env=env, workdir=workdir), ""


def fork_child(conn: Connection, settings: dict) -> int:
    pid = os.fork()
    if pid:
        return pid
    try:
        with open("/proc/self/oom_score_adj", "w") as adj:
            adj.write("1000")   # under memory pressure the candidate dies, not the server
        from tools.sandbox.worker import serve

        serve(conn, settings)
    finally:
        os._exit(0)


def finish(child: int) -> tuple[int | None, bool]:
    """Kill the child and every other process but us; the child's end as Python's
    exit code (negative: the signal), and whether it was still running."""
    done, code = os.waitpid(child, os.WNOHANG)
    was_alive = done == 0
    sweep()
    if was_alive:
        done, code = wait_for(child)
    reap_all()
    if not done:
        return None, was_alive
    return (-os.WTERMSIG(code) if os.WIFSIGNALED(code) else os.WEXITSTATUS(code)), was_alive


def sweep() -> None:
    try:
        os.kill(-1, signal.SIGKILL)   # every process we may signal, except ourselves (and we are init)
    except ProcessLookupError:
        pass


def wait_for(child: int) -> tuple[int, int]:
    deadline = time.monotonic() + REAP_S
    while time.monotonic() < deadline:
        done, code = os.waitpid(child, os.WNOHANG)
        if done:
            return done, code
        time.sleep(0.01)
    return 0, 0


def reap_all() -> None:
    """As init we inherit the candidate's orphans: reap until none is left."""
    deadline = time.monotonic() + REAP_S
    while time.monotonic() < deadline:
        try:
            done, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if not done:
            sweep()
            time.sleep(0.01)


def oom_kills() -> int:
    """How many processes the container's memory limit has killed so far (cgroup v2 or v1)."""
    for path in OOM_COUNTERS:
        try:
            with open(path) as counters:
                for line in counters:
                    name, _, value = line.partition(" ")
                    if name == "oom_kill":
                        return int(value)
        except OSError:
            continue
    return 0


if __name__ == "__main__":
    main()
