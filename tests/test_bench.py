"""`kernelpilot bench` (issue 19): the metrics as pure functions, the run's records, and real
runs of the CLI over our suite in the Triton interpreter (real sandbox, real agent, real
store): resumable after `kill -9` with every problem exactly once and no evaluation run
twice (also where the kill lands between a graph step's writes and its checkpoint), a bad
problem file as a failed row while the run goes on, two workers at once, and an LLM policy
behind a real HTTP endpoint (the scripted test server) with three sessions waiting on it at
once.

    pytest -q tests/test_bench.py
"""
import json
import math
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import pytest

from agent.bench.metrics import fast_p, geomean, metrics, per_level
from agent.bench.rows import BenchRow, RowStatus, RunLog
from agent.bench.runner import BenchOptions, problem_key, row_of, run_one, select
from agent.graph import Budget
from agent.policy import Attempt
from agent.report import summarize
from agent.policies import PolicyKind, PolicySpec
from agent.runtime import Runtime, RuntimeOptions
from agent.session import AgentSession, SessionOptions
from tests.conftest import CANDIDATES, PROBLEMS, ROOT
from tests.openai_server import ChatServer, call, reply
from tools.device import DeviceInfo
from tools.history import HistoryStore
from tools.problems import ProblemFile
from tools.records import EvalStatus, Mode
from tools.home import kernelpilot_home
from tools.trust import Versus

SMALL = ("01_scale_bias_relu_chain", "02_gelu_tanh", "03_silu_hardtanh")


def row(key: str, status: str = "correct", eager: float | None = None, compile_: float | None = None,
        flags: tuple[str, ...] = (), level: int | None = 1) -> BenchRow:
    return BenchRow(key=key, level=level, name=key, status=status, speedup_vs_eager=eager,
                    speedup_vs_compile=compile_, flags=flags)


# ---- metrics: pure ---------------------------------------------------------------------------

def test_fast_p_counts_every_problem_of_the_selection():
    rows = [row("a", eager=2.5), row("b", eager=1.2), row("c", eager=0.8), row("d", "incorrect", eager=None)]
    assert fast_p(rows, 10, 1.0, Versus.EAGER) == 0.2          # a and b of ten: missing problems are failures
    assert fast_p(rows, 10, 2.0, Versus.EAGER) == 0.1
    assert fast_p(rows, 10, 0.0, Versus.EAGER) == 0.3          # fast_0: correct and timed
    assert fast_p(rows, 4, 1.0, Versus.COMPILE) == 0.0         # no compile speedups


def test_a_flagged_or_failed_row_does_not_count():
    rows = [row("a", eager=3.0, flags=("timing_mismatch",)), row("b", eager=3.0, flags=("no_custom_kernel",)),
            row("c", "failed"), row("d", eager=1.5, flags=("excessive_speedup",))]
    m = metrics(rows, 4)
    assert m.correct == 1 and m.fast_p["eager"][1.0] == 0.25 and m.geomean_counted["eager"] == 1.5


def test_a_row_carries_its_answers_flags(tmp_path):
    """The row of a problem with an answer keeps that answer's flags (they were dropped, so a
    batch run's rows said nothing of an excessive speedup the evaluator had audited)."""
    flagged = Attempt(turn=1, tool="benchmark", evaluation_id=1, code="x", status=EvalStatus.CORRECT, runtime_ms=0.1,
                      speedup_vs_eager=20.0, speedup_vs_compile=19.0, flags=("excessive_speedup",)).to_state()
    final = {"attempts": [flagged], "best": flagged, "turns": 1}
    cpu = DeviceInfo(Mode.CPU_INTERPRETER, "cpu", None)
    options = BenchOptions(sources=(), out=tmp_path, policy=PolicySpec(PolicyKind.BUILTIN))
    problem = ProblemFile(PROBLEMS / "01_scale_bias_relu_chain.py", "suite", None)
    got = row_of("k", problem, final, summarize(final, "s", cpu, None), options, Path("p"), 1.0)
    assert got.status is RowStatus.CORRECT and got.flags == ("excessive_speedup",)
    assert got.counted and metrics([got], 1).fast_p["eager"][1.0] == 1.0     # the flag withholds only the reward


