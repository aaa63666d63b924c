"""The evaluator: is a candidate correct, and how much faster is it?

For one (problem, candidate source) it takes a fresh worker from the sandbox, loads the
candidate there, then — with seeds drawn only now, after the load — runs the
correctness trials on fresh inputs from several distributions and compares each
output with the reference computed here, on the trusted side. On a GPU a correct
candidate is then timed (`tools/timing.py`) and set against the eager and
torch.compile baselines (`tools/baselines.py`). Without a GPU the worker runs the
Triton interpreter: correctness only, timings `None`, mode `cpu-interpreter`.

    evaluator = Evaluator(ProcessSandbox(None), detect(), EvalConfig())
    result = evaluator.evaluate(load_problem("p.py", size="small"), open("c.py").read())
"""
import hashlib
import time
from collections import OrderedDict
from dataclasses import dataclass, field, replace

import torch

from tools import roofline
from tools.baselines import BaselineStore
from tools.compare import Comparison, judge_call
from tools.device import DeviceInfo, versions
from tools.inputs import Distribution, draw, secret_seed, trial_plan
from tools.lint import lint_problem
from tools.problems import Problem
from tools.records import (EvalResult, EvalStatus, Flag, KernelShare, LintReport, Mode, Phase, ProfileResult,
                           TimingStats, failure_verdict)
from tools.reference import Reference
from tools.sandbox.process import Limits
from tools.sandbox.protocol import expect, load_request
from tools.sandbox.shm import Exchange, arena_bytes
from tools.timing import TimingConfig, time_candidate

LOG_CHARS = 4000
KEPT_CONTEXTS = 2


@dataclass(frozen=True)
class EvalConfig:
    trials: int = 5
    limits: Limits = Limits()
    timing: TimingConfig = TimingConfig()
    baselines: bool = True
    timed: bool = True          # False: correctness only, even on a GPU


@dataclass(frozen=True)
class Outcome:
    """What happened to the candidate, before baselines and bookkeeping are added."""

    status: EvalStatus
    reason: str = ""
    phase: Phase | None = None
    max_abs_error: float | None = None
    rel_error: float | None = None
    trials_run: int = 0
    trials_passed: int = 0
    timing: TimingStats | None = None
    flags: tuple[Flag, ...] = ()


@dataclass
class ProblemContext:
    reference: Reference
    lint: LintReport
    distributions: list[Distribution] = field(default_factory=list)


