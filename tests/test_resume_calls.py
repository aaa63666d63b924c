"""A turn of several tool calls killed (SIGKILL) after some were recorded: `--resume` runs only
the calls not yet recorded and reuses the others' records, so the store holds each call once
and the turn's results are complete. A real `kernelpilot optimize` process, a real store."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from agent.cli import main
from agent.graph import Budget, build_graph, session_config
from agent.runtime import checkpoints
from tests.conftest import PROBLEMS
from tools.history import HistoryError, HistoryStore, Origin
from tools.toolbox import Toolbox

ROOT = Path(__file__).resolve().parent.parent
CHEATS = Path(__file__).parent / "cheats"
CALLS = [CHEATS / "honest_softmax.py", ROOT / "benchmarks" / "candidates" / "04_softmax_rows.py",
         CHEATS / "cheat_reference_op.py", CHEATS / "honest_softmax.py"]
ANALYSIS = "## Performance analysis\nSoftmax over rows is memory-bound: one read and one write of x.\n"


def start_run(tmp_path: Path, db: str) -> subprocess.Popen:
    script = tmp_path / "script.json"
    script.write_text(json.dumps({"turns": [{"text": ANALYSIS, "tool_calls": [
        {"name": "check_correctness", "code_file": str(path)} for path in CALLS]}]}))
    command = [sys.executable, "-m", "agent.cli", "optimize", str(PROBLEMS / "04_softmax_rows.py"), "--cpu", "--json",
               "--policy", f"replay:{script}", "--db", db, "--out", str(tmp_path / "first")]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)


def kill_after(process: subprocess.Popen, store: HistoryStore, recorded: int, deadline_s: float = 240) -> None:
    start = time.monotonic()
    while store.count() < recorded:
        assert process.poll() is None, process.stderr.read().decode()[-2000:]
        assert time.monotonic() - start < deadline_s, "the run recorded too little in time"
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def test_resume_runs_only_the_calls_a_killed_turn_had_not_recorded(capsys, tmp_path):
    db = f"sqlite:///{tmp_path / 'history.db'}"
    store = HistoryStore(db)
    run = start_run(tmp_path, db)
    kill_after(run, store, recorded=2)
    killed_at = store.count()
    assert run.returncode == -signal.SIGKILL and 2 <= killed_at < len(CALLS)
    session = store.records()[0].session
    assert main(["optimize", "--resume", session, "--cpu", "--json", "--db", db, "--out", str(tmp_path / "out")]) == 0
    summary = json.loads(capsys.readouterr().out)
    records = sorted((r for r in store.records(with_source=True) if r.call_id != "final_check"), key=lambda r: r.id)
    assert [r.source for r in records] == [p.read_text() for p in CALLS]        # each call evaluated once, in order
    # each evaluation names its tool call: the session's first turn, the replay script's call ids
    assert [(r.turn, r.call_id) for r in records] == [(1, f"turn0-call{n}") for n in range(len(CALLS))]
    assert summary["attempts"] == len(CALLS) and summary["status"] == "correct"
    with checkpoints() as saver:
        state = build_graph(saver).get_state(session_config(session, Budget())).values
    replies = [m["content"] for m in state["messages"] if m["role"] == "tool"]
    assert len(replies) == len(CALLS) and all(r.startswith("check_correctness: correct") for r in replies)
    assert sum("reused, not run again" in r for r in replies) == killed_at
    assert [a["evaluation_id"] for a in state["attempts"] if a["tool"] != "final_check"] == [r.id for r in records]


def test_a_stored_evaluation_is_reused_only_for_the_same_code(evaluator, softmax_problem, tmp_path):
    store = HistoryStore(f"sqlite:///{tmp_path / 'history.db'}")
    honest, other = CALLS[0].read_text(), CALLS[2].read_text()
    cut = Toolbox(softmax_problem, evaluator, store, "s-cut", Origin("replay"))
    first = cut.call("check_correctness", {"code": honest})
    resumed = Toolbox(softmax_problem, evaluator, store, "s-cut", Origin("replay"))
    resumed.reuse_unseen(set())                 # the checkpoint never saw the evaluation
    again = resumed.call("check_correctness", {"code": honest})
    assert (again.reused, again.evaluation_id, again.result.status) == (True, first.evaluation_id, first.result.status)
    assert store.count(["s-cut"]) == 1
    resumed.reuse_unseen(set())
    try:
        resumed.call("check_correctness", {"code": other})
    except HistoryError as error:
        assert "the history store and the checkpoint disagree" in str(error)
    else:
        raise AssertionError("a stored evaluation of other code was taken as this call's")