def test_geomeans_over_counted_rows_and_over_all_problems():
    m = metrics([row("a", eager=4.0), row("b", eager=1.0)], total=4)
    assert m.geomean_counted["eager"] == pytest.approx(2.0)
    assert m.geomean_all["eager"] == pytest.approx(math.sqrt(2.0))      # (4 * 1 * 1 * 1) ** (1/4)
    assert geomean([]) is None and metrics([], 3).geomean_counted["eager"] is None
    with pytest.raises(ValueError):
        metrics([row("a"), row("b")], total=1)


def test_per_level_then_all_together():
    rows = [row("a", eager=2.0, level=1), row("b", eager=2.0, level=2), row("c", "incorrect", level=2)]
    found = per_level(rows, {1: 2, 2: 3})
    assert [(m.level, m.problems, m.correct) for m in found] == [(1, 2, 1), (2, 3, 1), (None, 5, 2)]
    assert found[0].correct_rate == 0.5 and found[2].fast_p["eager"][1.0] == 0.4


# ---- the run's records -----------------------------------------------------------------------

def test_a_torn_last_line_is_skipped_and_a_bad_status_refused(tmp_path):
    log = RunLog(tmp_path)
    log.finish(row("a", eager=2.0))
    log.started("b", "s-1")
    with open(tmp_path / "results.jsonl", "a") as handle:
        handle.write('{"key": "b", "lev')                       # a kill in the middle of a write
    assert list(log.finished()) == ["a"] and log.sessions() == {"b": "s-1"}
    assert log.finished()["a"].status is RowStatus.CORRECT
    with pytest.raises(ValueError):
        row("x", status="splendid")


# ---- real runs -------------------------------------------------------------------------------

