"""Training's stages 2 and 3 and best-of-N for real (issue 21), on the tiny offline model, with
the real evaluator in the Triton interpreter and a real SQLite store:

- rft samples with the agent's prompt, writes every candidate back with the model as origin,
  trains on its positives (here the seed: a random model writes no correct kernel) and says so
  when there is none (then with `save_merged = false` it saves neither model nor adapter);
- a GRPO step runs with each loss type (grpo, dr_grpo, dapo), with LoRA, DoRA+rsLoRA and full
  fine-tuning (one of them with the KL term on), changes the parameters, profiles the step, and
  its checkpoint reloads and serves one agent turn as `local:DIR`; with PEFT, its OUT/adapter
  merged into the base (`train merge`) gives its own OUT/model's weights;
- contrastive prompts change when the store gains a faster kernel; difficulty weights follow
  the recorded failures;
- honest, wrong and hacking candidates (benchmarks/candidates, tests/fixtures/wrong, tests/cheats)
  earn their rewards through the grader, recorded;
- best-of-N picks the evaluator's best of scripted answers (a fake only at the LLM's text) and
  the process-scorer hook ranks and filters them.

Timings recorded in tests/fixtures are not claims: the one faster kernel below is test data
(a real interpreter verdict given a synthetic speedup), since nothing is timed without a GPU.

    pytest -q tests/test_train_rl.py
"""
import json
from pathlib import Path

import pytest
import torch

from agent.graph import Budget, StopReason
from agent.local_policy import LocalPolicy
from agent.policies import PolicySpec
from agent.policy import Backend, PolicyTurn, ToolCall
from agent.prompts import build_messages
from agent.runtime import Runtime, RuntimeOptions
from agent.session import AgentSession, SessionOptions
from policy_training.best_of import best_of_n, kernel_of, load_scorer
from policy_training.config import PeftChoice
from policy_training.contrastive import difficulty, draw_problems
from policy_training.grading import LocalGrader, split_completion
from policy_training.grpo import GRPOStageConfig, LossType, run_grpo
from policy_training.merge import MergeConfig, run_merge
from policy_training.reward import RewardConfig, RewardKind
from policy_training.rft import RFTConfig, run_rft
from policy_training.rollouts import as_completion, prompt_for, seed_completions
from policy_training.sft import Device
from tests.conftest import CANDIDATES, FIXTURES, PROBLEMS, ROOT, read
from tools.history import HistoryStore, Origin
from tools.problems import load_problem
from tools.records import EvalStatus

pytestmark = pytest.mark.slow
SOFTMAX, CHAIN = PROBLEMS / "04_softmax_rows.py", PROBLEMS / "01_scale_bias_relu_chain.py"
HONEST = read(CANDIDATES / "04_softmax_rows.py")
ANALYSIS = "## Performance analysis\nOne program per row: two passes over the row, memory-bound."


@pytest.fixture(scope="module")
def runtime(tmp_path_factory):
    db = f"sqlite:///{tmp_path_factory.mktemp('store') / 'history.db'}"
    with Runtime.open(RuntimeOptions(force_cpu=True, db=db)) as opened:
        yield opened


@pytest.fixture(scope="module")
def seeded(runtime) -> str:
    """The store holds one correct softmax kernel (what a mentor left there)."""
    mentor = LocalGrader(runtime, "mentor", "a-mentor", RewardConfig())
    graded = mentor.grade(load_problem(SOFTMAX, size="small"), as_completion(ANALYSIS, HONEST))
    assert graded.usable and graded.reward == 1.0
    return graded.candidate


