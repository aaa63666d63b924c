"""One sandbox container on the trusted host: start it, talk to its server, remove it.

A `Box` owns a container (started from the sandbox image with `container_kwargs`), the
host folders bind-mounted into it (sockets, /dev/shm for the exchange arenas), and the
control connection to the server inside (`tools/sandbox/container_server.py`). Its
verbs: `connect` (wait for the server), `spawn` (a fresh child for one candidate:
returns the worker connection), `log_tail`, `end` (kill the child and everything it
left; how the child ended) and `remove` (the container and the folders, on every path).

Failures of Docker itself raise `SandboxError` with what to do about them; a container
that died under a candidate is reported by `diagnose` so the caller can tell the two
apart (the memory limit's OOM killer is the candidate's doing).
"""
import itertools
import json
import os
import secrets
import shutil
import tempfile
import time
from dataclasses import dataclass
from multiprocessing.connection import Client, Connection
from pathlib import Path

import docker
import docker.errors
import requests.exceptions

from tools.sandbox.container_spec import HostDirs
from tools.sandbox.contracts import SandboxError

CONTROL_BYTES = 1024 * 1024
POLL_S = 0.05
END_S = 20.0
NO_NVIDIA = ("could not select device driver", "nvidia-container-cli", "unknown or invalid runtime name: nvidia")
DAEMON_GONE = (docker.errors.DockerException, requests.exceptions.RequestException)


@dataclass(frozen=True)
class ChildEnd:
    """How a candidate's child ended, as the server saw it."""

    status: int | None        # Python's exit code: negative for a signal; None if it never died
    killed: bool              # it was still running when the host ended it
    oom_kills: int            # processes the container's memory limit killed meanwhile


class Box:
    """One running sandbox container and its server's control channel."""

    def __init__(self, client: docker.DockerClient, image: str, kwargs_for, labels: dict[str, str]):
        self.client, self.image = client, image
        self.base = Path(tempfile.mkdtemp(prefix="kernelpilot-docker-", dir=_shm_root()))
        self.dirs = HostDirs(run=self.base / "run", shm=self.base / "shm",
                             tools=Path(__file__).resolve().parents[1])
        self.control: Connection | None = None
        self.container = None
        self.healthy = True       # False once its server stopped answering: never reused
        try:
            self._make_dirs()
            self.container = _start(client, kwargs_for(self.dirs, labels))
        except BaseException:
            self.remove()
            raise

    def _make_dirs(self) -> None:
        # Ours, not the container user's (when we are root), so the candidate cannot
        # chmod them back: the socket folder is open only until the server has bound
        # its sockets (see `connect`); /dev/shm only holds the arenas we link there.
        # Nobody else on the host can reach them: `base` is 0700.
        self.dirs.run.mkdir()
        self.dirs.run.chmod(0o777)
        self.dirs.shm.mkdir()
        self.dirs.shm.chmod(0o755)
        self.serial = 0

    @property
    def name(self) -> str:
        return self.container.name if self.container is not None else "(not created)"

    def connect(self, timeout: float) -> None:
        """Wait for the server to listen (it imports torch first), then take its one
        control connection."""
        if self.control is not None:
            return
        path, deadline = self.dirs.run / "control.sock", time.monotonic() + timeout
        for polls in itertools.count():
            if path.exists():
                break
            if time.monotonic() > deadline:
                raise SandboxError(f"sandbox container {self.name} did not start within {timeout:.0f} s:\n{self.logs()}")
            if polls % 20 == 19 and self.state()["Status"] not in ("created", "running"):
                raise SandboxError(f"sandbox container {self.name} exited while starting:\n{self.logs()}")
            time.sleep(POLL_S)
        self.control = Client(str(path), family="AF_UNIX")
        # Both sockets exist now; from here on nothing in the container may add files there.
        self.dirs.run.chmod(0o555)

    def spawn(self, settings: dict, timeout: float) -> Connection:
        """A fresh child for one candidate; returns the connection the worker speaks on.
        The token (new each time, never seen by a candidate) marks our connection."""
        token = secrets.token_hex(16)
        self._send({"kind": "spawn", "settings": settings, "token": token})
        self._receive(timeout, "listening")
        conn = Client(str(self.dirs.run / "worker.sock"), family="AF_UNIX")
        conn.send_bytes(token.encode())
        return conn

    def log_tail(self, chars: int) -> str:
        self._send({"kind": "log", "chars": chars})
        return str(self._receive(END_S, "log")["text"])

    def end(self) -> ChildEnd:
        """Kill the candidate's child and all it left in the container; how it ended."""
        self._send({"kind": "end"})
        reply = self._receive(END_S, "ended")
        status = reply["status"]
        return ChildEnd(status if type(status) is int else None, bool(reply["killed"]), int(reply["oom_kills"]))

    def _send(self, message: dict) -> None:
        try:
            self.control.send_bytes(json.dumps(message).encode())
        except (OSError, AttributeError) as error:
            raise self.gone(f"sending '{message['kind']}'", error) from None

    def _receive(self, timeout: float, kind: str) -> dict:
        try:
            if not self.control.poll(timeout):
                raise self.gone(f"waiting for '{kind}'", TimeoutError(f"no answer within {timeout:.0f} s"))
            reply = json.loads(self.control.recv_bytes(CONTROL_BYTES))
        except (EOFError, OSError, ValueError) as error:
            raise self.gone(f"waiting for '{kind}'", error) from None
        if isinstance(reply, dict) and reply.get("kind") == "error":
            raise SandboxError(f"sandbox server of {self.name} refused: {reply.get('message')}")
        if not isinstance(reply, dict) or reply.get("kind") != kind:
            raise SandboxError(f"sandbox server of {self.name} answered {reply!r} instead of '{kind}'")
        return reply

    def gone(self, doing: str, error: BaseException) -> SandboxError:
        """The error for a control channel that broke: what the daemon says happened."""
        self.healthy = False
        return SandboxError(f"sandbox container {self.name} stopped answering while {doing} ({error}); "
                            f"{self.diagnose()}")

    def diagnose(self) -> str:
        try:
            state = self.state()
        except SandboxError as error:
            return str(error)
        oom = " (killed by its memory limit)" if state.get("OOMKilled") else ""
        logs = self.logs().strip()
        return (f"container status {state.get('Status')}, exit code {state.get('ExitCode')}{oom}"
                + (f"; its server said:\n{logs[-2000:]}" if logs else ""))

    def state(self) -> dict:
        try:
            self.container.reload()
        except docker.errors.NotFound:
            return {"Status": "removed", "ExitCode": None, "OOMKilled": False}
        except DAEMON_GONE as error:
            raise SandboxError(f"the Docker daemon stopped answering ({type(error).__name__}: {error}); "
                               f"container {self.name} may be left running: check with `docker ps`") from None
        return self.container.attrs["State"]

    def logs(self) -> str:
        try:
            return self.container.logs(tail=40).decode(errors="replace")
        except DAEMON_GONE:
            return "(no logs: the container is gone)"

    def remove(self) -> None:
        """Close the channel, remove the container and the host folders (every path)."""
        self.healthy = False
        if self.control is not None:
            self.control.close()   # the server kills everything and exits on EOF
            self.control = None
        try:
            if self.container is not None:
                self.container.remove(force=True)
        except docker.errors.NotFound:
            pass   # auto_remove got there first
        except docker.errors.APIError as error:
            if "already in progress" not in str(error):
                raise SandboxError(f"could not remove sandbox container {self.name}: {error}") from None
        except DAEMON_GONE as error:
            raise SandboxError(f"the Docker daemon stopped answering while removing container {self.name} "
                               f"({type(error).__name__}); it may be left running: check with `docker ps`") from None
        finally:
            self.container = None
            shutil.rmtree(self.base, ignore_errors=True)


