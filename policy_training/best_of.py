"""Best-of-N at inference: a policy answers the same turn N times, the evaluator grades every
kernel, and the best verdict wins (test-time scaling, as Dr. Kernel's 31.6% -> 47.8% used it).

`best_of_n(policy, grader, problem, ...)` is the function; `kernelpilot train best-of` runs it over
problems. The policy is any of the agent's (`local:MODEL_DIR`, `openai`, `replay:FILE`, `builtin`),
given the agent's own first-turn prompt (agent/prompts.py, with the store's exemplars) and the
toolbox's schemas; each answer's kernel is the `code` of its last tool call that has one, else
the last ```python block of its text. A local policy samples at `temperature`; an openai one at
its server's default sampling (OpenAI's and vLLM's default temperature is 1). Every kernel is
graded by the real evaluator and written back to the store (origin: policy `best-of`, the model).
The winner is the best by (correct and allowed as a best, reward, process score).

**Process reward model hook.** `prm = "module:function"` names a scorer `f(problem, analysis) ->
float` of the answer's analysis (its reasoning steps). With it, the N answers are ranked by that
score, only the `prm_keep` best are evaluated (0: all), and the score breaks ties among equal
rewards. What exists: the hook and its plumbing only. No process reward model is trained here,
and TRL 1.16 has no PRM trainer; a scorer could be a classifier trained on the store's analyses
labelled by their kernels' verdicts (`kernelpilot history export`).

    picked = best_of_n(LocalPolicy.load("runs/grpo/model"), grader, problem, n=8)
    picked.best.graded.reward, [c.graded.status for c in picked.candidates]
    kernelpilot train best-of --set policy=local:runs/grpo/model --set problems=benchmarks/problems --set n=8 --out runs/bo
"""
import importlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from agent.local_policy import LocalPolicy, last_python_block
from agent.policies import PolicySpec
from agent.policy import Backend, Policy, PolicyTurn, TurnInput
from agent.graph import Budget
from policy_training.config import as_dict
from policy_training.export import write_jsonl
from policy_training.grading import Graded, GraderSettings, open_grader
from policy_training.rollouts import as_completion, prompt_for, training_problems
from policy_training.training import TrainingError, write_summary
from tools.problems import Problem
from tools.sandbox.backends import SandboxKind
from tools.toolbox import Toolbox

Scorer = Callable[[Problem, str], float]


@dataclass(frozen=True)
class BestOfConfig:
    out: Path                                   # OUT/best_of.jsonl and OUT/summary.json
    policy: str                                 # local:MODEL_DIR, openai, replay:FILE or builtin
    problems: tuple[Path, ...] = ()             # problem files or folders
    problem_set: Path | None = None             # or a generated problem set's manifest.json: its train split
    only: tuple[str, ...] = ("*",)              # globs over problem names (file stems)
    n: int = 4                                  # answers per problem
    backend: Backend = Backend.TRITON           # the kernels the prompt asks for
    exemplars: int = 3                          # earlier kernels per prompt from the store
    temperature: float = 0.8                    # a local policy's sampling temperature
    max_new_tokens: int = 2048                  # a local policy's tokens per answer
    model: str | None = None                    # an openai policy's model (else KERNELPILOT_MODEL / config.toml)
    base_url: str | None = None                 # an openai policy's endpoint (else OPENAI_BASE_URL / config.toml)
    prm: str | None = None                      # a process scorer, module:function(problem, analysis) -> float
    prm_keep: int = 0                           # with prm: evaluate only this many best-scored answers (0: all)
    grader_url: str | None = None               # a grader service (token: KERNELPILOT_GRADER_TOKEN); none: in-process
    db: str | None = None                       # history store URL; none: KERNELPILOT_DB_URL or $KERNELPILOT_HOME/history.db
    cpu: bool = False                           # grade in the Triton interpreter even where a GPU is present
    sandbox: SandboxKind = SandboxKind.PROCESS  # where candidates run: process or docker
    timeout_s: float | None = None              # wall-clock limit per evaluation step

    def check(self) -> str | None:
        if not self.problems and self.problem_set is None:
            return "name problems (files or folders) or a problem_set manifest"
        if self.n < 1 or self.prm_keep < 0 or self.max_new_tokens < 1 or self.temperature < 0:
            return "n and max_new_tokens must be positive, prm_keep and temperature not negative"
        if self.prm_keep and self.prm is None:
            return "prm_keep needs a prm"
        return None


@dataclass(frozen=True)
class Answer:
    text: str                                   # the answer's text (its analysis)
    kernel: str | None                          # None: it proposed no kernel
    process_score: float | None = None
    graded: Graded | None = None                # None: not evaluated (no kernel, or left out by the prm)


@dataclass(frozen=True)
class BestOf:
    problem: str
    answers: tuple[Answer, ...]
    best: Answer | None                         # None: no answer was graded


