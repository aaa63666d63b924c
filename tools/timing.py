"""Timing a loaded model in its worker, and checking what the timed calls returned.

The worker runs `warmup` calls, then `iters` calls, each on the next of several input
sets drawn here from secret seeds, with L2 flushed before each call; each call is
timed by CUDA events and by the host clock around a device-wide synchronize. A secret
sample of the timed calls' outputs comes back and is checked against the reference
like a trial. The median event time is the runtime; the host-clock median must agree
with it (work hidden on another stream shows up as a gap), and the events together
can never exceed the wall-clock time of the whole request.
"""
import math
import secrets
import time
from dataclasses import dataclass

from tools.compare import judge_call
from tools.inputs import Distribution, draw, secret_seed, tensor_bytes
from tools.records import EvalStatus, Flag, TimingStats, failure_verdict
from tools.reference import Reference
from tools.sandbox.process import Limits
from tools.sandbox.protocol import expect
from tools.sandbox.shm import Exchange, arena_bytes

GiB = 1024**3
MISMATCH_RATIO = 1.25      # wall median above 1.25x the event median ...
MISMATCH_SLACK_MS = 0.1    # ... plus launch and synchronize latency


@dataclass(frozen=True)
class TimingConfig:
    warmup: int = 5
    iters: int = 100
    checked_calls: int = 3
    max_input_sets: int = 4
    input_budget_bytes: int = 2 * GiB


@dataclass(frozen=True)
class Timed:
    status: EvalStatus
    reason: str = ""
    stats: TimingStats | None = None
    flags: tuple[Flag, ...] = ()


def input_set_count(set_bytes: int, config: TimingConfig) -> int:
    """As many distinct input sets as the budget allows, at least two (back-to-back
    calls never see the same buffers)."""
    return max(2, min(config.max_input_sets, config.input_budget_bytes // max(set_bytes, 1)))


def time_candidate(worker, exchange: Exchange, reference: Reference, config: TimingConfig, limits: Limits) -> Timed:
    problem = reference.problem
    first = draw(problem, secret_seed(), Distribution.OWN, reference.device)
    sets = [first] + [draw(problem, secret_seed(), Distribution.OWN, reference.device)
                      for _ in range(input_set_count(tensor_bytes(first), config) - 1)]
    check = sorted(secrets.SystemRandom().sample(range(config.iters), min(config.checked_calls, config.iters)))
    expected = [reference.run(sets[index % len(sets)]) for index in check]
    arena = exchange.acquire(arena_bytes([(x.shape, x.dtype) for inputs in sets for x in inputs]
                                         + [(y.shape, y.dtype) for _, outputs in expected for y in outputs]))
    try:
        set_refs = [[arena.put(x) for x in inputs] for inputs in sets]
        del first, sets   # the arena holds them now; a second copy would only crowd the GPU
        slots = [arena.slots(outputs) for _, outputs in expected]
        request = {"kind": "time", "arena": arena.describe(), "input_sets": set_refs, "warmup": config.warmup,
                   "iters": config.iters, "check_indices": check, "check_slots": [refs for _, refs in slots]}
        exchange.ready(arena)
        started = time.perf_counter()
        reply = expect(worker.call(request, limits.timing_s), "timed", "time")
        host_s = time.perf_counter() - started
        if reply["kind"] == "failure":
            status, _, reason = failure_verdict(reply)
            return Timed(status, f"timing: {reason}")
        checked = [(index, container, outputs, views)
                   for index, (container, outputs), (views, _) in zip(check, expected, slots)]
        return judge_timing(reply, checked, str(reference.device), config, host_s)
    finally:
        exchange.release(arena)


def judge_timing(reply: dict, checked: list, device: str, config: TimingConfig, host_s: float) -> Timed:
    """`checked`: (call index, reference container, reference outputs, arena slots) per checked call."""
    event_ms, wall_ms = reply["event_ms"], reply["wall_ms"]
    if not _valid_samples(event_ms, config.iters) or not _valid_samples(wall_ms, config.iters):
        return Timed(EvalStatus.REJECTED, "timing: the worker returned malformed timings")
    if reply["flags_changed"]:
        return Timed(EvalStatus.REJECTED, f"timing: the candidate changed global precision flags: "
                     f"{', '.join(reply['flags_changed'])}")
    if sum(event_ms) / 1e3 > host_s:
        return Timed(EvalStatus.REJECTED, f"timing: the events add up to {sum(event_ms) / 1e3:.3f} s but the whole "
                     f"timed request took {host_s:.3f} s of wall-clock time (timers tampered with)")
    if [entry["index"] for entry in reply["checked_meta"]] != [entry[0] for entry in checked]:
        return Timed(EvalStatus.REJECTED, "timing: the worker returned other calls than the ones asked for")
    for (index, container, expected, outputs), entry in zip(checked, reply["checked_meta"]):
        verdict = judge_call(container, expected, None, outputs, entry["meta"], None, device)
        if not verdict.ok:
            return Timed(EvalStatus.INCORRECT, f"timed call {index + 1} of {config.iters}: {verdict.reason}")
    if not 0 <= reply["loop_wall_s"] <= host_s:
        return Timed(EvalStatus.REJECTED, "timing: the worker returned a malformed loop time")
    stats = TimingStats.from_samples(event_ms, wall_ms, reply["loop_wall_s"])
    mismatch = stats.wall_median_ms > MISMATCH_RATIO * stats.median_ms + MISMATCH_SLACK_MS
    return Timed(EvalStatus.CORRECT, "", stats, (Flag.TIMING_MISMATCH,) if mismatch else ())


def _valid_samples(samples: list[float], count: int) -> bool:
    return len(samples) == count and all(math.isfinite(x) and x >= 0 for x in samples)
