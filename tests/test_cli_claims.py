"""README claims of `kernelpilot eval` and `optimize` that no other test pinned (issue 18),
through the CLI in process against the real sandbox, store and checkpoints, the model's text
scripted by the chat-completions test server (each reply reports 120 tokens of usage):

- `eval --no-record` leaves the store untouched, and never opens it (a store that cannot
  be opened costs nothing); without it the verdict is recorded;
- `optimize --out` writes summary.json, the same object `--json` prints, with the
  documented keys; best.py is the kernel the summary names;
- the budget flags stop a run when their budget is spent: `--max-tokens` at the tokens
  the endpoint reported, `--patience` after N turns without a better kernel (a better one
  starts the count again); on a CPU nothing is timed, so `--target-speedup` is never reached
  and `--max-gpu-seconds` never spent. (Reaching them on a GPU: tests/test_gpu_claims.py.)

    pytest -q tests/test_cli_claims.py
"""
import json
from pathlib import Path

import pytest

from agent.cli import main
from agent.graph import StopReason
from tests.conftest import CANDIDATES, PROBLEMS
from tests.openai_server import ChatServer, call, reply
from tools.history import HistoryStore

SOFTMAX = str(PROBLEMS / "04_softmax_rows.py")
HONEST = str(CANDIDATES / "04_softmax_rows.py")
ANALYSIS = "## Performance analysis\nSoftmax over rows is memory-bound: one read and one write of x.\n"
SUMMARY_KEYS = {"status", "best_code_path", "speedup_vs_eager", "speedup_vs_compile", "runtime_ms", "turns",
                "session_id", "stop_reason", "submitted", "attempts", "tokens", "gpu_seconds", "device", "mode",
                "report_path", "second_size", "coverage"}


@pytest.fixture(autouse=True)
def fast_retries(kernelpilot_home, monkeypatch):
    for name in ("OPENAI_BASE_URL", "OPENAI_API_KEY", "KERNELPILOT_MODEL"):
        monkeypatch.delenv(name, raising=False)
    (kernelpilot_home / "config.toml").write_text("[openai]\ntimeout_s = 5\nattempts = 2\nbackoff_s = 0.01\n")


def history_turn() -> dict:
    """A turn whose one tool call evaluates nothing (so it never improves the best)."""
    return reply(ANALYSIS + "Looking at the history first.", call("speedup_history", {"k": 1}))


def check_turn() -> dict:
    return reply(ANALYSIS + "Checking the row kernel.", call("check_correctness", {"code": Path(HONEST).read_text()}))


def optimize(capsys, tmp_path, script: list, *flags: str) -> tuple[dict, ChatServer]:
    with ChatServer(script) as server:
        code = main(["optimize", SOFTMAX, "--cpu", "--policy", "openai", "--base-url", server.url, "--model",
                     "test-model", "--out", str(tmp_path / "out"), "--json", *flags])
    out = capsys.readouterr().out
    assert code == 0, out
    return json.loads(out), server


# ---- eval --no-record ----------------------------------------------------------------------

@pytest.mark.slow
def test_eval_records_its_verdict_unless_told_not_to(capsys, tmp_path):
    assert main(["eval", SOFTMAX, HONEST, "--cpu", "--json", "--trials", "1", "--no-record"]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "correct"
    assert HistoryStore().count() == 0
    assert main(["eval", SOFTMAX, HONEST, "--cpu", "--json", "--trials", "1"]) == 0
    capsys.readouterr()
    assert [r.status.value for r in HistoryStore().records()] == ["correct"]


def test_eval_no_record_never_opens_the_store(capsys, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    broken = f"sqlite:///{blocker / 'history.db'}"              # under a file: cannot be opened
    assert main(["eval", SOFTMAX, HONEST, "--cpu", "--json", "--trials", "1", "--db", broken, "--no-record"]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "correct"
    assert main(["eval", SOFTMAX, HONEST, "--cpu", "--json", "--trials", "1", "--db", broken]) == 4
    assert "(--no-record evaluates without it)" in capsys.readouterr().err


# ---- summary.json ----------------------------------------------------------------------------

@pytest.mark.slow
def test_summary_json_is_the_printed_summary_with_the_documented_keys(capsys, tmp_path):
    script = [check_turn(), reply(ANALYSIS + "Done: the row kernel is the answer.")]
    printed, _ = optimize(capsys, tmp_path, script)
    written = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert written == printed and set(written) == SUMMARY_KEYS
    assert (written["status"], written["turns"], written["attempts"], written["tokens"], written["stop_reason"]) == \
        ("correct", 2, 1, 240, StopReason.POLICY_DONE)
    assert (written["mode"], written["gpu_seconds"], written["speedup_vs_eager"], written["runtime_ms"]) == \
        ("cpu-interpreter", 0.0, None, None)
    assert Path(written["best_code_path"]).read_text() == Path(HONEST).read_text()
    assert Path(written["report_path"]) == tmp_path / "out" / "report.md" and Path(written["report_path"]).is_file()
    assert written["session_id"].startswith("s-")


# ---- the budget flags -------------------------------------------------------------------------

def test_max_tokens_stops_the_run_once_the_endpoint_reported_that_many(capsys, tmp_path):
    summary, server = optimize(capsys, tmp_path, [history_turn()] * 5, "--max-tokens", "240", "--patience", "9")
    assert (summary["stop_reason"], summary["turns"], summary["tokens"]) == (StopReason.TOKEN_BUDGET, 2, 240)
    assert len(server.requests) == 2


def test_max_tokens_one_short_of_a_turn_lets_the_next_turn_run(capsys, tmp_path):
    summary, server = optimize(capsys, tmp_path, [history_turn()] * 5, "--max-tokens", "241", "--patience", "9")
    assert (summary["stop_reason"], summary["turns"], summary["tokens"]) == (StopReason.TOKEN_BUDGET, 3, 360)


def test_patience_stops_after_that_many_turns_without_a_better_kernel(capsys, tmp_path):
    summary, server = optimize(capsys, tmp_path, [history_turn()] * 5, "--patience", "2")
    assert (summary["stop_reason"], summary["turns"]) == (StopReason.NO_IMPROVEMENT, 2)


@pytest.mark.slow
def test_a_better_kernel_starts_the_patience_count_again(capsys, tmp_path):
    script = [history_turn(), check_turn(), history_turn(), history_turn(), history_turn()]
    summary, _ = optimize(capsys, tmp_path, script, "--patience", "2")
    # turn 1 stale, turn 2 finds the first correct kernel (count back to 0), turns 3 and 4 stale
    assert (summary["stop_reason"], summary["turns"], summary["status"]) == (StopReason.NO_IMPROVEMENT, 4, "correct")


@pytest.mark.slow
def test_on_a_cpu_the_target_speedup_is_never_reached_nor_the_gpu_seconds_spent(capsys, tmp_path):
    script = [check_turn(), check_turn(), reply(ANALYSIS + "Done.")]
    summary, _ = optimize(capsys, tmp_path, script, "--target-speedup", "0.001", "--max-gpu-seconds", "0.001")
    assert (summary["stop_reason"], summary["turns"], summary["gpu_seconds"]) == (StopReason.POLICY_DONE, 3, 0.0)
    assert summary["status"] == "correct" and summary["speedup_vs_eager"] is None