class Evaluator:
    """Evaluates candidates on one device through one sandbox; keeps each problem's
    reference, lint and baselines between calls (batch runs evaluate many candidates)."""

    def __init__(self, sandbox, device: DeviceInfo, config: EvalConfig = EvalConfig(),
                 baselines: BaselineStore | None = None):
        self.sandbox, self.device, self.config = sandbox, device, config
        self.exchange = Exchange(device.torch_device)
        self.baselines = baselines or BaselineStore(sandbox, device, self.exchange, config.timing)
        self._contexts: OrderedDict[tuple[str, str], ProblemContext] = OrderedDict()

    def evaluate(self, problem: Problem, source: str, config: EvalConfig | None = None) -> EvalResult:
        """One evaluation; `config` overrides the evaluator's own for this call."""
        start = time.perf_counter()
        config = config or self.config
        context = self.context(problem)
        worker = self.sandbox.worker()
        try:
            outcome = self._run(context, worker, source, config)
            log = worker.log_tail(LOG_CHARS)
        finally:
            worker.close()
        return self._result(problem, source, context, outcome, worker.ready, log, time.perf_counter() - start, config)

    def profile(self, problem: Problem, source: str, calls: int = 10) -> ProfileResult:
        """The kernels one forward launches, with launch counts and time shares."""
        if self.device.mode is not Mode.GPU:
            return ProfileResult(available=False, reason="no GPU: profiling needs a CUDA device", status=None,
                                 kernels=[], device_ms_per_call=None, roofline=None, device=self.device.name)
        context = self.context(problem)
        inputs = draw(problem, secret_seed(), Distribution.OWN, context.reference.device)
        worker = self.sandbox.worker()
        arena = self.exchange.acquire(arena_bytes([(x.shape, x.dtype) for x in inputs]))
        try:
            reply = expect(worker.call(load_request(source, "ModelNew", problem.init_inputs()),
                                       self.config.limits.load_s), "loaded", "load")
            if reply["kind"] != "failure":
                refs = [arena.put(x) for x in inputs]
                self.exchange.ready(arena)
                reply = expect(worker.call({"kind": "profile", "arena": arena.describe(), "inputs": refs,
                                            "calls": calls}, self.config.limits.timing_s), "profiled", "profile")
        finally:
            self.exchange.release(arena)
            worker.close()
        if reply["kind"] == "failure":
            status, _, reason = failure_verdict(reply)
            return ProfileResult(available=True, reason=reason, status=status, kernels=[], device_ms_per_call=None,
                                 roofline=None, device=self.device.name)
        result = profile_result(reply, self.device.name)
        roof = roofline.place(context.reference, inputs, result.device_ms_per_call)
        return result.model_copy(update={"roofline": roof})

    def context(self, problem: Problem) -> ProblemContext:
        """The problem's reference and lint, kept for the last few problems (a reference
        model can hold gigabytes of GPU memory)."""
        key = (problem.hash, problem.size)
        if key not in self._contexts:
            while len(self._contexts) >= KEPT_CONTEXTS:
                self._contexts.popitem(last=False)
            reference = Reference(problem, self.device.torch_device)
            lint = lint_problem(reference)
            self._contexts[key] = ProblemContext(reference, lint, [Distribution(d) for d in lint.distributions])
        self._contexts.move_to_end(key)
        return self._contexts[key]

    def _run(self, context: ProblemContext, worker, source: str, config: EvalConfig) -> Outcome:
        problem = context.reference.problem
        loaded = expect(worker.call(load_request(source, "ModelNew", problem.init_inputs()), config.limits.load_s),
                        "loaded", "load")
        if loaded["kind"] == "failure":
            return failed(loaded)
        if loaded["flags_changed"]:
            return Outcome(EvalStatus.REJECTED, f"importing the candidate changed global precision flags: "
                           f"{', '.join(loaded['flags_changed'])}", Phase.LOAD)
        outcome = self._check_trials(context, worker, config)
        if outcome.status is not EvalStatus.CORRECT or self.device.mode is Mode.CPU_INTERPRETER or not config.timed:
            return outcome
        self.sandbox.settle()   # warm workers still starting would compete with the timed loop
        timed = time_candidate(worker, self.exchange, context.reference, config.timing, config.limits)
        if timed.status is not EvalStatus.CORRECT:
            return replace(outcome, status=timed.status, reason=timed.reason, phase=Phase.TIME)
        return replace(outcome, timing=timed.stats, flags=timed.flags)

    def _check_trials(self, context: ProblemContext, worker, config: EvalConfig) -> Outcome:
        reference, limits = context.reference, config.limits
        seeds = [secret_seed() for _ in range(config.trials)]   # drawn after the candidate loaded
        worst_abs, worst_rel = 0.0, 0.0
        for trial, (seed, distribution) in enumerate(zip(seeds, trial_plan(config.trials, context.distributions))):
            inputs = draw(reference.problem, seed, distribution, reference.device)
            container, expected = reference.run(inputs)
            label = f"trial {trial + 1} ({distribution.value} inputs)"
            reply, verdict = run_trial(worker, self.exchange, container, expected, inputs, self.device.worker_device,
                                       limits.first_call_s if trial == 0 else limits.call_s)
            if reply["kind"] == "failure":
                return replace(failed(reply, label), trials_run=trial + 1, trials_passed=trial)
            worst_abs = max(worst_abs, verdict.max_abs_error or 0.0)
            worst_rel = max(worst_rel, verdict.rel_error or 0.0)
            if not verdict.ok:
                return Outcome(EvalStatus.INCORRECT, f"{label}: {verdict.reason}", Phase.RUN,
                               verdict.max_abs_error, verdict.rel_error, trial + 1, trial)
        return Outcome(EvalStatus.CORRECT, "", None, worst_abs, worst_rel, config.trials, config.trials)

    def _result(self, problem: Problem, source: str, context: ProblemContext, outcome: Outcome,
                ready: dict | None, log: str, seconds: float, config: EvalConfig) -> EvalResult:
        flags = list(outcome.flags)
        if context.lint.degenerate:
            flags.append(Flag.DEGENERATE_PROBLEM)
        isolated = bool(ready and ready["network_isolated"])
        if not isolated:
            flags.append(Flag.NETWORK_NOT_ISOLATED)
        eager_ms = compile_ms = None
        notes = []
        if outcome.timing is not None and config.baselines:
            baselines = self.baselines.get(context.reference)
            eager_ms = baselines.eager.median_ms if baselines.eager else None
            compile_ms = baselines.compiled.median_ms if baselines.compiled else None
            notes = baselines.notes
        runtime = outcome.timing.median_ms if outcome.timing else None
        return EvalResult(
            status=outcome.status, flags=flags, reason=outcome.reason, phase=outcome.phase,
            max_abs_error=outcome.max_abs_error, rel_error=outcome.rel_error,
            trials_run=outcome.trials_run, trials_passed=outcome.trials_passed,
            runtime_ms=runtime, timing=outcome.timing, eager_ms=eager_ms, compile_ms=compile_ms,
            speedup_vs_eager=ratio(eager_ms, runtime), speedup_vs_compile=ratio(compile_ms, runtime),
            device=self.device.name, mode=self.device.mode, size=problem.size, problem=problem.name,
            problem_hash=problem.hash, candidate_hash=hashlib.sha256(source.encode()).hexdigest(),
            sandbox=self.sandbox.backend, network_isolated=isolated, versions=versions(),
            lint_findings=context.lint.findings, notes=notes, log=log, seconds=seconds,
        )


