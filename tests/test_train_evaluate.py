"""`kernelpilot train evaluate` (issue 22): a model measured on held-out problems, for real, on the
tiny offline model, with the real evaluator in the Triton interpreter and a real SQLite store:

- the metrics from hand-made rows (a correct faster one, a correct slower one, a compile error,
  an untimed correct one; a run with nothing timed says "not measured");
- a row's speedup is the trust rules' (a flag that rules a result out of metrics leaves none);
- the batched sampler's greedy answers are the unbatched ones, token for token;
- a run over a generated problem set grades its held-out split only, writes rows, summary and
  store rows; a run killed mid-way (rows cut, the last one torn) resumes and grades the rest only;
- OUT holding another model's rows (or rows graded on another kind of device) refuses in one
  line; record=false writes nothing to the store.

    pytest -q tests/test_train_evaluate.py
"""
import json
import shutil
from pathlib import Path

import pytest

from agent.policy import Backend
from agent.prompts import build_messages
from agent.runtime import Runtime, RuntimeOptions
from policy_training.__main__ import main as training_main
from policy_training.evaluate import EvalRow, EvaluateConfig, as_row, evaluation_metrics, run_evaluate, summary_line
from policy_training.grading import Graded, LocalGrader
from policy_training.problems import generate, manifest, split_of, write_problems
from policy_training.reward import RewardConfig
from policy_training.sampling import Sample, sample, sample_batch
from policy_training.sft import Device
from policy_training.training import TrainingError
from tests.conftest import PROBLEMS
from tools.device import DeviceInfo
from tools.problems import load_problem
from tools.records import EvalStatus, Mode, Phase

KERNEL = "## Performance analysis\nrow-wise.\n\n```python\nclass ModelNew:\n    pass\n```"


def row(status: EvalStatus, eager: float | None = None, compile_: float | None = None, timed: bool = True,
        phase: Phase | None = None, extracted: bool = True, tokens: int = 10, sample: int = 0) -> EvalRow:
    return EvalRow("p", "h" * 64, sample, status, phase and phase.value, (), extracted, eager, compile_, timed, tokens,
                   True, "x" * 64, None, 0.1, "text")


def test_metrics_from_known_rows():
    rows = [row(EvalStatus.CORRECT, 2.0, 1.5, tokens=10), row(EvalStatus.CORRECT, 0.5, 0.4, tokens=20, sample=1),
            row(EvalStatus.COMPILE_ERROR, phase=Phase.LOAD, tokens=30, sample=2),
            row(EvalStatus.CORRECT, timed=False, tokens=40, sample=3)]
    m = evaluation_metrics(rows, problems=1)
    assert (m["samples"], m["compiles"], m["correct"], m["problems_correct"]) == (4, 0.75, 0.75, 1)
    assert (m["fast_1_eager"], m["fast_1_compile"]) == (0.25, 0.25)
    assert m["geomean_eager"] == pytest.approx(1.0) and m["geomean_rows"] == 2
    assert m["geomean_compile"] == pytest.approx((1.5 * 0.4) ** 0.5)
    assert m["mean_tokens"] == 25 and m["statuses"] == {"correct": 3, "compile_error": 1} and m["timed"]
    # a Triton JIT error at the first call is a compile error; a kernel that fails at run time compiled
    assert not row(EvalStatus.COMPILE_ERROR, phase=Phase.RUN).compiles
    assert row(EvalStatus.RUNTIME_ERROR, phase=Phase.RUN).compiles
    assert not row(EvalStatus.CORRECT, extracted=False).compiles
    untimed = evaluation_metrics([row(EvalStatus.CORRECT, timed=False)], problems=1)
    assert untimed["correct"] == 1.0 and untimed["fast_1_eager"] is None and untimed["geomean_eager"] is None
    assert untimed["speed"].startswith("not measured") and not untimed["timed"]
    empty = evaluation_metrics([], problems=3)
    assert empty["correct"] is None and empty["mean_tokens"] is None and empty["samples"] == 0


