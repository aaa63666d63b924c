"""`kernelpilot train smoke --out DIR` itself (issue 21): every stage once on the tiny model and two
suite problems on the CPU, DIR/summary.json with each stage's metrics and the candidates written
back; and the new stages' configs refused in one line at the command line.

    pytest -q tests/test_train_smoke.py
"""
import json
import time

import pytest

from agent.cli.common import ExitCode
from agent.cli.main import main
from tools.history import HistoryStore

STAGES = ("tiny", "collect", "export", "sft", "rft", "grpo")


@pytest.mark.slow
def test_train_smoke_runs_every_stage_and_writes_back(tmp_path, capsys):
    out, started = tmp_path / "smoke", time.monotonic()
    assert main(["train", "smoke", "--out", str(out)]) == ExitCode.OK
    seconds = time.monotonic() - started
    line = capsys.readouterr().out.strip().splitlines()[-1]      # the trainers print their logs before it
    summary = json.loads((out / "summary.json").read_text())
    assert line.startswith("smoke: ") and str(out) in line
    assert tuple(summary["stages"]) == STAGES and summary["seconds"] <= round(seconds, 1) + 0.1    # it rounds to 0.1 s
    s = summary["stages"]
    assert s["collect"]["mentors"]["builtin"]["correct"] == 2 and len(s["export"]["problems"]) == 2
    assert s["sft"]["loss_last"] < s["sft"]["loss_first"]
    assert s["rft"]["written_back"] == 6 and s["rft"]["positives"] == 2 and s["rft"]["trained"]
    assert s["grpo"]["steps"] == 2 and s["grpo"]["written_back"] == 4 and s["grpo"]["seeded"] == 2
    assert summary["written_back"] == {"rft": 6, "grpo": 4}
    store = HistoryStore(summary["store"])
    records = store.records()
    store.engine.dispose()
    assert summary["evaluations_in_store"] == len(records)
    assert sum(r.policy == "rft" for r in records) == 6 and sum(r.policy == "grpo" for r in records) == 4
    for stage in ("sft", "rft", "grpo"):
        assert (out / stage / "model" / "config.json").is_file() and (out / stage / "metrics.jsonl").read_text()
    assert json.loads((out / "grpo" / "profile.json").read_text())["steps"]


@pytest.mark.parametrize("stage, overrides, message", [
    ("grpo", ["num_generations=1"], "num_generations must be at least 2"),
    ("grpo", ["seeds=4"], "seeds must be fewer than num_generations"),
    ("grpo", ["loss_type=ppo"], "loss_type must be one of grpo, dr_grpo, dapo"),
    ("rft", ["k=0"], "k, batch_size, generate_batch, epochs and max_steps must be positive"),
    ("rft", ["generate_batch=0"], "k, batch_size, generate_batch, epochs and max_steps must be positive"),
    ("best-of", ["prm_keep=2"], "prm_keep needs a prm"),
])
def test_the_new_stages_refuse_a_bad_config_in_one_line(stage, overrides, message, capsys):
    base = ["train", stage, "--out", "o", "--set", "problems=benchmarks/problems"]
    base += ["--set", "policy=builtin"] if stage == "best-of" else ["--set", "model=m"]
    assert main(base + [arg for item in overrides for arg in ("--set", item)]) == ExitCode.USAGE
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err


def test_show_config_resolves_the_grpo_stage_with_out(capsys):
    assert main(["train", "grpo", "--set", "model=m", "--set", "problems=p", "--out", "runs/g", "--show-config",
                 "--set", "peft=dora+rslora", "--set", "epsilon_high=0.28"]) == ExitCode.OK
    shown = json.loads(capsys.readouterr().out)
    assert (shown["out"], shown["peft"], shown["epsilon_high"], shown["loss_type"]) == ("runs/g", "dora+rslora", 0.28,
                                                                                         "dapo")
