#!/usr/bin/env bash
# Mutation testing of the core contracts (issue 18): mutmut over one module at a time, each with
# a fast test selection that targets it. Not part of the default test run or of .ci/run.
#
#     python -m venv /tmp/mutvenv \
#         && /tmp/mutvenv/bin/pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu \
#         && /tmp/mutvenv/bin/pip install -e '.[test,mutation]'
#     MUTMUT=/tmp/mutvenv/bin/mutmut benchmarks/mutation.sh [MODULE ...]    # default: all but `session`
#
# For each module it copies the work tree (tracked and untracked, not ignored files) to
# $WORK/NAME, writes a [mutmut] section to the copy's setup.cfg (the module as `only_mutate`, the
# selected tests as `pytest_add_cli_args_test_selection`), runs `mutmut run` on the mutant names
# given below (a whole module, or the functions of it that the contract covers) and writes
#     $OUT/NAME.results   `mutmut results --all true`: every mutant and its verdict
#     $OUT/NAME.diffs     `mutmut show` of each survivor
#     $OUT/summary.md     one row per module: mutants, killed, survived, timeouts, no tests, kill rate
# Kill rate = (killed + timeout) / (all - skipped), as mutmut's own CI/CD stats count it.
# On the 2-core CPU machine of the project, the default set takes about 30 minutes (MAX_CHILDREN=2;
# the history store, its schema and the reward about 17 of them);
# each module is bounded by LIMIT_S (default 900 s). Results are recorded in benchmarks/RESULTS.md.
set -euo pipefail -f      # -f: mutant name patterns are not file globs

ROOT=$(cd "$(dirname "$0")/.." && pwd)
MUTMUT=${MUTMUT:-mutmut}
OUT=${OUT:-/tmp/kernelpilot-mutation/out}
WORK=${WORK:-/tmp/kernelpilot-mutation/work}
MAX_CHILDREN=${MAX_CHILDREN:-2}
LIMIT_S=${LIMIT_S:-900}
# One thread per test process: 2 cores, MAX_CHILDREN of them; and mutmut forks its workers from a
# process that ran the tests, which hangs in torch's thread pool unless there is none.
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1

# NAME|file to mutate|mutant names (fnmatch patterns, space-separated)|pytest selection (files, -k ...; "~" stands
# for a space). tools/timing.py: its verdicts only; the rest (drawing, chunking, the L2 flush) runs on a GPU.
MODULES=(
  "analysis|agent/policy.py|agent.policy.x_has_analysis*|tests/test_contract_analysis.py -k not~graph_runs"
  "best|agent/graph.py|agent.graph.x_better*|tests/test_contract_best.py -k not~cpu_run"
  "stop|agent/graph.py|agent.graph.x_stop_reason*|tests/test_agent.py -k stop_reasons"
  "trust|tools/trust.py|tools.trust.*|tests/test_trust.py tests/test_contract_best.py -k not~cpu_run"
  "exit_codes|agent/cli/common.py|agent.cli.common.*|tests/test_cli_common.py"
  "timing|tools/timing.py|tools.timing.x_judge_timing* tools.timing.x__valid_samples* tools.timing.x_input_set_count*|tests/test_contract_timing.py tests/test_timing_verdicts.py"
  "compare|tools/compare.py|tools.compare.*|tests/test_contract_tolerance.py tests/test_compare_and_lint.py"
  "history|tools/history.py|tools.history.*|tests/test_history_contract.py tests/test_history.py tests/test_history_schema.py -k not~postgres~and~not~concurrent~and~not~crash"
  "history_schema|tools/history_schema.py|tools.history_schema.*|tests/test_history_schema.py tests/test_history.py -k not~crash~and~not~concurrent"
  "reward|policy_training/reward.py|policy_training.reward.*|tests/test_reward_contract.py tests/test_reward.py -k not~real_interpreter"
  # real optimize runs and a real SIGKILL (about 2 minutes, most mutants die on the first test); not in the default set
  "session|agent/session.py|agent.session.x_start_state* agent.session.x_resolve*|tests/test_contract_resume.py tests/test_agent.py -k resum"
)
DEFAULT_MODULES="analysis best stop trust exit_codes timing compare history history_schema reward"

run_module() {
  local name=$1 file=$2 mutants=$3 selection=$4
  local dir=$WORK/$name
  rm -rf "$dir" && mkdir -p "$dir" "$OUT"
  (cd "$ROOT" && git ls-files -z --cached --others --exclude-standard | xargs -0 cp --parents -t "$dir")
  {
    echo "[mutmut]"
    echo "source_paths ="
    echo "    agent"
    echo "    tools"
    echo "    policy_training"
    echo "only_mutate = $file"
    echo "also_copy ="
    echo "    benchmarks"
    echo "    langgraph.json"
    echo "pytest_add_cli_args = -p no:cacheprovider -q"
    echo "pytest_add_cli_args_test_selection ="
    for word in $selection; do echo "    ${word//\~/ }"; done
  } > "$dir/setup.cfg"
  echo "== $name: $file ($mutants) with: $selection"
  local start=$SECONDS status=0
  (cd "$dir" && timeout "$LIMIT_S" "$MUTMUT" run --max-children "$MAX_CHILDREN" $mutants > "$OUT/$name.log" 2>&1) \
    || status=$?
  (cd "$dir" && "$MUTMUT" results --all true > "$OUT/$name.results" 2>&1) || true
  : > "$OUT/$name.diffs"
  for survivor in $(awk -F: '/: survived$/ {print $1}' "$OUT/$name.results"); do
    (cd "$dir" && "$MUTMUT" show "$survivor" >> "$OUT/$name.diffs" 2>&1) || true
  done
  summarize "$name" "$file" "$mutants" $((SECONDS - start)) "$status" >> "$OUT/summary.md"
}

summarize() {
  local name=$1 file=$2 mutants=$3 seconds=$4 status=$5 r=$OUT/$1.results
  local killed survived timeout notests skipped total
  killed=$(grep -c ': killed$' "$r" || true); survived=$(grep -c ': survived$' "$r" || true)
  timeout=$(grep -c ': timeout$' "$r" || true); notests=$(grep -c ': no tests$' "$r" || true)
  skipped=$(grep -c ': skipped$' "$r" || true); total=$(grep -E '^ +[^ ]+__mutmut_[0-9]+: ' "$r" | grep -vc ': not checked$' || true)   # the ones run
  local rate="n/a"
  if (( total - skipped > 0 )); then rate=$(( 100 * (killed + timeout) / (total - skipped) ))%; fi
  local note=""; (( status == 0 )) || note=" (run ended with status $status: see $name.log)"
  echo "| $name | \`$file\` \`$mutants\` | $total | $killed | $survived | $timeout | $notests | $rate | ${seconds} s$note |"
}

mkdir -p "$OUT"
echo "| module | mutated | mutants | killed | survived | timeout | no tests | kill rate | time |" > "$OUT/summary.md"
echo "|---|---|---:|---:|---:|---:|---:|---:|---:|" >> "$OUT/summary.md"
for spec in "${MODULES[@]}"; do
  IFS='|' read -r name file mutants selection <<< "$spec"
  if [[ " ${*:-$DEFAULT_MODULES} " == *" $name "* ]]; then
    run_module "$name" "$file" "$mutants" "$selection"
  fi
done
cat "$OUT/summary.md"