@pytest.mark.parametrize("flag, counted", [("excessive_speedup", True), ("no_custom_kernel", False),
                                           ("timing_mismatch", False)])
def test_a_rows_speedup_is_the_one_the_trust_rules_allow(flag, counted):
    problem = load_problem(PROBLEMS / "04_softmax_rows.py", size="small")
    graded = Graded(problem.hash, "code", "", EvalStatus.CORRECT, (flag,), 1.0, None, 7, 0.5, phase=None,
                    mode=Mode.GPU, runtime_ms=1.0, speedup_vs_eager=3.0, speedup_vs_compile=2.0)
    made = as_row(problem, 0, Sample(KERNEL, (1, 2, 3), True), graded, "f" * 64)
    assert made.extracted and made.compiles and made.timed and made.tokens == 3 and made.evaluation_id == 7
    assert (made.speedup_vs_eager, made.speedup_vs_compile) == ((3.0, 2.0) if counted else (None, None))
    assert evaluation_metrics([made], 1)["correct"] == (1.0 if counted else 0.0)


def test_the_config_refuses_greedy_duplicates_and_an_unrecorded_service(capsys):
    base = ["evaluate", "--set", "model=m", "--set", "problems=p", "--set", "out=o"]
    assert training_main(base + ["--set", "k=2"]) == 2
    assert "k > 1 needs temperature > 0" in capsys.readouterr().err
    assert training_main(base + ["--set", "record=false", "--set", "grader_url=http://127.0.0.1:1"]) == 2
    assert "record=false needs the in-process grader" in capsys.readouterr().err
    assert training_main(base + ["--show-config"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert (shown["split"], shown["temperature"], shown["k"], shown["protocol"]) == ("held_out", 0.0, 1, "full")


# ------------------------------------------------------------------ on the tiny model (slow)

@pytest.fixture(scope="module")
def runtime(tmp_path_factory):
    db = f"sqlite:///{tmp_path_factory.mktemp('store') / 'history.db'}"
    with Runtime.open(RuntimeOptions(force_cpu=True, db=db)) as opened:
        yield opened


@pytest.mark.slow
def test_batched_greedy_answers_are_the_unbatched_ones(tiny):
    import torch

    from policy_training.training import load_pretrained

    model, tokenizer = load_pretrained(tiny)
    with torch.no_grad(), torch.random.fork_rng(devices=[]):     # sharper weights: the answer depends on the prompt
        torch.manual_seed(1)
        for weight in (p for p in model.parameters() if p.dim() > 1):
            weight.normal_(0, 0.3)
    device = DeviceInfo(Mode.CPU_INTERPRETER, "cpu", None)
    names = ("04_softmax_rows.py", "01_scale_bias_relu_chain.py", "09_sum_reduction.py")
    prompts = [build_messages(load_problem(PROBLEMS / n, size="small"), Backend.TRITON, device, []) for n in names]
    alone = [sample(model, tokenizer, messages, 2, 12, 0.0) for messages in prompts]
    batched = sample_batch(model, tokenizer, prompts, 2, 12, 0.0)
    assert [[s.ids for s in group] for group in batched] == [[s.ids for s in group] for group in alone]
    assert all(a.ids == b.ids for a, b in alone) and len({group[0].ids for group in alone}) == 3
    assert all(len(s.ids) == 12 and not s.stopped for group in batched for s in group)


def problem_set(folder: Path) -> tuple[Path, set[str], set[str]]:
    """Four generated problems, half held out by hash: (manifest, held-out names, train names)."""
    problems = generate(0, 4)
    path = write_problems(folder, problems, manifest(problems, 0, 4, 4, (), (), 0.5, None))
    held = {p.name for p in problems if split_of(p.hash, 0.5).value == "held_out"}
    assert held and len(held) < 4, "the pinned seed gives both splits"
    return path, held, {p.name for p in problems} - held


@pytest.mark.slow
def test_held_out_rows_summary_store_and_a_resume_that_grades_only_the_rest(tiny, runtime, tmp_path):
    path, held, train = problem_set(tmp_path / "set")
    config = EvaluateConfig(model=str(tiny), out=tmp_path / "eval", problem_set=path, k=2, temperature=1.0,
                            max_new_tokens=8, batch_size=2, device=Device.CPU, cpu=True)
    before = runtime.store.count()
    summary = run_evaluate(config, log=lambda line: None, grader=LocalGrader(runtime, "evaluate", str(tiny),
                                                                              RewardConfig()))
    rows = [json.loads(line) for line in (config.out / "rows.jsonl").read_text().splitlines()]
    assert {r["problem"] for r in rows} == held and len(rows) == 2 * len(held)
    assert sorted((r["problem"], r["sample"]) for r in rows) == sorted((n, i) for n in held for i in (0, 1))
    assert all(r["tokens"] <= 8 and r["status"] and len(r["prompt_hash"]) == 64 for r in rows)
    assert (summary["samples"], summary["problems"], summary["missing"], summary["split"]) == (len(rows), len(held), 0,
                                                                                              "held_out")
    assert summary["prompts"]["agent_prompt"] is True and summary["speed"].startswith("not measured")
    assert summary["fast_1_eager"] is None and summary["geomean_eager"] is None and summary["correct"] == 0.0
    assert "speed not measured" in summary_line(summary)
    mine = [r for r in runtime.store.records() if r.policy == "evaluate"]
    assert runtime.store.count() == before + len(rows) and {r.model for r in mine} == {str(tiny)}
    assert {r.id for r in mine} == {r["evaluation_id"] for r in rows}

    kept = (config.out / "rows.jsonl").read_text().splitlines()[:1]         # killed: one row, then a torn line
    (config.out / "rows.jsonl").write_text(kept[0] + "\n" + kept[0][:40])
    again = run_evaluate(config, log=lambda line: None, grader=LocalGrader(runtime, "evaluate", str(tiny),
                                                                            RewardConfig()))
    resumed = [json.loads(line) for line in (config.out / "rows.jsonl").read_text().splitlines()]
    assert resumed[0] == json.loads(kept[0]) and len(resumed) == len(rows) and again["samples"] == len(rows)
    assert runtime.store.count() == before + 2 * len(rows) - 1              # only the missing ones graded again
    assert {(r["problem"], r["sample"]) for r in resumed} == {(r["problem"], r["sample"]) for r in rows}


@pytest.mark.slow
def test_another_models_rows_refuse_and_record_false_writes_nothing(tiny, runtime, tmp_path):
    other = Path(shutil.copytree(tiny, tmp_path / "other"))
    config = EvaluateConfig(model=str(other), out=tmp_path / "eval", problems=(PROBLEMS / "04_softmax_rows.py",),
                            max_new_tokens=4, device=Device.CPU, cpu=True)
    before = runtime.store.count()
    summary = run_evaluate(config, log=lambda line: None,
                           grader=LocalGrader(runtime, "evaluate", str(other), RewardConfig(), record=False))
    assert summary["samples"] == 1 and runtime.store.count() == before and summary["written_back"] == 0
    graded = json.loads((config.out / "rows.jsonl").read_text())
    assert graded["evaluation_id"] is None
    (config.out / "rows.jsonl").write_text(json.dumps({**graded, "timed": True}) + "\n")    # as if graded on a GPU
    with pytest.raises(TrainingError, match="holds rows graded on a GPU, and this grader runs the interpreter"):
        run_evaluate(config, log=lambda line: None, grader=LocalGrader(runtime, "evaluate", str(other), RewardConfig()))
    weights = other / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1                                                          # retrained in place: another model
    weights.write_bytes(bytes(data))
    with pytest.raises(TrainingError, match=r"another model or config \(weights not the same\)"):
        run_evaluate(config, log=lambda line: None, grader=None)
    with pytest.raises(TrainingError, match=r"\(model not the same\)"):
        run_evaluate(EvaluateConfig(**{**config.__dict__, "model": str(tiny)}), log=lambda line: None)