def run_trial(worker, exchange: Exchange, container: str, expected: list[torch.Tensor], inputs: list[torch.Tensor],
              device: str, timeout: float) -> tuple[dict, Comparison | None]:
    """One `run` request: inputs into the arena, the call, then the outputs the worker
    put in the slots and the inputs as the call left them, judged against the reference."""
    arena = exchange.acquire(arena_bytes([(x.shape, x.dtype) for x in inputs] + [(y.shape, y.dtype) for y in expected]))
    try:
        in_refs = [arena.put(x) for x in inputs]
        seen = [arena.view(ref) for ref in in_refs]
        outputs, out_refs = arena.slots(expected)
        exchange.ready(arena)
        reply = expect(worker.call({"kind": "run", "arena": arena.describe(), "inputs": in_refs,
                                    "output_slots": out_refs}, timeout), "ran", "run")
        if reply["kind"] == "failure":
            return reply, None
        return reply, judge_call(container, expected, inputs, outputs, reply["output_meta"], seen, device)
    finally:
        exchange.release(arena)


def failed(reply: dict, label: str = "") -> Outcome:
    status, phase, reason = failure_verdict(reply)
    return Outcome(status, f"{label}: {reason}" if label else reason, phase)


def profile_result(reply: dict, device: str) -> ProfileResult:
    calls = max(reply["calls"], 1)
    total_us = sum(k["device_us"] for k in reply["kernels"]) or 1.0
    kernels = sorted((KernelShare(name=k["name"], launches_per_call=k["count"] / calls,
                                  device_ms_per_call=k["device_us"] / calls / 1e3, share=k["device_us"] / total_us)
                      for k in reply["kernels"]), key=lambda k: k.share, reverse=True)
    return ProfileResult(available=True, reason="", status=None, kernels=kernels,
                         device_ms_per_call=total_us / calls / 1e3, roofline=None, device=device)


def ratio(baseline_ms: float | None, runtime_ms: float | None) -> float | None:
    if baseline_ms is None or runtime_ms is None or runtime_ms <= 0:
        return None
    return baseline_ms / runtime_ms
