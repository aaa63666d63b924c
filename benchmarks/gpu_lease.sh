#!/usr/bin/env bash
# benchmarks/gpu_lease.sh -- on the GPU machine: the measurements that need no model, in pieces that
# fit one device call each and resume in the next: KernelBench through `kernelpilot bench`, the
# grader's throughput, the host cost of a launch. Its twin for the recipe is gpu_smollm2.sh; both
# install the carried wheels into the same place, so a lease carries .whl once.
#
# USAGE (from the repo root, on the GPU machine; .whl/ from benchmarks/device_wheels.sh carried in
# the lease's first call, .kb/KernelBench a checkout of KernelBench carried where bench runs)
#   PARTS=bench LEVEL=1 LANES=6 BENCH_TIMEOUT=480 bash benchmarks/gpu_lease.sh
#   PARTS=bench BENCH_RUN=l1-rows BENCH_ONLY='23_*,40_*' bash benchmarks/gpu_lease.sh   # a few rows again, apart
#   PARTS=thru THRU_LANES=4,8 THRU_DEADLINE=150 bash benchmarks/gpu_lease.sh
#   PARTS=launch bash benchmarks/gpu_lease.sh
#   PARTS=variants VARIANTS_ONLY='40_*' VARIANTS="row_split=0" bash benchmarks/gpu_lease.sh   # a plan's A/B
#   PARTS=tests TESTS="tests/test_gpu.py -k reward_trials" bash benchmarks/gpu_lease.sh   # GPU tests
#   PARTS=thru,launch,bench ...           # several, in the order given
#
# WHAT COMES BACK ($OUT, 8 files at most): status.txt; <BENCH_RUN>.tgz (the run's folder: its
#   results.jsonl and summary, and a copy of the lease's history store with every evaluation's
#   phases, history.db, never committed; put results.jsonl in benchmarks/runs/ to resume in a later lease,
#   since a fresh machine starts bare) and <BENCH_RUN>.log; thru-<lanes>.json and thru-<lanes>.log; launch.json;
#   variants.json and variants.log (benchmarks/variants.py); tests.log (pytest -m gpu's output).
#
# RESUMING: bench's folder lives in $STATE/<BENCH_RUN> for the lease; where it is missing (a fresh
#   machine) and benchmarks/runs/<BENCH_RUN>/results.jsonl came with the tree, it starts from there,
#   so rows already measured are not measured again (`kernelpilot bench` skips them).
#
# ENVIRONMENT: STATE (default /tmp/kernelpilot-smollm2, shared with gpu_smollm2.sh), PYTHON (python3),
#   OUT (set by the device tool), PARTS, LEVEL (1), LANES (6), BENCH_RUN (the run's folder under $STATE
#   and benchmarks/runs/, and the name of what comes back; bench-l<LEVEL>), BENCH_TIMEOUT (480), BENCH_ONLY
#   (globs for --only; default every problem), THRU_LANES (4), THRU_PROTOCOLS (reward,full),
#   THRU_DEADLINE (seconds after which no pass starts; 150), THRU_TIMEOUT (240 a lane count),
#   LAUNCH_TIMEOUT (180), VARIANTS_ONLY (globs; required for that part), VARIANTS (space-separated
#   FIELD=VALUE[,...] configuration changes), VARIANTS_TIMEOUT (240), TESTS (pytest arguments; default
#   tests/test_gpu.py), TESTS_TIMEOUT (300).
set -euo pipefail

STATE="${STATE:-/tmp/kernelpilot-smollm2}"
PYTHON="${PYTHON:-python3}"
OUT="${OUT:-$STATE/out}"
PARTS="${PARTS:-bench}"
LEVEL="${LEVEL:-1}"
LANES="${LANES:-6}"
BENCH_TIMEOUT="${BENCH_TIMEOUT:-480}"
BENCH_ONLY="${BENCH_ONLY:-}"
THRU_LANES="${THRU_LANES:-4}"
THRU_PROTOCOLS="${THRU_PROTOCOLS:-reward,full}"
THRU_DEADLINE="${THRU_DEADLINE:-150}"
THRU_TIMEOUT="${THRU_TIMEOUT:-240}"
LAUNCH_TIMEOUT="${LAUNCH_TIMEOUT:-180}"
VARIANTS_ONLY="${VARIANTS_ONLY:-}"
VARIANTS="${VARIANTS:-}"
VARIANTS_TIMEOUT="${VARIANTS_TIMEOUT:-240}"
TESTS="${TESTS:-tests/test_gpu.py}"
TESTS_TIMEOUT="${TESTS_TIMEOUT:-300}"

if [[ ! -f pyproject.toml || ! -f benchmarks/gpu_lease.sh ]]; then
  echo "gpu_lease.sh: run it from the repo root" >&2; exit 2
