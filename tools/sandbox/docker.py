"""The docker sandbox: every candidate runs in a fresh child inside a hardened container.

A sibling of `tools/sandbox/process.py`: both satisfy the `Sandbox` and `Worker` protocols
of `tools/sandbox/contracts.py` (`worker()`, `settle()`, `close()`; a worker's `call`,
`log_tail`, `kill`, `close`), same requests, same replies, so the evaluator judges both
alike. Two modes:

- warm (default): a long-lived container whose server (PID 1, torch imported) forks a
  fresh child per candidate and, after it, SIGKILLs everything in the container but
  itself; a container start is paid once, not per evaluation.
- strict (`DockerConfig(strict=True)`, `KERNELPILOT_DOCKER_MODE=strict`): one container
  per candidate, removed after it; `warm` containers are started ahead of need.

What a container gets is in `tools/sandbox/container_spec.py` (no network, read-only
root, tmpfs scratch, memory and pids limits, no capabilities, no-new-privileges, a
non-root user, GPUs by device request). The worker protocol runs over a unix socket in
a host folder; replies are checked by `protocol.unpack_reply` and outputs compared here,
on the trusted side. Wall-clock limits are enforced from here: at a deadline the server
is told to kill the child (and the container is removed if the server does not answer).
Exchange arenas (files in the host's /dev/shm) are hard-linked into the container's
/dev/shm for one request. Containers are removed on every path (close, errors, atexit;
the server exits when the host's control connection closes, and Docker auto-removes).

    with DockerSandbox(None, Limits(), warm=1) as sandbox:
        Evaluator(sandbox, detect(force_cpu=True)).evaluate(problem, source)

Not covered: in warm mode later candidates share the container's Triton cache with
earlier ones (strict mode does not); the GPU path (CUDA IPC arenas across the container
boundary) has not been run on a GPU host yet.
"""
import atexit
import dataclasses
import os
import signal
import threading
import time
import uuid
from pathlib import Path

import docker
import docker.errors

from tools.records import Phase
from tools.sandbox.container_box import DAEMON_GONE, Box, ChildEnd, labelled
from tools.sandbox.container_image import default_tag
from tools.sandbox.container_spec import DockerConfig, container_kwargs, container_user, server_env, worker_cuda_index
from tools.sandbox.contracts import Limits, SandboxError, SandboxKind
from tools.sandbox.protocol import failure, pack, read_reply
from tools.sandbox.replies import Ready, ReplyKind, parse_reply

POLL_S = 0.2
_live_boxes: set[Box] = set()


@atexit.register
def _remove_leftovers() -> None:
    for box in list(_live_boxes):
        try:
            box.remove()
        except SandboxError:
            pass   # the daemon is gone; nothing more can be done at exit
        _live_boxes.discard(box)


def connect(base_url: str | None = None,
            then: str = " and check with `kernelpilot sandbox check`") -> docker.DockerClient:
    """A client of a daemon that answers, or SandboxError saying how to get one (`then`: what
    to do once it runs; `sandbox check` itself says nothing more)."""
    try:
        client = docker.DockerClient(base_url=base_url) if base_url else docker.from_env()
        client.ping()
    except DAEMON_GONE as error:
        where = base_url or os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
        raise SandboxError(f"no Docker daemon reachable at {where} ({type(error).__name__}): start dockerd "
                           f"(sandbox_image/README.md){then}") from None
    return client


def require_image(client: docker.DockerClient, image: str) -> None:
    try:
        client.images.get(image)
    except docker.errors.ImageNotFound:
        raise SandboxError(f"the sandbox image {image} is not on the Docker daemon: build it with "
                           "`kernelpilot sandbox build`") from None


