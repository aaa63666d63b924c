"""The pieces of the contrastive GRPO stage that are ours, not TRL's: the rollout (prompts rendered
from the live store, generation, off-policy guidance), the reward function (the real evaluator
through a grader, every candidate written back), the difficulty weights of the problems, and the
per-step timing (generation, grading, update, peak memory, graded candidates per minute).

**Prompts from the live store.** The dataset's `prompt` column holds problem names; the rollout
renders each one's prompt when it is sampled, with agent/prompts.py `build_messages` and the
store's fast, middling and slow kernels for that problem (`exemplars`), so a faster kernel that
training has just found (and written back) is in the next step's prompts: model and exemplars
improve together, as CUDA-L1's contrastive RL does.

**Guidance.** With `seeds = N`, up to N members of each group are the store's best correct
kernels (rollouts.py `seed_completions`) instead of samples: the group then has a positive even
when the model has none of its own, and the advantage pushes towards it (off-policy guidance).

**Difficulty.** Problems are drawn for the run with weights from the store: the smoothed share of
the model's recorded evaluations of each problem that failed, `((failed + 1) / (n + 2)) ** power`,
with the failures broken down by status for the summary (error attribution).

    rollout = Rollout(problems, grader, config, tokenizer, times)     # GRPOTrainer(rollout_func=rollout)
    reward = reward_function(problems, grader, times)                 # GRPOTrainer(reward_funcs=[reward])
"""
import resource
import time
from collections import Counter
from dataclasses import dataclass, field
from itertools import groupby

import torch

from agent.bench.metrics import geomean
from policy_training.grading import grade_each
from policy_training.rollouts import prompt_for, seed_completions
from policy_training.sampling import completion_ids, prompt_ids, sample_batch
from tools.history import HistoryStore
from tools.problems import Problem
from tools.trust import Versus, trusted_speedup

FAILED = ("incorrect", "compile_error", "runtime_error", "timeout", "crashed", "rejected")


@dataclass
class StepTimes:
    """Seconds spent generating and grading (added by the rollout and the reward), per step."""

    generation_s: float = 0.0
    grading_s: float = 0.0
    graded: int = 0
    seeded: int = 0
    correct: int = 0                                    # graded correct and allowed as a best (tools/trust.py)
    speedups: list[float] = field(default_factory=list)  # the trusted speedups vs eager of those that were timed
    steps: list[dict] = field(default_factory=list)


class Rollout:
    """TRL's `rollout_func`: one completion per prompt received (TRL repeats each prompt
    `num_generations` times), the prompt rendered now from the store. The groups of one call are
    drawn in one `generate` call (as many as need the same number of samples): generation of a
    small model is launch-bound, so a wider batch costs about what one group does."""

    def __init__(self, problems: dict[str, Problem], grader, config, tokenizer, times: StepTimes):
        self.problems, self.grader, self.config, self.tokenizer, self.times = problems, grader, config, tokenizer, times
        self.rendered: dict[str, list[dict]] = {}      # each problem's latest prompt (the summary shows it)

    def __call__(self, prompts: list[str], trainer) -> dict:
        started = time.monotonic()
        model = trainer.accelerator.unwrap_model(trainer.model)
        groups = [self.group(name, len(list(run))) for name, run in groupby(prompts)]
        was_training = model.training
        model.eval()
        for k in sorted({g.k for g in groups if g.k}):
            alike = [g for g in groups if g.k == k]
            drawn = sample_batch(model, self.tokenizer, [g.messages for g in alike], k, self.config.max_new_tokens,
                                 self.config.temperature, static_cache=self.config.static_cache)
            for g, samples in zip(alike, drawn):
                g.completions[:0] = [list(s.ids) for s in samples]      # the model's own first, then guidance
        model.train(was_training)
        out = {"prompt_ids": [], "completion_ids": [], "logprobs": None, "origin": []}
        for g in groups:
            out["prompt_ids"] += [g.ids] * g.n
            out["completion_ids"] += g.completions
            out["origin"] += ["model"] * g.k + ["seed"] * (g.n - g.k)
        self.times.generation_s += time.monotonic() - started
        return out

    def group(self, name: str, n: int) -> "Group":
        """One problem's group: its prompt rendered now, its guidance, how many samples it needs."""
        problem = self.problems[name]
        messages = prompt_for(problem, self.config.backend, self.grader.device, self.grader.store, self.config.exemplars)
        self.rendered[name] = messages
        guidance = seed_completions(self.grader.store, problem, min(self.config.seeds, n - 1))
        self.times.seeded += len(guidance)
        return Group(messages, prompt_ids(self.tokenizer, messages), n, n - len(guidance),
                     [completion_ids(self.tokenizer, text) for text in guidance])