def bench(out: Path, home: Path, *extra: str, env: dict | None = None) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT), KERNELPILOT_HOME=str(home), **(env or {}))
    return subprocess.Popen([sys.executable, "-m", "agent.cli", "bench", *extra, "--max-turns", "2",
                             "--out", str(out), "--json"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def finished(process: subprocess.Popen, timeout: float = 600) -> dict:
    out, err = process.communicate(timeout=timeout)
    assert process.returncode == 0, err[-2000:]
    return json.loads(out)


def results(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


def stored(home: Path, sessions: list[str]) -> int:
    return HistoryStore(f"sqlite:///{home / 'history.db'}").count(sessions)


def second_problem_evaluated(out: Path, home: Path) -> bool:
    """The kill point: the second problem's session has an evaluation in the store (so the
    restart must resume it, reusing what it recorded)."""
    sessions = list(RunLog(out).sessions().values())
    return len(sessions) >= 2 and (home / "history.db").exists() and stored(home, sessions[1:2]) >= 1


@pytest.fixture
def suite(tmp_path) -> Path:
    folder = tmp_path / "problems"
    folder.mkdir()
    for name in SMALL:
        shutil.copy(PROBLEMS / f"{name}.py", folder)
    return folder


def test_a_run_killed_mid_way_resumes_with_every_problem_once(suite, tmp_path):
    out, home = tmp_path / "run", tmp_path / "home"
    first = bench(out, home, str(suite))
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not second_problem_evaluated(out, home):
        time.sleep(0.2)
    assert second_problem_evaluated(out, home), "the run never evaluated a kernel of its second problem"
    first.send_signal(signal.SIGKILL)
    first.wait(30)
    done_before = {r["key"] for r in results(out)} if (out / "results.jsonl").exists() else set()
    assert len(done_before) < len(SMALL), "the kill came after the run had finished"
    summary = finished(bench(out, home, str(suite)))
    rows = results(out)
    assert sorted(r["key"] for r in rows) == sorted(SMALL)               # each problem exactly once
    assert all(r["status"] == "correct" for r in rows), [(r["key"], r["status"], r["stop"], r["turns"], r["attempts"],
                                                          r["reason"]) for r in rows]
    sessions = [r["session"] for r in rows]
    assert len(set(sessions)) == len(SMALL)
    assert stored(home, sessions) == sum(r["attempts"] for r in rows)     # nothing evaluated twice
    assert summary["problems"] == len(SMALL) and summary["metrics"][0]["correct"] == len(SMALL)
    for r in rows:
        assert (out / r["outputs"] / "best.py").is_file() and (out / r["outputs"] / "report.md").is_file()


def test_a_bad_problem_is_a_failed_row_and_two_workers_finish_the_rest(suite, tmp_path):
    (suite / "00_broken.py").write_text("import torch\nclass Model(:\n")
    out, home = tmp_path / "run", tmp_path / "home"
    summary = finished(bench(out, home, str(suite), "--workers", "2", "--trials", "2", "--iters", "7"))
    run = json.loads((out / "run.json").read_text())
    assert (run["trials"], run["iters"]) == (2, 7)
    rows = {r["key"]: r for r in results(out)}
    assert sorted(rows) == sorted(("00_broken", *SMALL))
    assert rows["00_broken"]["status"] == "failed" and rows["00_broken"]["reason"]
    assert all(rows[name]["status"] == "correct" for name in SMALL)
    assert summary["metrics"][0]["correct"] == len(SMALL) and summary["metrics"][0]["problems"] == 4
    again = finished(bench(out, home, str(suite), "--workers", "2"))     # nothing left: nothing runs
    assert len(results(out)) == 4 and again["rows"] == 4


def test_trials_and_iters_reach_the_runtimes_evaluator():
    from agent.cli.bench import bench_options
    from agent.cli.main import build_parser as parser

    args = parser().parse_args(["bench", str(PROBLEMS), "--cpu", "--trials", "2", "--iters", "7"])
    assert (bench_options(args).runtime.eval.trials, bench_options(args).runtime.eval.timing.iters) == (2, 7)
    defaults = bench_options(parser().parse_args(["bench", str(PROBLEMS)])).runtime.eval
    assert (defaults.trials, defaults.timing.iters) == (5, 100)
    with Runtime.open(RuntimeOptions(force_cpu=True, eval=bench_options(args).runtime.eval)) as runtime:
        assert (runtime.evaluator.config.trials, runtime.evaluator.config.timing.iters) == (2, 7)


def test_report_of_a_folder_that_is_no_run_is_a_usage_error(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT), KERNELPILOT_HOME=str(tmp_path / "home"))
    done = subprocess.run([sys.executable, "-m", "agent.cli", "bench", "report", str(tmp_path)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "not a bench run folder" in done.stderr
    assert "Traceback" not in done.stderr


class ProblemAwareServer(ChatServer):
    """The scripted endpoint for concurrent sessions: it answers each conversation by the
    problem it is about (found in its prompt): first a check of that problem's honest
    candidate, then a final word; each answer held a little, as a real model's tokens are,
    so sessions that run at once overlap here."""

    def __init__(self, problems: dict[str, str]):
        super().__init__([])
        self.problems, self.in_flight, self.most_in_flight = problems, 0, 0

    def next_action(self, body: dict):
        with self.lock:
            self.requests.append(body)
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        time.sleep(0.5)
        with self.lock:
            self.in_flight -= 1
        prompt = "\n".join(str(m.get("content")) for m in body["messages"] if m["role"] == "user")
        name = next(name for name, source in self.problems.items() if source in prompt)
        if not any(m["role"] == "tool" for m in body["messages"]):
            code = (CANDIDATES / f"{name}.py").read_text()
            return reply(f"## Performance analysis\n{name}: one pass, memory-bound.", call("check_correctness", {"code": code}))
        return reply(f"## Performance analysis\n{name}: checked; nothing more to try.")


def test_an_llm_policy_runs_three_sessions_at_once(suite, tmp_path):
    problems = {name: (PROBLEMS / f"{name}.py").read_text() for name in SMALL}
    out, home = tmp_path / "run", tmp_path / "home"
    with ProblemAwareServer(problems) as server:
        process = bench(out, home, str(suite), "--policy", "openai", "--base-url", server.url, "--model", "test-model",
                        "--workers", "3", env={"OPENAI_API_KEY": "sk-test-key"})
        summary = finished(process)
    rows = {r["key"]: r for r in results(out)}
    assert sorted(rows) == sorted(SMALL) and all(r["status"] == "correct" for r in rows.values()), rows
    assert all(r["policy"] == "openai" and r["model"] == "test-model" and r["tokens"] > 0 for r in rows.values())
    assert server.most_in_flight >= 2, "the three sessions never waited for the endpoint at the same time"
    assert summary["metrics"][0]["correct"] == len(SMALL)


# ---- a kill between the two commits of a graph step --------------------------------------------

def drop_newest_checkpoint(db: Path, session: str) -> None:
    """The checkpoints as `kill -9` leaves them between a step's two commits: the step's
    writes saved, the checkpoint that applies them not."""
    with closing(sqlite3.connect(db)) as connection, connection:
        (newest,) = connection.execute("SELECT max(checkpoint_id) FROM checkpoints WHERE thread_id = ?",
                                       (session,)).fetchone()
        for table in ("writes", "checkpoints"):
            connection.execute(f"DELETE FROM {table} WHERE thread_id = ? AND checkpoint_id = ?", (session, newest))


def killed_after(steps: int, runtime: Runtime, options: BenchOptions, f, log: RunLog) -> str:
    """A session started as the runner starts one, `steps` graph steps run, then cut between the
    last step's writes and its checkpoint; its id."""
    policy = options.policy.build(runtime.store, options.budget)
    session = AgentSession.open(runtime, SessionOptions(problem=f.path, policy=options.policy, budget=options.budget),
                                policy)
    log.started(problem_key(f), session.id)
    state_input = session.start_state()
    for _ in range(steps):
        for _ in runtime.graph.stream(state_input, session.config, context=session.context,
                                      interrupt_before=["policy_turn", "run_tools"]):
            pass
        state_input = None
    drop_newest_checkpoint(kernelpilot_home() / "sessions.db", session.id)
    return session.id


@pytest.mark.parametrize("steps", [1, 2, 3], ids=["after-the-input", "after-a-policy-turn", "after-a-tool-run"])
def test_a_kill_between_a_steps_writes_and_its_checkpoint_loses_and_repeats_nothing(tmp_path, steps):
    """The resume goes on from the saved writes: no policy turn asked twice, no evaluation run
    twice or dropped. The resume used to see no next node there, take the run as ended and feed
    it a new input, which drops those writes: cut after the input (where the session's whole
    initial state is in them) KeyError 'backend' in turn_input, after a policy turn the turn
    asked again, after a tool run its answers lost (the endpoint refuses the conversation)."""
    name = "02_gelu_tanh"
    analysis = f"## Performance analysis\n{name}: one pass, memory-bound.\n"
    script = [reply(analysis, call("check_correctness", {"code": (CANDIDATES / f"{name}.py").read_text()})),
              reply(analysis + "Checked; nothing more to try.")]
    with ChatServer(script) as server:
        options = BenchOptions(sources=(PROBLEMS / f"{name}.py",), out=tmp_path / "run", budget=Budget(max_turns=3),
                               policy=PolicySpec(PolicyKind.OPENAI, model="test-model", base_url=server.url),
                               runtime=RuntimeOptions(force_cpu=True))
        (f,) = select(options)
        log = RunLog(options.out)
        with Runtime.open(options.runtime) as runtime:
            session = killed_after(steps, runtime, options, f, log)
            found = run_one(runtime, options, f, log, log.sessions()[problem_key(f)], on_start=None)
    assert (found.status, found.session, found.turns, found.attempts) == (RowStatus.CORRECT, session, 2, 1), \
        found.reason
    assert len(server.requests) == 2            # each policy turn asked once
    assert stored(kernelpilot_home(), [session]) == 1