class DockerWorker:
    """One candidate's fresh child inside a sandbox container; talk to it with `call`."""

    def __init__(self, box: Box, settings: dict, limits: Limits, release):
        self.box, self.limits, self._release = box, limits, release
        self.ready: Ready | None = None
        self.ended: ChildEnd | None = None
        self._last_log = ""
        self._ending = threading.Lock()   # the reply watchdog may end the child from its own thread
        self._sender: threading.Thread | None = None
        self.conn = box.spawn(settings, limits.start_s)

    def wait_ready(self) -> Ready:
        if self.ready is None:
            reply = parse_reply(self._receive(self.limits.start_s, "start"), ReplyKind.READY, Phase.START)
            if not isinstance(reply, Ready):
                log = self.log_tail()
                self.close()
                raise SandboxError(f"sandbox worker failed to start in container {self.box.name}: "
                                   f"{reply.message}\n{log}")
            # Facts of the container's configuration, whatever the worker's own unshare()
            # and Landlock could do: no network interface but loopback (network_mode none),
            # a read-only root where only the tmpfs scratch and the protocol's folders are writable,
            # its own process namespace (no other process's /proc is visible).
            self.ready = dataclasses.replace(reply, network_isolated=True, isolation_note="docker: network none",
                                             fs_isolated=True, fs_note="docker: read-only root, tmpfs scratch",
                                             privilege_note="")
        return self.ready

    def alive(self) -> bool:
        return self.ended is None

    def call(self, request: dict, timeout: float) -> dict:
        """Send one request; the reply, or a `failure` record for a crash or a timeout."""
        self.wait_ready()
        deadline = time.monotonic() + timeout
        request, links = self._link_arena(request)
        try:
            self._sender = threading.Thread(target=self._send, args=(pack(request),), daemon=True)
            self._sender.start()
            self._sender.join(timeout)
            if self._sender.is_alive():   # the child stopped reading: it hangs in some thread
                self.kill()
                return failure("timeout", request["kind"],
                               f"did not accept the '{request['kind']}' request within {timeout:.0f} s")
            return self._receive(max(deadline - time.monotonic(), 0.01), request["kind"])
        finally:
            for link in links:
                link.unlink(missing_ok=True)

    def _link_arena(self, request: dict) -> tuple[dict, list[Path]]:
        """A host arena file, hard-linked into the container's /dev/shm for this request."""
        arena = request.get("arena")
        if not arena or arena["kind"] != "file":
            return request, []
        link = self.box.dirs.shm / Path(arena["path"]).name
        try:
            os.link(arena["path"], link)
            if os.getuid() == 0:
                os.chown(link, *container_user())
        except OSError as error:
            raise SandboxError(f"cannot share the exchange arena with container {self.box.name}: {error}") from None
        return dict(request, arena=dict(arena, path=f"/dev/shm/{link.name}")), [link]

    def _send(self, data: bytes) -> None:
        try:
            self.conn.send_bytes(data)
        except OSError:
            pass   # the child is gone; _receive reports how it ended

    def _receive(self, timeout: float, phase: str) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            if self.conn.poll(min(POLL_S, max(deadline - time.monotonic(), 0))):
                return self._read_reply(phase, deadline)
            if time.monotonic() > deadline:
                self.kill()
                return failure("timeout", phase, f"no answer within {timeout:.0f} s (wall-clock limit)")

    def _read_reply(self, phase: str, deadline: float) -> dict:
        return read_reply(self.conn, phase, deadline, self._kill_quietly, self._died)

    def _died(self, phase: str) -> dict:
        end = self.kill()
        if end.status is not None and end.status < 0:
            how = f"killed by signal {signal.Signals(-end.status).name}"
        else:
            how = f"exited with code {end.status}"
        if end.oom_kills:
            how += " (the container's memory limit was hit: out of memory)"
        return failure("crashed", phase, f"the worker process {how} during '{phase}'")

    def log_tail(self, chars: int = 4000) -> str:
        """The end of the child's stdout and stderr, read safely by the server."""
        if self.ended is not None:
            return self._last_log
        return self.box.log_tail(chars)

    def kill(self) -> ChildEnd:
        """Kill the child and all it left behind (once); how it ended."""
        with self._ending:
            if self.ended is None:
                self._last_log = self.box.log_tail(4000)
                self.ended = self.box.end()
            return self.ended

    def _kill_quietly(self) -> None:
        try:
            self.kill()
        except SandboxError:
            self.box.remove()   # ends the read with EOF; close() reports the broken box

    def close(self) -> None:
        """Kill the child, close the connection, give the container back (every path)."""
        try:
            self.kill()
        finally:
            if self._sender is not None:
                self._sender.join(10)
            self.conn.close()
            self._release(self.box)


