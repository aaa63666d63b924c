"""policy_training/recipe.py and recipe_report.py: the held-out set fixed once and guarded, every
step on the tiny model in the Triton interpreter, resumable by step, a stage's model rebuilt from
adapters, and the report's table and curves."""
import json
import shutil
from pathlib import Path

import pytest

from policy_training.recipe import STEPS, RecipeConfig, Run, StepClock, check_held_out, model_of, prepare, run_steps
from policy_training.training import TrainingError

MINI = Path(__file__).resolve().parent / "fixtures" / "kernelbench_mini"
SMALL = RecipeConfig(count=3, held_out_fraction=0.25, level1=(1,), level2=(), teacher_turns=1, lanes=0, sft_epochs=1.0,
                     rft_k=1, grpo_steps=1, num_generations=2, max_new_tokens=16, cpu=True, sft_learning_rate=1e-3,
                     rft_learning_rate=1e-3, grpo_learning_rate=1e-3, exemplars=1)


def test_prepare_fixes_the_held_out_set_once_and_a_changed_file_is_refused(tmp_path):
    state = tmp_path / "state"
    fixed = prepare(state, SMALL, MINI, log=lambda line: None)
    names = [p["name"] for p in fixed["problems"]]
    assert names == ["gen_elementwise_a1a57072", "kb_l1_1_row_softmax"] and fixed["train"] == 2
    assert [p["from"] for p in fixed["problems"]] == ["generated", "KernelBench level 1"]
    assert sorted(p.name for p in (state / "heldout").iterdir()) == [f"{n}.py" for n in names]
    assert len(check_held_out(state)) == 2
    with pytest.raises(TrainingError, match="the held-out set is fixed"):
        prepare(state, SMALL, MINI, log=lambda line: None)
    held = state / "heldout" / "kb_l1_1_row_softmax.py"
    held.write_text(held.read_text() + "\n# edited\n")
    with pytest.raises(TrainingError, match="changed since the held-out set was fixed"):
        check_held_out(state)


def test_prepare_names_a_kernelbench_problem_that_is_not_there(tmp_path):
    with pytest.raises(TrainingError, match="no problem numbered 7"):
        prepare(tmp_path / "state", RecipeConfig(count=3, level1=(1, 7), level2=()), MINI, log=lambda line: None)


def test_run_and_report_without_a_prepared_state_are_one_line(tmp_path, capsys):
    from policy_training.recipe import main

    for argv in (["run", "--state", str(tmp_path), "--base", "x"], ["report", "--state", str(tmp_path), "--out",
                                                                          str(tmp_path / "r")]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert err.endswith("no held-out set; run `python -m policy_training.recipe prepare` first") and "\n" not in err


def test_a_full_model_cannot_be_the_recipe(tmp_path):
    from policy_training.config import ConfigError, load_config

    with pytest.raises(ConfigError, match="cannot travel between leases"):
        load_config(RecipeConfig, None, ["peft=none"])


def test_collect_runs_on_lanes_and_untimed_when_asked(tmp_path):
    from policy_training.collect import CollectConfig, bench_options

    gpu = bench_options(CollectConfig(out=tmp_path, problems=(MINI,), lanes=3, untimed=True), "builtin")
    assert gpu.lanes == (0, 0, 0) and not gpu.runtime.eval.timed and not gpu.runtime.eval.baselines
    cpu = bench_options(CollectConfig(out=tmp_path, problems=(MINI,), lanes=2, cpu=True), "builtin")
    assert cpu.lanes == (None, None) and cpu.runtime.eval.timed and cpu.runtime.eval.baselines
    assert bench_options(CollectConfig(out=tmp_path, problems=(MINI,)), "builtin").lanes == ()


@pytest.mark.slow
def test_every_step_runs_on_the_tiny_model_resumes_by_step_and_reports(tmp_path):
    from policy_training.recipe_report import write_report
    from policy_training.tiny import build_tiny

    state = tmp_path / "state"
    prepare(state, SMALL, MINI, log=lambda line: None)
    run = Run(state, str(build_tiny(tmp_path / "tiny")), SMALL)
    assert run_steps(run, deadline=0, log=lambda line: None) == []          # the deadline: nothing started
    assert run_steps(run, steps=("teacher", "eval-builtin"), log=print) == ["teacher", "eval-builtin"]
    assert run_steps(run, log=print) == list(STEPS[2:])                     # the rest; the first two not again
    for step in STEPS:
        record = json.loads((state / "steps" / f"{step}.json").read_text())
        assert record["device"] == "cpu (Triton interpreter)" and record["seconds"] >= 0, record
        assert record["runs"] == 1 and not (state / "steps" / f"{step}.partial").exists(), record
    for stage in ("sft", "grpo", "grpo-plain"):
        assert (state / stage / "adapter").is_dir(), stage
    assert json.loads((state / "steps" / "eval-base.json").read_text())["summary"]["samples"] == 2

    # a fresh machine: the trained models are gone, the adapters travelled
    for stage in ("sft", "rft", "grpo", "grpo-plain"):
        shutil.rmtree(state / stage / "model", ignore_errors=True)
    rebuilt = Path(model_of(run, "grpo", log=lambda line: None))
    assert rebuilt == state / "grpo" / "rebuilt" / "model" and (rebuilt / "config.json").is_file()
    chain = json.loads((state / "grpo" / "rebuilt" / "summary.json").read_text())
    assert len(chain["chain"]) == 1 + (state / "rft" / "adapter").is_dir() + 1, chain

    text = write_report(state, tmp_path / "report", STEPS)
    assert "not measured yet" not in text
    assert text.count("| cpu (Triton interpreter) |") >= 3 and "kb_l1" not in text
    rows = [line for line in text.splitlines() if line.startswith("| ") and "%" in line]
    assert len(rows) == 6, text
    costs = [line.split(" | ")[0][2:] for line in text.split("| step | minutes")[1].splitlines()[2:] if line.startswith("| ")]
    assert costs == list(STEPS), text                   # every step's cost, evaluations included
    assert (tmp_path / "report" / "recipe_curves.png").stat().st_size > 5000
    assert (tmp_path / "report" / "recipe_sft_loss.png").stat().st_size > 5000


def test_a_step_cut_by_its_bound_keeps_its_seconds_for_the_run_that_finishes_it(tmp_path):
    import time

    cut = StepClock(tmp_path, "eval-sft", beat=0.05)
    time.sleep(0.3)
    cut.stop.set()                                       # the call's bound killed this run mid-step
    partial = json.loads((tmp_path / "steps" / "eval-sft.partial").read_text())
    assert 0.2 <= partial["seconds"] <= 0.4 and partial["runs"] == 1, partial
    resumed = StepClock(tmp_path, "eval-sft", beat=0.05)
    time.sleep(0.1)
    done = resumed.finish()
    assert done["runs"] == 2 and partial["seconds"] + 0.1 <= done["seconds"] <= partial["seconds"] + 0.3, done
    assert not (tmp_path / "steps" / "eval-sft.partial").exists()
