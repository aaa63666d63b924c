"""What a sandbox container is allowed: the Docker settings, as pure functions.

`DockerConfig` is the docker backend's configuration (image, strict or warm, limits,
which GPUs), filled from `KERNELPILOT_DOCKER_*` environment variables by `from_env`.
`container_kwargs` turns it into the keyword arguments of the docker SDK's
`containers.create`: no network, read-only root filesystem, a tmpfs scratch folder as
the only writable place besides the two host folders the protocol needs, memory and
pids limits, every capability dropped, no-new-privileges, a non-root user, GPUs through
device requests. Kept free of the daemon so the shape is unit-tested where no NVIDIA
runtime exists (tests/test_docker.py).
"""
import os
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from docker.types import DeviceRequest, Mount, Ulimit

from tools.sandbox.contracts import GiB, Limits

IMAGE_REPOSITORY = "kernelpilot-sandbox"
SANDBOX_UID = 10001                  # the image's `sandbox` user
CODE_DIR = "/opt/kernelpilot"        # PYTHONPATH inside the image; the host's tools/ is mounted here
RUN_DIR = "/run/kernelpilot"         # control and worker sockets (a host folder)
SCRATCH_DIR = "/scratch"             # the only writable place of the candidate's own
SERVER_COMMAND = ["python", "-m", "tools.sandbox.container_server"]
LABEL = "org.kernelpilot.sandbox"    # every sandbox container carries it (leftover checks)


class GpuSelection(StrEnum):
    INDEX = "index"    # only the evaluation's device, seen as cuda:0 inside
    ALL = "all"        # every GPU of the host, indices unchanged


@dataclass(frozen=True)
class DockerConfig:
    """How docker sandbox containers are made. `image=None`: the recipe's tag
    (`tools/sandbox/container_image.py`); `memory_bytes=None`: the worker's host-memory
    cap plus 2 GiB for the server."""

    image: str | None = None
    strict: bool = False               # one container per candidate instead of a warm one
    memory_bytes: int | None = None
    pids: int = 512                    # threads count: torch starts one per core
    scratch_bytes: int = 2 * GiB       # tmpfs, counted in the memory limit
    gpus: GpuSelection = GpuSelection.INDEX
    base_url: str | None = None        # None: DOCKER_HOST or the local socket

    @classmethod
    def from_env(cls, environ=os.environ) -> "DockerConfig":
        """KERNELPILOT_DOCKER_IMAGE, _MODE (warm|strict), _MEMORY_GB, _PIDS, _GPUS (index|all)."""
        mode = environ.get("KERNELPILOT_DOCKER_MODE", "warm")
        if mode not in ("warm", "strict"):
            raise ValueError(f"KERNELPILOT_DOCKER_MODE must be warm or strict, not {mode!r}")
        memory = environ.get("KERNELPILOT_DOCKER_MEMORY_GB")
        return cls(image=environ.get("KERNELPILOT_DOCKER_IMAGE") or None, strict=mode == "strict",
                   memory_bytes=int(float(memory) * GiB) if memory else None,
                   pids=int(environ.get("KERNELPILOT_DOCKER_PIDS", cls.pids)),
                   gpus=GpuSelection(environ.get("KERNELPILOT_DOCKER_GPUS", "index")))


@dataclass(frozen=True)
class HostDirs:
    """The host folders a container sees: the sockets' folder and its /dev/shm (where
    the exchange arenas are hard-linked), and the host's `tools/` package (read-only)."""

    run: Path
    shm: Path
    tools: Path


def container_user() -> tuple[int, int]:
    """The host's own uid when it is not root (so the arena files it makes are usable
    inside), else the image's unprivileged `sandbox` user. Never root."""
    uid = os.getuid()
    return (uid, os.getgid()) if uid != 0 else (SANDBOX_UID, SANDBOX_UID)


def gpu_request(cuda_index: int | None, gpus: GpuSelection) -> list[DeviceRequest]:
    """The device request for the NVIDIA runtime: none on the CPU, else the chosen GPU
    or all of them, with the compute and utility driver capabilities."""
    if cuda_index is None:
        return []
    capabilities = [["gpu", "compute", "utility"]]
    if gpus is GpuSelection.ALL:
        return [DeviceRequest(count=-1, capabilities=capabilities)]
    return [DeviceRequest(device_ids=[str(cuda_index)], capabilities=capabilities)]


def worker_cuda_index(cuda_index: int | None, gpus: GpuSelection) -> int | None:
    """The device's index as the container sees it."""
    if cuda_index is None:
        return None
    return cuda_index if gpus is GpuSelection.ALL else 0


def server_env(cuda_index: int | None) -> dict[str, str]:
    """The container's whole environment: nothing of the host's."""
    env = {"PATH": "/opt/venv/bin:/usr/local/bin:/usr/bin:/bin", "PYTHONPATH": CODE_DIR, "LANG": "C.UTF-8",
           "PYTHONDONTWRITEBYTECODE": "1", "HOME": SCRATCH_DIR, "USER": "sandbox",
           "TRITON_CACHE_DIR": f"{SCRATCH_DIR}/cache/triton", "TORCHINDUCTOR_CACHE_DIR": f"{SCRATCH_DIR}/cache/inductor"}
    if cuda_index is None:
        env["TRITON_INTERPRET"] = "1"   # triton decides at import, so the server needs it too
    else:
        env["NVIDIA_DRIVER_CAPABILITIES"] = "compute,utility"
    return env


def memory_limit(config: DockerConfig, limits: Limits) -> int:
    return config.memory_bytes or limits.host_memory_bytes + 2 * GiB


def container_kwargs(config: DockerConfig, image: str, cuda_index: int | None, limits: Limits,
                     dirs: HostDirs, labels: dict[str, str]) -> dict:
    """Keyword arguments of `client.containers.create` for one sandbox container."""
    uid, gid = container_user()
    memory = memory_limit(config, limits)
    return {
        "image": image, "command": SERVER_COMMAND, "user": f"{uid}:{gid}", "environment": server_env(cuda_index),
        "working_dir": SCRATCH_DIR, "labels": {LABEL: "1", **labels}, "detach": True, "auto_remove": True,
        "network_mode": "none", "read_only": True, "ipc_mode": "none",
        # Owned by the user through uid/gid: Docker copies the image folder's mode over `mode=`.
        "tmpfs": {SCRATCH_DIR: f"rw,exec,nosuid,nodev,size={config.scratch_bytes},uid={uid},gid={gid},mode=0700"},
        "mounts": [Mount(f"{CODE_DIR}/tools", str(dirs.tools), type="bind", read_only=True),
                   Mount(RUN_DIR, str(dirs.run), type="bind"),
                   Mount("/dev/shm", str(dirs.shm), type="bind")],
        "mem_limit": memory, "memswap_limit": memory, "pids_limit": config.pids,
        "cap_drop": ["ALL"], "security_opt": ["no-new-privileges"],
        "ulimits": [Ulimit(name="core", soft=0, hard=0)],
        "device_requests": gpu_request(cuda_index, config.gpus),
    }