@dataclass
class Group:
    messages: list[dict]
    ids: list[int]              # the rendered prompt's tokens
    n: int                      # completions the trainer expects (the group)
    k: int                      # of them the model's own samples; the rest guidance
    completions: list[list[int]]


def reward_function(problems: dict[str, Problem], grader, times: StepTimes):
    """The TRL reward function: each completion graded (evaluated, recorded, scored) by `grader`, the
    batch's together where it has lanes."""

    def kernelpilot_reward(prompts: list[str], completions: list[str], completion_ids=None, **kwargs) -> list:
        started = time.monotonic()
        lengths = [len(ids) for ids in completion_ids] if completion_ids is not None else [None] * len(completions)
        graded = list(grade_each(grader, [(problems[name], text, tokens)       # together on a LaneGrader's lanes
                                          for name, text, tokens in zip(prompts, completions, lengths)]))
        times.grading_s += time.monotonic() - started
        times.graded += len(completions)
        times.correct += sum(g.usable for g in graded)
        times.speedups += [s for s in (trusted_speedup(g, Versus.EAGER) for g in graded if g.usable) if s is not None]
        return [g.reward for g in graded]

    return kernelpilot_reward


def difficulty(store: HistoryStore, problems: list[Problem], model: str, power: float) -> dict[str, dict]:
    """{problem name: {"weight", "evaluations", "failed", "by_status"}} from the store's evaluations
    of the problem by `model` (all models' when it has none yet)."""
    records = store.records()
    found = {}
    for problem in problems:
        mine = [r for r in records if r.problem_hash == problem.hash]
        own = [r for r in mine if r.model == model] or mine
        statuses = Counter(r.status.value for r in own)
        failed = sum(statuses[s] for s in FAILED)
        found[problem.name] = {"weight": ((failed + 1) / (len(own) + 2)) ** power, "evaluations": len(own),
                               "failed": failed, "by_status": dict(sorted(statuses.items()))}
    return found


def draw_problems(names: list[str], weights: dict[str, dict] | None, rows: int, seed: int) -> list[str]:
    """`rows` problem names for the run: by the weights when given, else in turn."""
    import random

    if weights is None:
        return [names[i % len(names)] for i in range(rows)]
    return random.Random(seed).choices(names, weights=[weights[n]["weight"] for n in names], k=rows)


def step_timer(times: StepTimes):
    """A TrainerCallback timing each optimizer step and splitting it into generation, grading and
    the rest (the forward and backward passes and the update)."""
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            self.began = time.monotonic()
            self.marks = (times.generation_s, times.grading_s, times.graded, times.correct, len(times.speedups))

        def on_step_end(self, args, state, control, **kwargs):
            step_s = time.monotonic() - self.began
            generation, grading = times.generation_s - self.marks[0], times.grading_s - self.marks[1]
            graded, speedups = times.graded - self.marks[2], times.speedups[self.marks[4]:]
            times.steps.append({"step": state.global_step, "step_s": round(step_s, 3),
                                "generation_s": round(generation, 3), "grading_s": round(grading, 3),
                                "update_s": round(step_s - generation - grading, 3), "graded": graded,
                                "graded_per_minute": round(60 * graded / step_s, 2) if step_s else None,
                                "correct": times.correct - self.marks[3], "timed": len(speedups),
                                "geomean_speedup": geomean(speedups), **peak_memory()})

    return StepTimer()


def peak_memory() -> dict:
    """The GPU's peak allocated bytes (when one is used) and this process's peak resident set."""
    found = {"peak_host_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}
    if torch.cuda.is_available():
        found["peak_gpu_allocated_bytes"] = torch.cuda.max_memory_allocated()
    return found


def profile_summary(times: StepTimes) -> dict:
    """The mean step over the run (and every step), for OUT/profile.json and the summary."""
    steps = times.steps
    if not steps:
        return {"steps": []}
    mean = {key: round(sum(s[key] for s in steps) / len(steps), 3)
            for key in ("step_s", "generation_s", "grading_s", "update_s")}
    total = sum(s["step_s"] for s in steps)
    return {"mean": mean, "graded": times.graded, "seeded": times.seeded,
            "graded_per_minute": round(60 * times.graded / total, 2) if total else None,
            "peak": {key: max(s.get(key, 0) for s in steps) for key in ("peak_host_rss_bytes", "peak_gpu_allocated_bytes")
                     if any(key in s for s in steps)}, "steps": steps}