def kernel_of(turn: PolicyTurn) -> str | None:
    """The kernel an answer proposes: its last tool call's `code`, else its last ```python block."""
    for call in reversed(turn.tool_calls):
        try:
            arguments = json.loads(call.arguments)
        except json.JSONDecodeError:
            continue
        if isinstance(arguments, dict) and isinstance(arguments.get("code"), str):
            return arguments["code"]
    return last_python_block(turn.text)


def load_scorer(name: str) -> Scorer:
    module, _, function = name.partition(":")
    try:
        scorer = getattr(importlib.import_module(module), function)
    except (ImportError, AttributeError, ValueError) as error:
        raise TrainingError(f"prm {name!r}: cannot import it as module:function ({error})") from None
    if not callable(scorer):
        raise TrainingError(f"prm {name!r} is not callable")
    return scorer


def best_of_n(policy: Policy, grader, problem: Problem, n: int, backend: Backend = Backend.TRITON,
              exemplars: int = 3, scorer: Scorer | None = None, keep: int = 0) -> BestOf:
    """N answers to the agent's first turn on `problem`, graded; the best of them."""
    messages = prompt_for(problem, backend, grader.device, grader.store, exemplars)
    turn_input = TurnInput(problem, backend, grader.device, messages, Toolbox.schemas(), [], turn=1)
    answers = []
    for _ in range(n):
        turn = policy.turn(turn_input)
        answers.append(Answer(turn.text, kernel_of(turn), scorer(problem, turn.text) if scorer else None))
    chosen = sorted(range(n), key=lambda i: -(answers[i].process_score or 0.0))[:keep or n]
    graded = [Answer(a.text, a.kernel, a.process_score, grader.grade(problem, completion_of(a)))
              if i in chosen and a.kernel else a for i, a in enumerate(answers)]
    ranked = [a for a in graded if a.graded is not None]
    best = max(ranked, key=rank) if ranked else None
    return BestOf(problem.name, tuple(graded), best)


def completion_of(answer: Answer) -> str:
    """The answer as one completion: its text when the kernel is its own last block, else the text
    followed by the kernel of its tool call."""
    if last_python_block(answer.text) == answer.kernel:
        return answer.text
    return as_completion(answer.text, answer.kernel)


def rank(answer: Answer) -> tuple:
    g = answer.graded
    return (g.usable, g.reward if g.reward is not None else float("-inf"), answer.process_score or 0.0)


def build_policy(config: BestOfConfig, store) -> Policy:
    spec = PolicySpec.parse(config.policy, model=config.model, base_url=config.base_url)
    policy = spec.build(store, Budget(max_turns=1))
    if isinstance(policy, LocalPolicy):
        policy.temperature, policy.max_new_tokens = config.temperature, config.max_new_tokens
    return policy


def run_best_of(config: BestOfConfig, log=print) -> dict:
    started = time.monotonic()
    scorer = load_scorer(config.prm) if config.prm else None
    settings = GraderSettings(url=config.grader_url, db=config.db, cpu=config.cpu, sandbox=config.sandbox,
                              timeout_s=config.timeout_s)
    with open_grader(settings, "best-of", config.model or config.policy) as grader:
        policy = build_policy(config, grader.store)
        picks = []
        for problem in training_problems(config, grader.size):
            picks.append(best_of_n(policy, grader, problem, config.n, config.backend, config.exemplars, scorer,
                                   config.prm_keep))
            log(f"best-of: {problem.name}: {line_of(picks[-1])}")
        written = grader.written
    config.out.mkdir(parents=True, exist_ok=True)
    write_jsonl(config.out / "best_of.jsonl", [row_of(p) for p in picks])
    return write_summary(config.out, "best-of", started, {
        "problems": len(picks), "n": config.n, "written_back": written,
        "correct": sum(p.best is not None and p.best.graded.usable for p in picks),
        "any_answer_correct_rate": round(sum(p.best is not None and p.best.graded.usable for p in picks)
                                         / max(1, len(picks)), 3),
        "first_answer_correct_rate": round(sum(bool(p.answers[0].graded and p.answers[0].graded.usable) for p in picks)
                                           / max(1, len(picks)), 3),
        "config": as_dict(config)})


def line_of(pick: BestOf) -> str:
    if pick.best is None:
        return f"no kernel among {len(pick.answers)} answer(s)"
    g = pick.best.graded
    return f"best of {len(pick.answers)}: {g.status.value if g.status else 'no verdict'}, reward {g.reward}"


def row_of(pick: BestOf) -> dict:
    def one(a: Answer) -> dict:
        g = a.graded
        return {"has_kernel": a.kernel is not None, "process_score": a.process_score,
                "status": g.status.value if g and g.status else None, "reward": g.reward if g else None,
                "evaluation_id": g.evaluation_id if g else None}

    return {"problem": pick.problem, "best": pick.answers.index(pick.best) if pick.best else None,
            "answers": [one(a) for a in pick.answers]}


def summary_line(summary: dict) -> str:
    return (f"best-of: {summary['problems']} problem(s), n={summary['n']}: {summary['correct']} with a correct "
            f"kernel (first answer alone: {summary['first_answer_correct_rate']:.0%}); "
            f"{summary['written_back']} written back; {summary['seconds']} s")