def labelled(client: docker.DockerClient, label: str, **filters: str) -> list[str]:
    """Names of the containers carrying `label` (`key` or `key=value`).

    The low-level listing, because `client.containers.list` inspects each container
    it found, and an auto-removed one can vanish between the two calls."""
    found = client.api.containers(all=True, filters={"label": label, **filters})
    return [entry["Names"][0].lstrip("/") for entry in found]


def remove_labelled(client: docker.DockerClient, label: str) -> None:
    """Force-remove the containers carrying `label`; ones already gone are fine."""
    for name in labelled(client, label):
        try:
            client.api.remove_container(name, force=True)
        except docker.errors.NotFound:
            pass   # auto_remove got there first
        except docker.errors.APIError as error:
            if "already in progress" not in str(error):
                raise


def _start(client: docker.DockerClient, kwargs: dict):
    try:
        container = client.containers.create(**kwargs)
    except docker.errors.APIError as error:
        raise SandboxError(f"could not create a sandbox container: {error.explanation or error}") from None
    except DAEMON_GONE as error:
        raise SandboxError(f"the Docker daemon stopped answering ({type(error).__name__}): "
                           "no sandbox container can start") from None
    try:
        container.start()
    except docker.errors.APIError as error:
        try:
            container.remove(force=True)
        except docker.errors.NotFound:
            pass   # auto_remove got there first
        if any(words in str(error) for words in NO_NVIDIA):
            raise SandboxError("the Docker daemon has no NVIDIA container runtime, so a GPU container cannot "
                               f"start ({error.explanation}): install nvidia-container-toolkit, or use "
                               "--sandbox process, or --cpu for the Triton interpreter") from None
        raise SandboxError(f"could not start a sandbox container: {error.explanation or error}") from None
    return container


def _shm_root() -> str:
    # The exchange arenas are files in /dev/shm; hard links into the box's folder need the same filesystem.
    if not os.path.isdir("/dev/shm"):
        raise SandboxError("the docker sandbox needs /dev/shm on the host (the exchange arenas live there)")
    return "/dev/shm"
