"""`kernelpilot sandbox`: the Docker sandbox image and daemon.

    kernelpilot sandbox build [--recipe offline|cuda] [--force]   # skips an image whose recipe tag exists
    kernelpilot sandbox check [--json]                            # daemon, images, GPU runtime, leftovers

`build --recipe offline` (default) runs sandbox_image/build_offline.sh (root, debootstrap,
no registry); `--recipe cuda` runs `docker build` on sandbox_image/Dockerfile (needs a
registry). `check` exits 0 when the daemon answers and the image for this machine
(cuda with a GPU, offline without) is present, else 4 (ExitCode.INFRA), and says plainly
which is missing.
"""
import argparse
import json
from dataclasses import asdict

from agent.cli.common import ExitCode
from tools.device import pick_index
from tools.sandbox.container_image import Recipe, build, check, default_tag
from tools.sandbox.docker import connect


def add_arguments(sandbox: argparse.ArgumentParser) -> None:
    sandbox.description = ("The Docker sandbox (`--sandbox docker`): build its image, or check "
                           "that the daemon, the image and the GPU runtime are there.")
    verbs = sandbox.add_subparsers(dest="verb", required=True, metavar="VERB")
    make = verbs.add_parser("build", help="build the sandbox image (skipped when its recipe's tag exists)")
    make.add_argument("--recipe", type=Recipe, choices=list(Recipe), default=Recipe.OFFLINE,
                      help="offline: Debian rootfs + pip, then docker import (no registry; CPU torch); "
                           "cuda: docker build of sandbox_image/Dockerfile (needs a registry)")
    make.add_argument("--force", action="store_true", help="build even if the tag exists")
    inspect = verbs.add_parser("check", help="is the daemon reachable, the image present, a GPU runtime there?")
    inspect.add_argument("--json", action="store_true", help="print one JSON object")


def run(args) -> ExitCode:
    """Raises SandboxError (ExitCode.INFRA, from agent/cli/main.py) when no daemon answers."""
    client = connect(then=", then run this again")
    if args.verb == "build":
        report = build(client, args.recipe, force=args.force)
        what = f"built in {report.seconds:.0f} s" if report.built else "already present, nothing to do"
        print(f"{report.tag}: {what}")
        return ExitCode.OK
    return _check(client, args.json)


def _check(client, as_json: bool) -> ExitCode:
    report = check(client)
    wanted = default_tag(gpu=pick_index() is not None)
    ok = report.images.get(wanted, False)
    if as_json:
        print(json.dumps(dict(asdict(report), wanted_image=wanted, ok=ok)))
        return ExitCode.OK if ok else ExitCode.INFRA
    print(f"daemon: reachable, {report.daemon}")
    for tag, present in report.images.items():
        recipe = tag.split(":")[1].split("-")[0]
        state = "present" if present else f"missing: `kernelpilot sandbox build --recipe {recipe}` makes it"
        print(f"image {tag}: {state}{'   (the one this machine uses)' if tag == wanted else ''}")
    if report.gpu_runtime:
        print("GPU runtime: present (NVIDIA); GPU containers can start")
    else:
        print(f"GPU runtime: absent (runtimes: {', '.join(report.runtimes)}); GPU containers cannot start "
              "here, CPU containers (Triton interpreter) can")
    print(f"leftover sandbox containers: {', '.join(report.leftovers) or 'none'}")
    return ExitCode.OK if ok else ExitCode.INFRA
