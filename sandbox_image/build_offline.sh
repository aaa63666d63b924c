#!/usr/bin/env bash
# Build the sandbox image with no image registry: a Debian bookworm rootfs from Debian's
# packages (debootstrap minbase; Python 3.11), the pinned wheels from PyPI (fetched by the
# host's pip, installed offline inside the rootfs), a non-root user, then `docker import`.
#
#   sudo bash sandbox_image/build_offline.sh TAG        # e.g. kernelpilot-sandbox:3f2a...
#
# Needs root (debootstrap, chroot), debootstrap, a running Docker daemon and a host
# Python 3.11 with pip. `kernelpilot sandbox build` runs this with the recipe's tag and
# skips it when that image exists. Environment: KERNELPILOT_DEBIAN_MIRROR (default
# http://deb.debian.org/debian), KERNELPILOT_BUILD_DIR (default a fresh temporary folder).
set -euo pipefail
TAG="${1:?usage: build_offline.sh IMAGE_TAG}"
HERE="$(cd "$(dirname "$0")" && pwd)"
MIRROR="${KERNELPILOT_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
WORK="${KERNELPILOT_BUILD_DIR:-$(mktemp -d /var/tmp/kernelpilot-image.XXXXXX)}"
ROOT="$WORK/rootfs"
SANDBOX_UID=10001
trap 'rm -rf "$WORK"' EXIT
[ "$(id -u)" = 0 ] || { echo "build_offline.sh: needs root (debootstrap and chroot)" >&2; exit 1; }
command -v debootstrap >/dev/null || { echo "build_offline.sh: debootstrap is not installed (apt-get install debootstrap)" >&2; exit 1; }

step() { echo "[$(date +%T)] $*"; }

step "debootstrap bookworm (minbase + python3) into $ROOT"
debootstrap --variant=minbase --include=python3,python3-venv bookworm "$ROOT" "$MIRROR" >"$WORK/debootstrap.log" \
    || { tail -20 "$WORK/debootstrap.log" >&2; exit 1; }

step "fetch wheels (host pip, cp311 manylinux x86_64)"
python3 -m pip download --quiet --only-binary=:all: --implementation cp --python-version 3.11 \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --dest "$ROOT/tmp/wheels" -r "$HERE/requirements.txt"

step "venv /opt/venv with the pinned wheels, offline"
cp "$HERE/requirements.txt" "$ROOT/tmp/requirements.txt"
# env -i: none of the host's PIP_* settings (find-links, constraints) apply inside the rootfs.
in_root() { env -i PATH=/usr/bin:/bin:/usr/sbin:/sbin LANG=C.UTF-8 chroot "$ROOT" "$@"; }
in_root /usr/bin/python3 -m venv /opt/venv
in_root /opt/venv/bin/pip install --quiet --no-index --find-links /tmp/wheels -r /tmp/requirements.txt
in_root /opt/venv/bin/python -c "import torch, triton, numpy; print('torch', torch.__version__, 'triton', triton.__version__, 'numpy', numpy.__version__)"

step "user, mount points, clean-up"
in_root /usr/sbin/groupadd --gid "$SANDBOX_UID" sandbox
in_root /usr/sbin/useradd --uid "$SANDBOX_UID" --gid "$SANDBOX_UID" --home-dir /scratch --no-create-home --shell /usr/sbin/nologin sandbox
mkdir -p "$ROOT/scratch" "$ROOT/opt/kernelpilot" "$ROOT/run/kernelpilot"
rm -rf "$ROOT/tmp/wheels" "$ROOT/tmp/requirements.txt" "$ROOT/var/cache/apt/archives/"*.deb "$ROOT/var/lib/apt/lists/"* \
       "$ROOT/usr/share/doc" "$ROOT/usr/share/man" "$ROOT/root/.cache"

step "docker import as $TAG"
tar --numeric-owner -C "$ROOT" -c . | docker import \
    --change "ENV PATH=/opt/venv/bin:/usr/local/bin:/usr/bin:/bin" \
    --change "ENV PYTHONPATH=/opt/kernelpilot" \
    --change "ENV LANG=C.UTF-8" \
    --change "USER $SANDBOX_UID" \
    --change "WORKDIR /scratch" \
    --change "LABEL org.kernelpilot.recipe=offline" \
    --change 'CMD ["python", "-m", "tools.sandbox.container_server"]' \
    - "$TAG" >/dev/null
step "done: $TAG"
