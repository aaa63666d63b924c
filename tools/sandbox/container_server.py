"""The server inside a sandbox container: forks a fresh worker child per candidate.

It is the container's PID 1 (`python -m tools.sandbox.container_server`), started by
`tools/sandbox/docker.py`. It imports torch, triton and the worker once, binds two unix
sockets in `/run/kernelpilot` (a host folder, made read-only by the host right after)
and takes exactly one control connection: the host's. Per candidate the host sends
`spawn` with the worker's settings and a fresh token; the server accepts the worker
connection that presents the token and forks a child that runs the unchanged
`tools.sandbox.worker.serve(conn, settings)`; the host then speaks the worker protocol
with that child directly. While it runs, `log` returns the tail of its log (read
safely); on `end` the server SIGKILLs every process in the container but itself
(`kill(-1)`: strays the candidate detached included), reaps them, removes the child's
scratch folder and answers how the child ended (and whether the memory limit killed).

Why PID 1: the kernel ignores SIGKILL sent to a namespace's init from inside it, so a
candidate (same uid) cannot kill the server; it is also made non-dumpable, so the
candidate cannot ptrace it or read its environment. The child closes the control
connection and the listener before the candidate loads. When the control connection
closes (the host died or is done), the server kills everything and exits, and Docker
removes the container.

Control messages are JSON, one per `send_bytes`. Imports only the standard library
(torch and triton are preloaded for the children's sake).
"""
import ctypes
import json
import os
import shutil
import signal
import socket
import sys
import time
import traceback
from multiprocessing.connection import Connection

from tools.sandbox.logs import log_tail

RUN_DIR = "/run/kernelpilot"
SCRATCH = "/scratch"
PR_SET_DUMPABLE = 4
REAP_S = 10.0
ACCEPT_S = 30.0
TOKEN_S = 5.0
LOG_NAME = "worker.log"   # what tools/sandbox/worker.py writes in its working directory
CHILD_SETTINGS = {"env": dict, "cuda": bool, "cuda_index": int, "gpu_memory_fraction": float,
                  "host_memory_bytes": int, "max_file_bytes": int}
OOM_COUNTERS = ("/sys/fs/cgroup/memory.events", "/sys/fs/cgroup/memory/memory.oom_control")


def main() -> None:
    preload()
    ctypes.CDLL(None).prctl(PR_SET_DUMPABLE, 0)
    # Both sockets exist before the host connects; it then makes their folder read-only,
    # so no candidate can add a file or a socket there.
    workers = listen(os.path.join(RUN_DIR, "worker.sock"), backlog=8)
    with listen(os.path.join(RUN_DIR, "control.sock"), backlog=1) as listener:
        control = Connection(listener.accept()[0].detach())   # one control connection, ever
    serial = 0
    while True:
        try:
            message = json.loads(control.recv_bytes(64 * 1024))
        except (EOFError, OSError, ValueError):
            break   # the host is gone: nothing may outlive it
        serial += 1
        reply = spawn(control, workers, message, serial) if message.get("kind") == "spawn" else \
            {"kind": "error", "message": f"unknown request {message.get('kind')!r}"}
        control.send_bytes(json.dumps(reply).encode())
    sweep()
    sys.exit(0)


def preload() -> None:
    import torch  # noqa: F401  (imported once here, so a forked child starts in milliseconds)
    import triton  # noqa: F401
    import triton.language  # noqa: F401

    import tools.sandbox.worker  # noqa: F401


def listen(path: str, backlog: int) -> socket.socket:
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(backlog)
    return listener


def accept_host(workers: socket.socket, token: bytes) -> Connection | None:
    """The host's worker connection: the first that presents this spawn's token (a
    connection a dead candidate left queued presents nothing and is dropped)."""
    deadline = time.monotonic() + ACCEPT_S
    while time.monotonic() < deadline:
        workers.settimeout(max(deadline - time.monotonic(), 0.01))
        try:
            peer, _ = workers.accept()
        except TimeoutError:
            return None
        peer.settimeout(None)
        conn = Connection(peer.detach())
        if conn.poll(TOKEN_S) and conn.recv_bytes(256) == token:
            return conn
        conn.close()
    return None


def spawn(control: Connection, workers: socket.socket, message: dict, serial: int) -> dict:
    """Serve one candidate: take the host's worker connection, fork a child onto it,
    answer `log` until `end`, then kill everything the candidate left. The reply says
    how the child ended."""
    settings, problem = child_settings(message.get("settings"), serial)
    if problem or not isinstance(message.get("token"), str):
        return {"kind": "error", "message": problem or "spawn needs a token"}
    control.send_bytes(json.dumps({"kind": "listening"}).encode())
    conn = accept_host(workers, message["token"].encode())
    if conn is None:
        shutil.rmtree(settings["workdir"], ignore_errors=True)
        return {"kind": "error", "message": "the host never connected to the worker socket"}
    child = fork_child(conn, (control, workers), settings)
    conn.close()
    oom_before = oom_kills()
    host_left = not answer_until_end(control, settings["workdir"])
    status, was_alive = finish(child)
    shutil.rmtree(settings["workdir"], ignore_errors=True)
    if host_left:
        sys.exit(0)
    return {"kind": "ended", "status": status, "killed": was_alive, "oom_kills": oom_kills() - oom_before}


def answer_until_end(control: Connection, workdir: str) -> bool:
    """Answer `log` requests while the candidate runs; True at `end`, False if the host left."""
    while True:
        try:
            request = json.loads(control.recv_bytes(64 * 1024))
        except (EOFError, OSError, ValueError):
            return False
        if request.get("kind") == "end":
            return True
        if request.get("kind") == "log":
            text = log_tail(os.path.join(workdir, LOG_NAME), int(request.get("chars", 4000)))
            control.send_bytes(json.dumps({"kind": "log", "text": text}).encode())


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


def fork_child(conn: Connection, private: tuple, settings: dict) -> int:
    pid = os.fork()
    if pid:
        return pid
    code = 0
    try:
        for handle in private:
            handle.close()   # the candidate must not touch the control channel or the listener
        ctypes.CDLL(None).prctl(PR_SET_DUMPABLE, 1)   # else /proc/self is root's and unwritable
        with open("/proc/self/oom_score_adj", "w") as adj:
            adj.write("1000")   # under memory pressure the candidate dies, not the server
        from tools.sandbox.worker import serve

        serve(conn, settings)
    except BaseException:  # the worker's own setup failed: say so on the container's stderr
        traceback.print_exc()
        code = 70
    finally:
        os._exit(code)


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