def weights(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(folder / "model.safetensors")


def changed(before: dict, after: dict) -> list[str]:
    assert set(before) == set(after)                  # adapters merged: no extra tensors
    return [name for name in before if not (before[name] == after[name]).all()]


def test_rft_writes_every_candidate_back_and_trains_on_its_positives(tiny, runtime, seeded, tmp_path):
    store, before = runtime.store, runtime.store.count()
    config = RFTConfig(model=str(tiny), out=tmp_path / "rft", problems=(SOFTMAX,), k=2, seeds=1, max_new_tokens=16,
                       max_steps=2, learning_rate=1e-2, max_length=4096, device=Device.CPU, cpu=True)
    summary = run_rft(config, log=lambda line: None, grader=LocalGrader(runtime, "rft", str(tiny), RewardConfig()))
    assert (summary["sampled"], summary["seeded"], summary["written_back"]) == (2, 1, 3)
    assert store.count() == before + 3
    mine = [r for r in store.records(with_source=True) if r.policy == "rft"]
    assert len(mine) == 3 and {r.model for r in mine} == {str(tiny)} and {r.session for r in mine} == {summary["session"]}
    assert summary["positives"] == 1 and summary["positives_from_model"] == 0 and summary["trained"]
    rows = [json.loads(line) for line in (config.out / "positives" / "messages" / "train.jsonl").read_text().splitlines()]
    problem = load_problem(SOFTMAX, size="small")
    assert rows[0]["messages"][:2] == build_messages(problem, Backend.TRITON, runtime.device, [])
    assert rows[0]["messages"][2]["content"].startswith(ANALYSIS) and seeded.strip() in rows[0]["messages"][2]["content"]
    assert summary["steps"] == 2 and changed(weights(tiny), weights(config.out / "model"))
    assert len((config.out / "candidates.jsonl").read_text().splitlines()) == 3

    empty = run_rft(RFTConfig(model=str(tiny), out=tmp_path / "none", problems=(CHAIN,), k=1, max_new_tokens=8,
                              device=Device.CPU, cpu=True),
                    log=lambda line: None, grader=LocalGrader(runtime, "rft", str(tiny), RewardConfig()))
    assert (empty["positives"], empty["trained"], empty["written_back"]) == (0, False, 1)
    assert "no sample was correct" in empty["note"] and not changed(weights(tiny), weights(tmp_path / "none" / "model"))
    assert empty["adapter"] is None
    shipped = run_rft(RFTConfig(model=str(tiny), out=tmp_path / "ship", problems=(CHAIN,), k=1, max_new_tokens=8,
                                peft=PeftChoice.LORA, save_merged=False, device=Device.CPU, cpu=True),
                      log=lambda line: None, grader=LocalGrader(runtime, "rft", str(tiny), RewardConfig()))
    assert (shipped["model"], shipped["adapter"], shipped["trained"]) == (None, None, False)
    assert "a chain of adapters goes on from the starting model" in shipped["note"]
    assert not (tmp_path / "ship" / "model").exists() and not (tmp_path / "ship" / "adapter").exists()


@pytest.mark.parametrize("loss_type, peft, beta", [(LossType.GRPO, PeftChoice.LORA, 0.04),
                                                    (LossType.DR_GRPO, PeftChoice.DORA_RSLORA, 0.0),
                                                    (LossType.DAPO, PeftChoice.NONE, 0.0)])
def test_a_grpo_step_per_loss_type_and_peft_changes_the_parameters(tiny, runtime, seeded, tmp_path, loss_type, peft,
                                                                   beta):
    config = GRPOStageConfig(model=str(tiny), out=tmp_path / "grpo", problems=(SOFTMAX,), num_generations=2, seeds=1,
                             max_steps=1, max_new_tokens=16, exemplars=1, learning_rate=1e-2, loss_type=loss_type,
                             peft=peft, lora_r=4, beta=beta, epsilon_high=0.28, device=Device.CPU, cpu=True)
    summary = run_grpo(config, log=lambda line: None, grader=LocalGrader(runtime, "grpo", str(tiny), RewardConfig()))
    assert summary["steps"] == 1 and summary["written_back"] == 2 and summary["seeded"] == 1
    assert summary["statuses"]["correct"] == 1 and summary["reward_first"] is not None
    names = changed(weights(tiny), weights(config.out / "model"))
    assert any("proj" in name for name in names), names
    step = json.loads((config.out / "profile.json").read_text())["steps"][0]
    assert step["graded"] == 2 and step["step_s"] >= step["generation_s"] + step["grading_s"] > 0
    logged = [json.loads(line) for line in (config.out / "metrics.jsonl").read_text().splitlines()]
    assert any("loss" in entry and "reward" in entry for entry in logged)
    if peft is PeftChoice.NONE:
        assert summary["adapter"] is None
        serve_one_turn(config.out / "model", runtime)
        return
    assert summary["adapter"]["base"] == str(tiny) and summary["adapter"]["folder"] == str(config.out / "adapter")
    merge = MergeConfig(base=str(tiny), adapters=(config.out / "adapter",), out=tmp_path / "merged")
    run_merge(merge, log=lambda line: None)
    merged, own = weights(tmp_path / "merged" / "model"), weights(config.out / "model")
    assert all(torch.allclose(merged[name], own[name], rtol=0, atol=1e-6) for name in own)


def test_one_generate_call_feeds_the_steps_of_a_generation_round(tiny, runtime, tmp_path, monkeypatch):
    import policy_training.contrastive as contrastive

    calls = []

    def counted(model, tokenizer, prompts, k, *args, **kwargs):     # the real sampler, its calls counted
        calls.append((len(prompts), k))
        return contrastive.sample_batch.__wrapped__(model, tokenizer, prompts, k, *args, **kwargs)

    counted.__wrapped__ = contrastive.sample_batch
    monkeypatch.setattr(contrastive, "sample_batch", counted)
    config = GRPOStageConfig(model=str(tiny), out=tmp_path / "grpo", problems=(SOFTMAX, CHAIN), num_generations=2,
                             prompts_per_step=2, steps_per_generation=2, max_steps=2, max_new_tokens=8, exemplars=0,
                             device=Device.CPU, cpu=True)
    summary = run_grpo(config, log=lambda line: None, grader=LocalGrader(runtime, "grpo", str(tiny), RewardConfig()))
    assert summary["steps"] == 2 and calls == [(4, 2)], calls         # 2 steps x 2 problems, 2 samples each, at once
    steps = json.loads((config.out / "profile.json").read_text())["steps"]
    assert [s["graded"] for s in steps] == [8, 0] and steps[0]["generation_s"] > 0 == steps[1]["generation_s"], steps
    assert GRPOStageConfig(model="m", out=tmp_path, steps_per_generation=0).check().startswith("prompts_per_step, steps")


def serve_one_turn(model_dir: Path, runtime: Runtime) -> None:
    """The checkpoint reloaded as `--policy local:DIR` serves one turn through the real graph (what
    a step of training makes it say is its own: the turn is served and recorded, whatever its text)."""
    spec = PolicySpec.parse(f"local:{model_dir}")
    policy = spec.build(runtime.store, Budget(max_turns=1))
    assert isinstance(policy, LocalPolicy)
    policy.max_new_tokens = 16
    options = SessionOptions(problem=SOFTMAX, policy=spec, budget=Budget(max_turns=1))
    final = AgentSession.open(runtime, options, policy).run()
    assert final["turns"] == 1 and final["stop"] == StopReason.TURN_BUDGET and final["tokens"] > 16
    assert final["messages"][2]["role"] == "assistant" and policy._loaded is not None


def test_contrastive_prompts_change_when_the_store_gains_a_faster_kernel(runtime, tmp_path):
    store, problem = HistoryStore(f"sqlite:///{tmp_path / 'h.db'}"), load_problem(SOFTMAX, size="small")
    verdict = runtime.evaluator.evaluate(problem, HONEST)
    assert verdict.status is EvalStatus.CORRECT

    def timed(speedup: float):             # test data: a real verdict given a synthetic speedup
        return verdict.model_copy(update={"runtime_ms": 1.0 / speedup, "eager_ms": 1.0, "speedup_vs_eager": speedup})

    store.record(problem, HONEST, timed(1.2), Origin("grpo", "m", ANALYSIS), session="s")
    first = prompt_for(problem, Backend.TRITON, runtime.device, store, 3)
    assert "1.20x vs eager" in first[1]["content"] and "2.50x" not in first[1]["content"]
    faster = HONEST.replace("MAX_BLOCK = 16384", "MAX_BLOCK = 8192")
    store.record(problem, faster, timed(2.5), Origin("grpo", "m", "## Performance analysis\nSmaller blocks."), session="s")
    second = prompt_for(problem, Backend.TRITON, runtime.device, store, 3)
    assert second != first and second[0] == first[0]
    body = second[1]["content"]
    assert body.index("Kernel 1: correct, 2.50x vs eager") < body.index("Kernel 2: correct, 1.20x vs eager")
    assert "MAX_BLOCK = 8192" in body.split("Kernel 2")[0]
    assert seed_completions(store, problem, 1) == [as_completion("## Performance analysis\nSmaller blocks.", faster)]

    chain = load_problem(CHAIN, size="small")
    store.record(chain, "garbage (((", runtime.evaluator.evaluate(chain, "garbage ((("), Origin("grpo", "m"), session="s")
    found = difficulty(store, [problem, chain], "m", power=1.0)
    assert found[CHAIN.stem]["by_status"] == {"compile_error": 1} and found[SOFTMAX.stem]["failed"] == 0
    assert found[CHAIN.stem]["weight"] > found[SOFTMAX.stem]["weight"]
    drawn = draw_problems([SOFTMAX.stem, CHAIN.stem], found, 200, seed=0)
    assert drawn.count(CHAIN.stem) > drawn.count(SOFTMAX.stem)
    assert draw_problems(["a", "b"], None, 4, seed=0) == ["a", "b", "a", "b"]
    store.engine.dispose()


CASES = [  # (problem, candidate file, status, reward kind, reward, hack)
    (SOFTMAX, CANDIDATES / "04_softmax_rows.py", EvalStatus.CORRECT, RewardKind.UNTIMED, 1.0, False),
    (SOFTMAX, FIXTURES / "wrong" / "04_softmax_rows.py", EvalStatus.INCORRECT, RewardKind.FAILED, -0.2, False),
    (SOFTMAX, ROOT / "tests" / "cheats" / "cheat_reference_op.py", EvalStatus.CORRECT, RewardKind.DISQUALIFIED, 0.0,
     True),
    (SOFTMAX, ROOT / "tests" / "cheats" / "cheat_gc_reading.py", EvalStatus.REJECTED, RewardKind.FAILED, -1.0, True),
    (CHAIN, CANDIDATES / "01_scale_bias_relu_chain.py", EvalStatus.CORRECT, RewardKind.UNTIMED, 1.0, False),
    (CHAIN, FIXTURES / "wrong" / "01_scale_bias_relu_chain.py", EvalStatus.INCORRECT, RewardKind.FAILED, -0.2, False),
]


def test_honest_wrong_and_hacking_candidates_earn_their_rewards_through_the_interpreter(runtime):
    grader = LocalGrader(runtime, "grpo", "reward-check", RewardConfig())
    for problem_path, candidate, status, kind, value, hack in CASES:
        completion = f"{ANALYSIS}\n\n```python\n{read(candidate)}```\n"
        graded = grader.grade(load_problem(problem_path, size="small"), completion, tokens=100)
        where = f"{candidate.name} on {problem_path.stem}"
        assert (graded.status, graded.kind, graded.reward) == (status, kind, value), where
        assert graded.usable is (kind is RewardKind.UNTIMED), where
        record = runtime.store.records(ids=[graded.evaluation_id], with_source=True)[0]
        assert record.source == read(candidate) and record.analysis == ANALYSIS and record.model == "reward-check"
        assert graded.hack is hack, where
    assert grader.written == len(CASES)
    assert split_completion("prose only") == ("", "prose only")


class Scripted:
    """A policy whose answers are fixed texts, one per call (the fake sits at the LLM's text)."""

    name, model = "scripted", "scripted-answers"

    def __init__(self, turns: list[PolicyTurn]):
        self.turns, self.calls = turns, 0

    def turn(self, turn_input) -> PolicyTurn:
        self.calls += 1
        return self.turns[(self.calls - 1) % len(self.turns)]


def prefer_prose(problem, analysis: str) -> float:
    """A stand-in process scorer for the hook: longer analyses score higher."""
    return float(len(analysis))


def test_best_of_n_keeps_the_evaluators_best_and_the_process_scorer_ranks(runtime):
    wrong = read(FIXTURES / "wrong" / "04_softmax_rows.py")
    turns = [PolicyTurn(f"{ANALYSIS}\n```python\n{wrong}```"),
             PolicyTurn(ANALYSIS, (ToolCall("c1", "submit", json.dumps({"code": HONEST})),)),
             PolicyTurn("## Performance analysis\nI have no kernel yet.")]
    assert kernel_of(turns[1]) == HONEST and kernel_of(turns[2]) is None
    grader, problem = LocalGrader(runtime, "best-of", "scripted-answers", RewardConfig()), load_problem(SOFTMAX, size="small")
    picked = best_of_n(Scripted(turns), grader, problem, n=3)
    assert picked.best is picked.answers[1] and picked.best.graded.usable and grader.written == 2
    assert [a.graded.status if a.graded else None for a in picked.answers] == [EvalStatus.INCORRECT, EvalStatus.CORRECT,
                                                                              None]
    ranked = best_of_n(Scripted(turns), grader, problem, n=3, scorer=load_scorer("tests.test_train_rl:prefer_prose"),
                       keep=1)
    assert [a.graded is not None for a in ranked.answers] == [True, False, False]   # the longest analysis only
    assert ranked.best is ranked.answers[0] and not ranked.best.graded.usable
