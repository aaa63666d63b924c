"""The evaluator: is a candidate correct, and how much faster is it?

For one (problem, candidate source) it takes a fresh worker from the sandbox, loads the
candidate there, then — with seeds drawn only now, after the load — runs the
correctness trials on fresh inputs from several distributions and compares each
output with the reference computed here, on the trusted side. On a GPU a correct
candidate is then timed (`tools/timing.py`) and set against the eager and
torch.compile baselines (`tools/baselines.py`). Without a GPU the worker runs the
Triton interpreter: correctness only, timings `None`, mode `cpu-interpreter`.

Anti-cheat (tools/THREAT_MODEL.md lists every hack class, its defence and what is not
covered): the worker's audit after every request (timers and torch patched, threads and
detached children left running, precision flags, persisting L2: `tools/integrity.py`)
rejects; every timed call has fresh inputs and is sample-checked (`tools/timing.py`);
the AST check (`tools/static_check.py`) turns a `correct` verdict with a reject finding
into `rejected`; kernel provenance (`tools/provenance.py`) flags `no_custom_kernel`;
fp16/bf16/TF32 in an fp32 problem, or an error using >10% of the tolerance, flags
`precision_policy`; a speedup above 10x eager or above the roofline is flagged
`excessive_speedup` and audited by a second, stricter run. With `second_size`, a correct
candidate is checked again at a second size set drawn now (`tools/second_size.py`: the
problem's size constants scaled by secret factors), correctness only, in the same worker
(one fresh process per candidate, both sizes; closed before the baselines are timed): one
that fails there, or runs none of its own kernels there, is flagged `size_specialised`; one
rejected there is rejected.

    evaluator = Evaluator(ProcessSandbox(None), detect(), EvalConfig())   # the sandbox before detect(): CUDA
    result = evaluator.evaluate(load_problem("p.py", size="small"), open("c.py").read())
"""
import hashlib
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Callable

import torch

from tools import roofline
from tools.baselines import BaselineStore
from tools.contexts import BUDGET_BYTES, Contexts, ProblemContext
from tools.device import DeviceInfo, versions
from tools.device_lock import DeviceLock
from tools.gpu_share import Admission, MemoryShare, start_worker
from tools.inputs import Distribution, draw, secret_seed, trial_plan
from tools.integrity import judge_audit
from tools.outcome import Outcome, SecondRun, apply_static, failed, size_check, with_second_size
from tools.phases import Stopwatch
from tools.provenance import Provenance
from tools.static_check import Finding, check_source
from tools.trial import run_trial
from tools.problems import Problem
from tools.records import EvalResult, EvalStatus, Flag, KernelShare, Mode, Phase, ProfileResult, SizeCheck
from tools.safe_text import clean
from tools.second_size import second_size
from tools.sandbox.contracts import Limits, Sandbox, Worker
from tools.sandbox.protocol import load_request
from tools.sandbox.replies import Failure, Profiled, Ready, ask
from tools.sandbox.shm import Exchange, arena_bytes
from tools.timing import TimingConfig, time_candidate

LOG_CHARS = 4000
EXCESSIVE_SPEEDUP = 10.0       # vs eager; above it (or above the roofline) the candidate is audited again
ROOFLINE_MARGIN = 1.1          # measured time may beat the roofline floor by this much (ceiling noise)
AUDIT_TRIALS = 10
AUDIT_CHECKED_CALLS = 20
REWARD_MIN_ITERS = 20          # reward mode's timed calls before the stopping rule may end timing


class Protocol(StrEnum):
    """How an evaluation spends the device. Both run every check (the same trials, every timed call
    sample-checked, the same whole-output checks); they differ in what waits for the device."""

    FULL = "full"       # load outside the device lock; every trial and all `iters` timed calls inside it
    REWARD = "reward"   # for RL throughput: the first trial (the candidate's JIT compile) outside the lock
                        # too, so other processes' lanes compile while one measures; the later trials and
                        # the second size's reference hold it shared (lanes' trials overlap one another,
                        # never a timing); timing, exclusive, stops early once the median is known to ±2%
                        # (tools/timing.py `settled`; 20 calls at least)