fi
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 KERNELPILOT_HOME="${KERNELPILOT_HOME:-$STATE/home}"
status() { echo "gpu_lease: $*" | tee -a "$OUT/status.txt"; }

# shellcheck source=benchmarks/device_site.sh
source benchmarks/device_site.sh        # install_carried_wheels

install_site() {
  if ! install_carried_wheels; then
    status "ERROR: no wheels on this machine yet: carry .whl (benchmarks/device_wheels.sh) in this call"; exit 1
  fi
  export PYTHONPATH="$STATE/site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
}

bounded() {        # $1: seconds, $2: log, the rest: the command; its exit status, never fatal here
  local limit="$1" log="$2" rc=0
  shift 2
  SECONDS=0
  timeout "$limit" "$@" > "$log" 2>&1 || rc=$?
  status "$(basename "$log" .log): exit $rc after ${SECONDS} s$( (( rc == 124 )) && echo " (its bound, ${limit} s: resumable)")"
}

part_bench() {
  local name="${BENCH_RUN:-bench-l$LEVEL}"
  local run="$STATE/$name" seed="benchmarks/runs/$name"
  if [[ ! -d .kb/KernelBench ]]; then status "ERROR: carry .kb (a KernelBench checkout in .kb/KernelBench)"; exit 1; fi
  if [[ ! -f "$run/results.jsonl" && -f "$seed/results.jsonl" ]]; then
    mkdir -p "$run" && cp "$seed/results.jsonl" "$run/"
    status "bench: resuming from $seed ($(wc -l < "$run/results.jsonl") rows)"
  fi
  local only=()
  if [[ -n "$BENCH_ONLY" ]]; then only=(--only "$BENCH_ONLY"); fi
  bounded "$BENCH_TIMEOUT" "$OUT/$name.log" "$PYTHON" -m agent.cli bench .kb/KernelBench --levels "$LEVEL" \
    --policy builtin --max-turns 1 --trials 3 --iters 30 --gpus 0 --lanes "$LANES" --out "$run" --json "${only[@]}"
  if [[ -f "$KERNELPILOT_HOME/history.db" ]]; then     # every evaluation's phases: where a row's time went
    "$PYTHON" -c "import sqlite3, sys; sqlite3.connect(sys.argv[1]).execute('PRAGMA wal_checkpoint(TRUNCATE)')" \
      "$KERNELPILOT_HOME/history.db"     # the WAL folded in, so the one file is whole
    cp "$KERNELPILOT_HOME/history.db" "$run/history.db"
  fi
  tar czf "$OUT/$name.tgz" -C "$STATE" "$name"
  status "bench: $(wc -l < "$run/results.jsonl") rows in $run"
}

part_thru() {
  local lanes
  for lanes in ${THRU_LANES//,/ }; do
    bounded "$THRU_TIMEOUT" "$OUT/thru-$lanes.log" "$PYTHON" -m policy_training.grader.throughput --lanes "$lanes" \
      --rounds 2 --protocols "$THRU_PROTOCOLS" --deadline "$THRU_DEADLINE" --out "$OUT/thru-$lanes.json"
    tail -n 25 "$OUT/thru-$lanes.log"
  done
}

part_launch() {
  bounded "$LAUNCH_TIMEOUT" "$OUT/launch.log" "$PYTHON" -m benchmarks.launch_cost --out "$OUT/launch.json"
  tail -n 20 "$OUT/launch.log"
}

part_variants() {
  if [[ -z "$VARIANTS_ONLY" || ! -d .kb/KernelBench ]]; then
    status "ERROR: variants needs VARIANTS_ONLY and .kb/KernelBench"; exit 1
  fi
  local flags=() item
  for item in $VARIANTS; do flags+=(--variant "$item"); done
  bounded "$VARIANTS_TIMEOUT" "$OUT/variants.log" "$PYTHON" -m benchmarks.variants ".kb/KernelBench/level$LEVEL" \
    --only "$VARIANTS_ONLY" "${flags[@]}" --out "$OUT/variants.json"
  tail -n 20 "$OUT/variants.log"
}

part_tests() {
  # shellcheck disable=SC2086
  KERNELPILOT_REQUIRE_GPU=1 bounded "$TESTS_TIMEOUT" "$OUT/tests.log" "$PYTHON" -m pytest -m gpu -q -p no:cacheprovider $TESTS
  tail -n 15 "$OUT/tests.log"
}

install_site
if command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee -a "$OUT/status.txt"
fi
for part in ${PARTS//,/ }; do
  case "$part" in
    bench) part_bench ;;
    thru) part_thru ;;
    launch) part_launch ;;
    variants) part_variants ;;
    tests) part_tests ;;
    *) status "ERROR: unknown part '$part' (bench, thru, launch, variants, tests)"; exit 2 ;;
  esac
done