class DockerSandbox:
    """Hands out fresh workers in sandbox containers: warm (reused containers, a fresh
    child per candidate) or strict (a container per candidate), `warm` started ahead."""

    backend = SandboxKind.DOCKER

    def __init__(self, cuda_index: int | None, limits: Limits = Limits(), warm: int = 1,
                 config: DockerConfig | None = None):
        self.cuda_index, self.limits, self.warm = cuda_index, limits, warm
        try:
            self.config = config or DockerConfig.from_env()
        except ValueError as error:   # a KERNELPILOT_DOCKER_* variable that makes no sense
            raise SandboxError(f"bad docker sandbox setting: {error}") from None
        self.image = self.config.image or default_tag(gpu=cuda_index is not None)
        self.client = connect(self.config.base_url)
        require_image(self.client, self.image)
        self.session = uuid.uuid4().hex[:8]
        self._idle: list[Box] = []
        self._busy: set[Box] = set()
        if warm > 0:
            self._idle.append(self._new_box())   # starts now; `worker()` or `settle()` waits for it
        self._fill()

    def worker(self) -> DockerWorker:
        worker = None
        while worker is None and self._idle:
            worker = self._spawn(self._idle.pop(0), retry=True)   # a reused box that broke: the next
        worker = worker or self._spawn(self._new_box(), retry=False)
        self._fill()
        worker.wait_ready()
        return worker

    def _spawn(self, box: Box, retry: bool) -> DockerWorker | None:
        try:
            box.connect(self.limits.start_s)
            worker = DockerWorker(box, self._settings(), self.limits, self._give_back)
        except SandboxError:
            self._discard(box)
            if retry:
                return None
            raise
        except BaseException:
            self._discard(box)
            raise
        self._busy.add(box)
        return worker

    def _new_box(self) -> Box:
        def kwargs_for(dirs, labels):
            return container_kwargs(self.config, self.image, self.cuda_index, self.limits, dirs, labels)

        box = Box(self.client, self.image, kwargs_for, {"org.kernelpilot.session": self.session,
                                                         "org.kernelpilot.host_pid": str(os.getpid())})
        _live_boxes.add(box)
        return box

    def _fill(self) -> None:
        """Strict mode: keep `warm` fresh containers started ahead of need. Warm mode
        starts one at construction (when `warm` > 0) and then reuses what it has: a warm
        container serves candidates one after another."""
        while self.config.strict and len(self._idle) < self.warm:
            self._idle.append(self._new_box())

    def _give_back(self, box: Box) -> None:
        self._busy.discard(box)
        if self.config.strict or not box.healthy:
            self._discard(box)
        else:
            self._idle.insert(0, box)

    def _discard(self, box: Box) -> None:
        self._busy.discard(box)
        _live_boxes.discard(box)
        box.remove()

    def _settings(self) -> dict:
        index = worker_cuda_index(self.cuda_index, self.config.gpus)
        # The server adds the child's own HOME, TMPDIR and working directory.
        return {"env": server_env(self.cuda_index), "cuda": index is not None, "cuda_index": index or 0,
                "gpu_memory_fraction": float(self.limits.gpu_memory_fraction),
                "host_memory_bytes": int(self.limits.host_memory_bytes),
                "max_file_bytes": int(self.limits.max_file_bytes)}

    def settle(self) -> None:
        """Wait until containers started ahead are up, so none competes with a measurement."""
        for box in self._idle:
            box.connect(self.limits.start_s)

    def containers(self) -> list[str]:
        """Names of this sandbox's containers that the daemon still has."""
        return labelled(self.client, f"org.kernelpilot.session={self.session}")

    def close(self) -> None:
        errors = []
        for box in self._idle + list(self._busy):
            try:
                self._discard(box)
            except SandboxError as error:
                errors.append(str(error))
        self._idle.clear()
        if errors:
            raise SandboxError("; ".join(errors))

    def __enter__(self) -> "DockerSandbox":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