@dataclass(frozen=True)
class EvalConfig:
    trials: int = 5
    limits: Limits = Limits()
    timing: TimingConfig = TimingConfig()
    baselines: bool = True
    timed: bool = True          # False: correctness only, even on a GPU
    protocol: Protocol = Protocol.FULL
    second_size: bool = False   # also check a correct candidate at a second size set (tools/second_size.py)


class Evaluator:
    """Evaluates candidates on one device through one sandbox; keeps each problem's
    reference, lint and baselines between calls (batch runs evaluate many candidates)."""

    def __init__(self, sandbox: Sandbox, device: DeviceInfo, config: EvalConfig = EvalConfig(),
                 baselines: BaselineStore | None = None, share: MemoryShare = MemoryShare()):
        self.sandbox, self.device, self.config = sandbox, device, config
        self.admission = Admission(device, share)   # lanes sharing the GPU: a heavy problem runs alone
        self.exchange = Exchange(device.torch_device)
        self.serial = threading.RLock()   # held through each evaluation; a caller's trusted-side work may take it too
        self.device_lock = DeviceLock.of(device)     # one measurement at a time on this GPU, machine-wide
        self.baselines = baselines or BaselineStore(sandbox, device, self.exchange, config.timing.full(),
                                                    device_lock=self.device_lock)
        # a build runs the reference on the GPU; lanes sharing it share the budget too
        self._contexts = Contexts(device, budget_bytes=BUDGET_BYTES // max(share.lanes, 1), guard=self.device_lock)
        self.clock = Stopwatch()          # the running evaluation's phases (one at a time: self.serial)

    def evaluate(self, problem: Problem, source: str, config: EvalConfig | None = None) -> EvalResult:
        """One evaluation; `config` overrides the evaluator's own for this call. Sessions on
        several threads share an evaluator: it runs one evaluation at a time, so kernel
        timings never overlap on the device (nor do the arena and caches it keeps)."""
        with self.serial, self.admission.admit(problem, lambda heavy: self._give_back(problem, heavy)):
            return self._evaluate(problem, source, config)

    def _evaluate(self, problem: Problem, source: str, config: EvalConfig | None) -> EvalResult:
        start, held, self.clock = time.perf_counter(), self.device_lock.held_s, Stopwatch()
        config = config or self.config
        with self.clock.phase("context"):
            context = self.context(problem)
        findings = check_source(source)
        outcome, ready, log, second = self._candidate(context, source, config, findings)
        result = self._result(problem, source, context, outcome, ready, log, time.perf_counter() - start, config)
        if self._excessive(context, result):
            with self.clock.phase("audit"):
                result = self._audit(context, source, config, result)
        if second is not None and result.status is EvalStatus.CORRECT:    # the audit may have failed it since
            result = with_second_size(result, second)
        return result.model_copy(update={"static_findings": [f.text() for f in findings],
                                         "phases": self.clock.record(lock_held=self.device_lock.held_s - held),
                                         "seconds": time.perf_counter() - start})

    def _candidate(self, context: ProblemContext, source: str, config: EvalConfig, findings: list[Finding]
                   ) -> tuple[Outcome, Ready | None, str, SecondRun | None]:
        """The candidate in its fresh worker: its run at the problem's sizes (static findings
        applied) and, when that is correct and `second_size` is asked for, its run at a second
        size set in the same process. The worker is closed before baselines are timed, so no
        process of the candidate's lives while they are."""
        with self._worker() as worker:
            outcome = apply_static(self._run(context, worker, source, config), findings, context)
            log = self._log(worker)
            second = None
            if config.second_size and outcome.status is EvalStatus.CORRECT:
                own = Flag.NO_CUSTOM_KERNEL not in outcome.flags
                second = self._second_size(context, worker, source, config, own)
        return outcome, worker.ready, log, second

    def _attempt(self, context: ProblemContext, source: str, config: EvalConfig) -> tuple[Outcome, Ready | None, str]:
        """One run of the candidate in a fresh worker: (outcome, the worker's ready facts, log tail)."""
        with self._worker() as worker:
            outcome = self._run(context, worker, source, config)
            return outcome, worker.ready, self._log(worker)

    @contextmanager
    def _worker(self) -> Iterator[Worker]:
        """A fresh worker for the block, closed after it (its retired arenas freed)."""
        with self.clock.phase("worker"):
            worker = start_worker(self.sandbox)
        try:
            yield worker
        finally:
            with self.clock.phase("close"):
                worker.close()
                self.exchange.collect()

    def _log(self, worker: Worker) -> str:
        with self.clock.phase("close"):
            return clean(worker.log_tail(LOG_CHARS))     # what the candidate printed: no escapes, no secrets

    def _excessive(self, context: ProblemContext, result: EvalResult) -> bool:
        """Above 10x eager, or faster than the roofline allows: too good to believe unaudited."""
        if result.status is not EvalStatus.CORRECT or result.runtime_ms is None:
            return False
        if (result.speedup_vs_eager or 0.0) > EXCESSIVE_SPEEDUP:
            return True
        inputs = draw(context.reference.problem, secret_seed(), Distribution.OWN, context.reference.device)
        roof = roofline.place(context.reference, inputs, result.runtime_ms, guard=self.device_lock)
        return roof.fraction_of_roofline > ROOFLINE_MARGIN

    def _audit(self, context: ProblemContext, source: str, config: EvalConfig, result: EvalResult) -> EvalResult:
        """The automatic extra run of an excessive speedup: twice the trials and many more
        whole-output checks, in a fresh worker; its failure is the verdict."""
        strict = replace(config, trials=AUDIT_TRIALS, timing=replace(config.timing, checked_calls=AUDIT_CHECKED_CALLS))
        outcome, _, log = self._attempt(context, source, strict)
        flags = [*result.flags, Flag.EXCESSIVE_SPEEDUP]
        if outcome.status is not EvalStatus.CORRECT:
            return result.model_copy(update={"status": outcome.status, "phase": outcome.phase, "flags": flags,
                                             "reason": f"audit run after an excessive speedup: {outcome.reason}",
                                             "log": log})
        median = outcome.timing.median_ms if outcome.timing else None
        return result.model_copy(update={"flags": flags, "notes": [*result.notes, f"excessive speedup: audit run "
                                                                    f"passed (median {median} ms)"]})

    def _second_size(self, context: ProblemContext, worker: Worker, source: str, config: EvalConfig,
                     own_kernels: bool) -> SecondRun:
        """The candidate again at a second size set drawn now, correctness only: loaded again in
        its worker (`worker`, a fresh one if that one died) with the second size's init inputs,
        asked exactly as at the first (only the sizes differ), on fresh secret inputs."""
        guard = self.device_lock.shared if config.protocol is Protocol.REWARD else self.device_lock
        with self.clock.phase("second_reference"):     # its reference tries take the device lock
            second = second_size(context.reference.problem, self.device.torch_device, guard=guard)
        if isinstance(second, str):     # our side: no size set the problem allows (said, not flagged)
            return SecondRun(SizeCheck(sizes={}, status=None, holds=False, reason=second))
        resized, untimed = ProblemContext(second.reference, context.lint, context.distributions), replace(config, timed=False)
        with self.clock.phase("second_run"):
            if worker.alive():
                outcome = self._run(resized, worker, source, untimed)
                log = self._log(worker)
            else:       # gone between requests, with no candidate code running: not the candidate's doing
                outcome, _, log = self._attempt(resized, source, untimed)
        return SecondRun(size_check(outcome, second.sizes, own_kernels), outcome.phase, log)

    def profile(self, problem: Problem, source: str, calls: int = 10) -> ProfileResult:
        """The kernels one forward launches, with launch counts and time shares."""
        with self.serial, self.admission.admit(problem, lambda heavy: self._give_back(problem, heavy)):
            return self._profile(problem, source, calls)

    def _give_back(self, problem: Problem, heavy: bool) -> None:
        """Before an admission on a device other lanes share ends (tools/gpu_share.py): a heavy
        problem's reference, the arenas and the allocator's cache go back to the device."""
        if heavy:
            self._contexts.drop(problem)
            self.sandbox.settle()       # its warm worker's CUDA context starts inside this (exclusive) admission
        self.exchange.free()
        if self.device.mode is Mode.GPU:
            torch.cuda.empty_cache()

    def _profile(self, problem: Problem, source: str, calls: int) -> ProfileResult:
        if self.device.mode is not Mode.GPU:
            return ProfileResult(available=False, reason="no GPU: profiling needs a CUDA device", status=None,
                                 kernels=[], device_ms_per_call=None, roofline=None, device=self.device.name)
        context = self.context(problem)
        inputs = draw(problem, secret_seed(), Distribution.OWN, context.reference.device)
        worker = start_worker(self.sandbox)
        arena = self.exchange.acquire(arena_bytes([(x.shape, x.dtype) for x in inputs]))
        try:
            reply = ask(worker, load_request(source, "ModelNew", problem.init_inputs()), self.config.limits.load_s)
            if not isinstance(reply, Failure):
                refs = [arena.put(x) for x in inputs]
                self.exchange.ready(arena)
                with self.device_lock:
                    reply = ask(worker, {"kind": "profile", "arena": arena.describe(), "inputs": refs, "calls": calls},
                                self.config.limits.timing_s)
        finally:
            self.exchange.release(arena)
            worker.close()
            self.exchange.collect()
        if isinstance(reply, Failure):
            return ProfileResult(available=True, reason=reply.message, status=reply.status, kernels=[],
                                 device_ms_per_call=None, roofline=None, device=self.device.name)
        result = profile_result(reply, self.device.name)
        roof = roofline.place(context.reference, inputs, result.device_ms_per_call, guard=self.device_lock)
        return result.model_copy(update={"roofline": roof})

    def context(self, problem: Problem) -> ProblemContext:
        """The problem's reference and lint, built once and kept while they fit (tools/contexts.py)."""
        return self._contexts.get(problem)

    def _run(self, context: ProblemContext, worker: Worker, source: str, config: EvalConfig) -> Outcome:
        problem = context.reference.problem
        with self.clock.phase("load"):
            loaded = ask(worker, load_request(source, "ModelNew", problem.init_inputs()), config.limits.load_s)
        if isinstance(loaded, Failure):
            return failed(loaded)
        if loaded.flags_changed:
            return Outcome(EvalStatus.REJECTED, f"importing the candidate changed global precision flags: "
                           f"{', '.join(loaded.flags_changed)}", Phase.LOAD)
        if judge_audit(loaded.audit):
            return Outcome(EvalStatus.REJECTED, f"while importing: {judge_audit(loaded.audit)}", Phase.LOAD)
        provenance = Provenance()
        provenance.add(loaded.audit.launches, 0, "load")
        with ExitStack() as device, ExitStack() as shared:     # loaded (imported, built) outside the lock
            def take() -> None:         # exclusive: alone on the GPU (timing; every trial in the full protocol)
                shared.close()          # a thread holding it shared would wait on itself
                if config.timed and self.device.mode is Mode.GPU:
                    with self.clock.phase("settle"):    # warm workers still starting would compete with the timed
                        self.sandbox.settle()           # loop: waited for before the lock (none starts until the next
                                                        # worker(); a second time it returns at once)
                with self.clock.phase("lock_wait"):
                    device.enter_context(self.device_lock)      # re-entrant: taking it twice is harmless

            def take_shared() -> None:  # the reward protocol's later trials: beside other lanes' trials, never a timing
                with self.clock.phase("lock_wait"):
                    shared.enter_context(self.device_lock.shared)
            reward = config.protocol is Protocol.REWARD
            if not reward:
                take()
            return self._measure(context, worker, config, provenance, take, after_first=take_shared if reward else None)

    def _measure(self, context: ProblemContext, worker: Worker, config: EvalConfig, provenance: Provenance,
                 take: Callable[[], None], after_first: Callable[[], None] | None) -> Outcome:
        outcome = replace(self._check_trials(context, worker, config, provenance, after_first), provenance=provenance)
        if outcome.status is not EvalStatus.CORRECT or self.device.mode is Mode.CPU_INTERPRETER or not config.timed:
            return outcome
        take()
        timing = config.timing if config.protocol is Protocol.FULL else replace(
            config.timing, min_iters=config.timing.min_iters or REWARD_MIN_ITERS)
        with self.clock.phase("timing"):
            timed = time_candidate(worker, self.exchange, context.reference, timing, config.limits, audited=True,
                                   alone=self.admission.alone)
        if timed.status is not EvalStatus.CORRECT:
            return replace(outcome, status=timed.status, reason=timed.reason, phase=Phase.TIME)
        for index, (launches, forwards) in enumerate(timed.launches):
            provenance.add(launches, forwards, f"timed request {index + 1}")
        return replace(outcome, timing=timed.stats, flags=timed.flags)

    def _check_trials(self, context: ProblemContext, worker: Worker, config: EvalConfig, provenance: Provenance,
                      after_first: Callable[[], None] | None = None) -> Outcome:
        """The correctness trials; `after_first` runs once the first has passed (reward mode
        takes the device lock there: the first call, and its compile, ran outside it)."""
        reference, limits = context.reference, config.limits
        seeds = [secret_seed() for _ in range(config.trials)]   # drawn after the candidate loaded
        worst_abs, worst_rel = 0.0, 0.0
        for trial, (seed, distribution) in enumerate(zip(seeds, trial_plan(config.trials, context.distributions))):
            if trial == 1 and after_first is not None:
                after_first()
            with self.clock.phase("reference"):
                inputs = draw(reference.problem, seed, distribution, reference.device)
                container, expected = reference.run(inputs)
            label = f"trial {trial + 1} ({distribution.value} inputs)"
            with self.clock.phase("first_trial" if trial == 0 else "trials"):
                reply, verdict = run_trial(worker, self.exchange, container, expected, inputs,
                                           self.device.worker_device, limits.first_call_s if trial == 0 else limits.call_s)
            if isinstance(reply, Failure):
                return replace(failed(reply, label), trials_run=trial + 1, trials_passed=trial)
            if judge_audit(reply.audit):
                return Outcome(EvalStatus.REJECTED, f"{label}: {judge_audit(reply.audit)}", Phase.RUN,
                               trials_run=trial + 1, trials_passed=trial)
            provenance.add(reply.audit.launches, 1, label)
            worst_abs = max(worst_abs, verdict.max_abs_error or 0.0)
            worst_rel = max(worst_rel, verdict.rel_error or 0.0)
            if not verdict.ok:
                return Outcome(EvalStatus.INCORRECT, f"{label}: {verdict.reason}", Phase.RUN,
                               verdict.max_abs_error, verdict.rel_error, trial + 1, trial)
        return Outcome(EvalStatus.CORRECT, "", None, worst_abs, worst_rel, config.trials, config.trials)

    def _result(self, problem: Problem, source: str, context: ProblemContext, outcome: Outcome,
                ready: Ready | None, log: str, seconds: float, config: EvalConfig) -> EvalResult:
        flags = list(outcome.flags)
        if context.lint.degenerate:
            flags.append(Flag.DEGENERATE_PROBLEM)
        isolated = ready is not None and ready.network_isolated
        if not isolated:
            flags.append(Flag.NETWORK_NOT_ISOLATED)
        if not (ready is not None and ready.fs_isolated):   # the worker says (docker: its container's read-only root)
            flags.append(Flag.FILESYSTEM_NOT_ISOLATED)
        if ready is None or ready.privilege_note:   # the worker says (docker: its container's own namespaces)
            flags.append(Flag.SHARED_USER)
        eager_ms = compile_ms = None
        notes = []
        if outcome.timing is not None and config.baselines:
            with self.clock.phase("baselines"):
                baselines = self.baselines.get(context.reference, alone=self.admission.alone)
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
            sandbox=str(self.sandbox.backend), network_isolated=isolated, versions=versions(),
            lint_findings=context.lint.findings, notes=[*notes, *outcome.notes], log=log, seconds=seconds,
            kernels=outcome.provenance.kernels() if outcome.provenance else [],
        )


def profile_result(reply: Profiled, device: str) -> ProfileResult:
    calls = max(reply.calls, 1)
    total_us = sum(k.device_us for k in reply.kernels) or 1.0
    kernels = sorted((KernelShare(name=k.name, launches_per_call=k.count / calls,
                                  device_ms_per_call=k.device_us / calls / 1e3, share=k.device_us / total_us)
                      for k in reply.kernels), key=lambda k: k.share, reverse=True)
    return ProfileResult(available=True, reason="", status=None, kernels=kernels,
                         device_ms_per_call=total_us / calls / 1e3, roofline=None, device=device)


def ratio(baseline_ms: float | None, runtime_ms: float | None) -> float | None:
    if baseline_ms is None or runtime_ms is None or runtime_ms <= 0:
        return None
    return baseline_ms / runtime_ms
