"""The sandbox image: its recipe's tag, building it, and checking a daemon for it.

Two recipes live in `sandbox_image/`: `build_offline.sh` (a Debian rootfs + pip, then
`docker import`; CPU torch; no registry needed: what CI uses) and `Dockerfile` (CUDA
runtime + torch + triton, for `docker build` where a registry is reachable). Each
image is tagged with a hash of its recipe's files, so a changed recipe is a new tag
and an unchanged one is never rebuilt. The worker's code is not in the image: the
backend mounts the host's own `tools/` read-only, so both sides always speak the same
protocol version.

    tag = default_tag(gpu=False)          # kernelpilot-sandbox:offline-<hash>
    build(client, Recipe.OFFLINE)         # skips when the tag exists; returns a BuildReport
    report = check(client)                # daemon, image, GPU runtime, leftover containers
"""
import hashlib
import subprocess
import time
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import docker
import docker.errors

from tools.sandbox.container_box import labelled
from tools.sandbox.container_spec import IMAGE_REPOSITORY, LABEL
from tools.sandbox.contracts import SandboxError

IMAGE_DIR = Path(__file__).resolve().parents[2] / "sandbox_image"


class Recipe(StrEnum):
    OFFLINE = "offline"    # sandbox_image/build_offline.sh: Debian rootfs + pip, CPU torch
    CUDA = "cuda"          # sandbox_image/Dockerfile: CUDA runtime base image, CUDA torch

    @property
    def files(self) -> tuple[str, ...]:
        main = "build_offline.sh" if self is Recipe.OFFLINE else "Dockerfile"
        return (main, "requirements.txt")


def recipe_hash(recipe: Recipe) -> str:
    digest = hashlib.sha256()
    for name in recipe.files:
        path = IMAGE_DIR / name
        if not path.is_file():
            raise SandboxError(f"the image recipe file {path} is missing (is this a source checkout?)")
        digest.update(name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def image_tag(recipe: Recipe) -> str:
    return f"{IMAGE_REPOSITORY}:{recipe.value}-{recipe_hash(recipe)}"


def default_tag(gpu: bool) -> str:
    """The image the docker backend uses unless KERNELPILOT_DOCKER_IMAGE names another."""
    return image_tag(Recipe.CUDA if gpu else Recipe.OFFLINE)


@dataclass(frozen=True)
class BuildReport:
    tag: str
    built: bool           # False: the tag existed, nothing was done
    seconds: float


def has_image(client: docker.DockerClient, tag: str) -> bool:
    try:
        client.images.get(tag)
    except docker.errors.ImageNotFound:
        return False
    return True


def build(client: docker.DockerClient, recipe: Recipe, force: bool = False) -> BuildReport:
    """Build the recipe's image unless its tag exists (or `force`); raises SandboxError
    with the builder's last lines when the build fails."""
    tag, start = image_tag(recipe), time.perf_counter()
    if has_image(client, tag) and not force:
        return BuildReport(tag, False, 0.0)
    if recipe is Recipe.OFFLINE:
        _run_offline_script(tag)
    else:
        _docker_build(client, tag)
    return BuildReport(tag, True, time.perf_counter() - start)


def _run_offline_script(tag: str) -> None:
    done = subprocess.run(["bash", str(IMAGE_DIR / "build_offline.sh"), tag], capture_output=True, text=True)
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).splitlines()[-20:])
        raise SandboxError(f"the offline image build failed (exit {done.returncode}):\n{tail}")


def _docker_build(client: docker.DockerClient, tag: str) -> None:
    try:
        client.images.build(path=str(IMAGE_DIR), dockerfile="Dockerfile", tag=tag, rm=True, pull=True)
    except (docker.errors.BuildError, docker.errors.APIError) as error:
        raise SandboxError(f"`docker build` of {IMAGE_DIR / 'Dockerfile'} failed (it needs an image registry; "
                           f"without one use the offline recipe): {error}") from None


@dataclass(frozen=True)
class CheckReport:
    """What `kernelpilot sandbox check` says, each a plain fact."""

    daemon: str                 # its version, storage driver and cgroup version
    images: dict[str, bool]     # tag -> present
    gpu_runtime: bool
    runtimes: list[str]
    leftovers: list[str]        # sandbox containers the daemon still has


def check(client: docker.DockerClient) -> CheckReport:
    info, version = client.info(), client.version()
    runtimes = sorted(info.get("Runtimes", {}))
    leftovers = labelled(client, LABEL)
    images = {image_tag(recipe): has_image(client, image_tag(recipe)) for recipe in Recipe}
    return CheckReport(daemon=f"Docker {version.get('Version')} ({info.get('Driver')} storage, "
                              f"cgroup v{info.get('CgroupVersion')})", images=images,
                       gpu_runtime=gpu_runtime_present(info), runtimes=runtimes, leftovers=leftovers)


def gpu_runtime_present(info: dict) -> bool:
    """An NVIDIA runtime registered with the daemon, or CDI device specs it knows."""
    if "nvidia" in info.get("Runtimes", {}):
        return True
    return any("nvidia.com/gpu" in str(device) for device in info.get("DiscoveredDevices") or [])
