"""Timing a loaded model in its worker, and checking what the timed calls returned.

Every timed call gets fresh inputs drawn here from secret seeds: the calls run in chunks,
each chunk as many distinct input sets as fit in the input budget (all 100 calls at once
for most problems), each set used by exactly one call in a secret order, and the next
chunk's sets drawn only after the previous chunk returned; the warm-up calls use a set of
their own that is never timed. A chunk holds at most as many whole-output checks as that
budget allows, one at least: each costs three outputs on the trusted side (an arena slot,
the reference's, the copy of what came back), so a problem of small inputs and large outputs
(KernelBench L1-7: 16 MiB in, 4 GiB out) checks one per chunk, not three in a 13 GiB arena.
The worker hands the candidate a private copy of each call's inputs (it never sees the
other sets), flushes L2 before each call, holds the persisting-L2 limit at 0, and times
each call by CUDA events and by the host clock around a device-wide synchronize.

Every call is checked: the worker leaves each call's outputs at secret element positions
in the arena (the candidate cannot tell which calls matter, because all do), and a few
calls drawn at random also return their whole outputs. The median event time is the
runtime; the host-clock median must agree with it (work hidden on another stream shows
up as a gap), and the events together can never exceed the wall-clock time of a request.
"""
import math
import secrets
import time
from dataclasses import dataclass, field, replace

import torch

from tools.compare import check_contract, compare, judge_call
from tools.inputs import Distribution, draw, secret_seed, tensor_bytes
from tools.integrity import judge_audit
from tools.records import EvalStatus, Flag, TimingStats, median_interval
from tools.reference import Reference
from tools.sandbox.contracts import GiB, Limits, Worker
from tools.sandbox.replies import Failure, Launch, Reply, TimedReply, ask
from tools.sandbox.shm import Arena, Exchange, arena_bytes

MISMATCH_RATIO = 1.25      # wall median above 1.25x the event median ...
MISMATCH_SLACK_MS = 0.1    # ... plus launch and synchronize latency
HOG_SHARE = 0.5            # a candidate holding more than this share of the device starved the trusted side
CONTEXT_BYTES = GiB        # about what this process's CUDA context and libraries take outside the allocator
WORKER_BYTES = 2 * GiB     # what a worker holds for the protocol whatever its candidate: its CUDA context and
                           # 256 MiB L2-flush buffer, and the warm worker's context beside it


@dataclass(frozen=True)
class TimingConfig:
    warmup: int = 5
    iters: int = 100
    checked_calls: int = 3          # calls whose whole outputs are compared
    max_input_sets: int = 100       # distinct input sets per chunk: one per call where the budget allows
    input_budget_bytes: int = 2 * GiB     # a chunk's input sets; its whole-output checks too (one at least)
    sample_elements: int = 4096     # secret positions of every output checked on every call
    # The stopping rule (reward mode): None times all `iters` calls. Else the calls go in chunks
    # of `chunk_calls`, and timing stops once `min_iters` ran and the median's 95% confidence
    # interval is within ±`stop_rel_ci` of it (the whole-output checks all fall in the first
    # `min_iters` calls, so an early stop skips none of them).
    min_iters: int | None = None
    chunk_calls: int = 10
    stop_rel_ci: float = 0.02

    def full(self) -> "TimingConfig":
        """Every call timed: how baselines are timed whatever the candidates' rule."""
        return replace(self, min_iters=None)


@dataclass(frozen=True)
class Timed:
    status: EvalStatus
    reason: str = ""
    stats: TimingStats | None = None
    flags: tuple[Flag, ...] = ()
    launches: tuple[tuple[tuple[Launch, ...], int], ...] = ()   # (launches counted, forward calls) per request


@dataclass
class Chunk:
    """One `time` request's worth of calls, seen from the trusted side."""

    schedule: list[int]                        # call i uses set schedule[i]
    container: str
    like: list[torch.Tensor]                   # meta tensors: the outputs' dtypes and shapes
    positions: list[torch.Tensor]              # secret flat positions, one tensor per output
    samples: list[list[torch.Tensor]]          # the reference's values there, per set
    full_calls: set[int] = field(default_factory=set)    # the calls whose whole outputs are checked
    full: dict[int, list[torch.Tensor]] = field(default_factory=dict)   # call -> whole reference outputs
    sample_outputs: list[list[torch.Tensor]] = field(default_factory=list)   # what each call left there
    full_outputs: dict[int, list[torch.Tensor]] = field(default_factory=dict)


def input_set_count(set_bytes: int, config: TimingConfig) -> int:
    """Distinct input sets per chunk: as many as the budget allows, at most one per call."""
    return max(1, min(config.iters, config.max_input_sets, config.input_budget_bytes // max(set_bytes, 1)))


def whole_output_count(output_bytes: int, config: TimingConfig) -> int:
    """Whole-output checks per chunk: as many as the budget allows, one at least."""
    return max(1, config.input_budget_bytes // max(output_bytes, 1))


def chunk_spans(iters: int, per_chunk: int, checked: set[int], most_full: int) -> list[tuple[int, int]]:
    """(first call, count) of each chunk: `per_chunk` calls, or fewer where more than
    `most_full` of the `checked` calls would fall in one chunk (it ends before the next)."""
    spans, offset, ordered = [], 0, sorted(checked)
    while offset < iters:
        end = min(offset + per_chunk, iters)
        later = [call for call in ordered if call >= offset]
        if len(later) > most_full:
            end = min(end, later[most_full])
        spans.append((offset, end - offset))
        offset = end
    return spans


def time_candidate(worker: Worker, exchange: Exchange, reference: Reference, config: TimingConfig, limits: Limits,
                   audited: bool = False, alone: bool = True) -> Timed:
    """Warm-up and `config.iters` timed calls in as many chunks as the input budget
    needs (`chunk_spans`). `audited`: also judge the worker's audit (candidates; baselines run trusted code).
    `alone`: nothing but this evaluation holds the device's memory (tools/gpu_share.py), so
    the trusted side running out of it can be the worker's doing; else it never is."""
    problem, device = reference.problem, reference.device
    warm = draw(problem, secret_seed(), Distribution.OWN, device)
    _, outputs = reference.run(warm)        # the outputs' shapes size every chunk's arena
    like = [torch.empty(y.shape, dtype=y.dtype, device="meta") for y in outputs]
    set_shapes, outputs = [(x.shape, x.dtype) for x in warm], None
    set_bytes, output_bytes = tensor_bytes(warm), tensor_bytes(like)
    per_chunk = input_set_count(set_bytes, config)
    if config.min_iters is not None:
        per_chunk = min(per_chunk, config.chunk_calls)
    first_calls = min(config.iters, config.min_iters or config.iters)
    checked = set(secrets.SystemRandom().sample(range(first_calls), min(config.checked_calls, first_calls)))
    event_ms, wall_ms, loop_s, launches = [], [], 0.0, []
    for offset, count in chunk_spans(config.iters, per_chunk, checked, whole_output_count(output_bytes, config)):
        if settled(event_ms, config):
            break
        full_calls = {i - offset for i in checked if offset <= i < offset + count}
        chunk = plan_chunk(like, count, full_calls, device, config)
        try:
            reply, host_s = run_chunk(worker, exchange, reference, chunk, set_shapes, warm, config, limits)
        except torch.OutOfMemoryError:
            hog = memory_hog(exchange, device, WORKER_BYTES + set_bytes + output_bytes) if alone else None
            if hog is None:
                raise               # the problem itself does not fit, or neighbours hold it: an infrastructure failure
            return Timed(EvalStatus.RUNTIME_ERROR, hog)
        warm = None                 # only the first chunk warms up (run_chunk moved it into the arena)
        verdict = judge_chunk(reply, chunk, offset, config, host_s, audited)
        chunk = None                # let this chunk's sets and outputs go before the next are drawn
        if verdict.status is not EvalStatus.CORRECT:
            return verdict
        event_ms += reply.event_ms
        wall_ms += reply.wall_ms
        loop_s += reply.loop_wall_s
        if reply.audit is not None:
            launches.append((reply.audit.launches, count + (config.warmup if offset == 0 else 0)))
    stats = TimingStats.from_samples(event_ms, wall_ms, loop_s)
    mismatch = stats.wall_median_ms > MISMATCH_RATIO * stats.median_ms + MISMATCH_SLACK_MS
    return Timed(EvalStatus.CORRECT, "", stats, (Flag.TIMING_MISMATCH,) if mismatch else (), tuple(launches))


def settled(event_ms: list[float], config: TimingConfig) -> bool:
    """The stopping rule: enough calls, and the median known to within ±stop_rel_ci."""
    if config.min_iters is None or len(event_ms) < config.min_iters:
        return False
    low, high = median_interval(event_ms)
    median = sorted(event_ms)[len(event_ms) // 2]
    return median > 0 and (high - low) / 2 <= config.stop_rel_ci * median


def memory_hog(exchange: Exchange, device: torch.device, ours: int) -> str | None:
    """Why the trusted side ran out of GPU memory between timed calls, when the candidate's
    process is the one holding it (more than half the device: a cache of every output, say);
    None when it is not, and the failure is the trusted side's own. `ours`: what the worker
    holds for the protocol (`WORKER_BYTES`, the call's private inputs and its output)."""
    free, total = torch.cuda.mem_get_info(device)
    hog = hog_bytes(free, total, torch.cuda.memory_reserved(device) + exchange.held_bytes, ours)
    if hog is None:
        return None
    return (f"timing: out of memory drawing the next timed inputs: the candidate's process held about "
            f"{hog / GiB:.1f} GiB of the device's {total / GiB:.1f} GiB beyond what the protocol gave it")


def hog_bytes(free: int, total: int, trusted: int, ours: int) -> int | None:
    """The device memory no one but the candidate holds: all in use, less the trusted side's
    (`trusted`, its allocator and arenas, and CONTEXT_BYTES) and what the worker holds for
    the protocol (`ours`); None unless it is over HOG_SHARE of the device."""
    hog = total - free - trusted - CONTEXT_BYTES - ours
    return hog if hog > HOG_SHARE * total else None


def plan_chunk(like: list[torch.Tensor], count: int, full_calls: set[int], device: torch.device,
               config: TimingConfig) -> Chunk:
    """`count` calls in a secret order with secret sample positions; `run_chunk` draws
    their sets (whole outputs come back only for the calls in `full_calls`)."""
    schedule = secrets.SystemRandom().sample(range(count), count)
    generator = torch.Generator(device=device).manual_seed(secret_seed())
    positions = [torch.randint(0, max(y.numel(), 1), (min(config.sample_elements, y.numel()),),
                               generator=generator, device=device) for y in like]
    return Chunk(schedule, "", like, positions, [], set(full_calls))


def chunk_shapes(chunk: Chunk, set_shapes: list, warm: bool) -> list:
    """(shape, dtype) of everything a chunk's arena holds: its input sets (and the warm-up
    set), the sample positions, each call's sample slots, and the whole-output slots."""
    count = len(chunk.schedule)
    return (set_shapes * (count + warm) + [(p.shape, p.dtype) for p in chunk.positions]
            + [(p.shape, y.dtype) for _ in range(count) for p, y in zip(chunk.positions, chunk.like)]
            + [(y.shape, y.dtype) for _ in chunk.full_calls for y in chunk.like])


def draw_into(arena: Arena, reference: Reference, chunk: Chunk, index: int) -> list[dict]:
    """Set `index` of the chunk: drawn, copied into the arena (the worker's copy), then
    given to the reference, which may change it, and dropped: beside the arena the trusted
    side holds one set at a time (KernelBench's largest level-1 sets are 16 GiB)."""
    inputs = draw(reference.problem, secret_seed(), Distribution.OWN, reference.device)
    refs = [arena.put(x) for x in inputs]
    chunk.container, outputs = reference.run(inputs, copy=False)
    chunk.samples.append([y.reshape(-1)[p] for y, p in zip(outputs, chunk.positions)])
    for call in chunk.full_calls:
        if chunk.schedule[call] == index:
            chunk.full[call] = outputs
    return refs


def run_chunk(worker: Worker, exchange: Exchange, reference: Reference, chunk: Chunk, set_shapes: list,
              warm: list[torch.Tensor] | None, config: TimingConfig, limits: Limits) -> tuple[Reply, float]:
    """One `time` request; the reply with the trusted side's views of what came back
    (sample and whole-output slots, attached to the chunk), and its wall-clock seconds.
    `warm`, the warm-up set, is moved into the arena: the list is emptied."""
    count = len(chunk.schedule)
    arena = exchange.acquire(arena_bytes(chunk_shapes(chunk, set_shapes, warm is not None)))
    try:
        warm_refs = [arena.put(x) for x in warm] if warm is not None else None
        if warm is not None:
            warm.clear()     # the arena holds it now; the trusted copy goes before the sets are drawn
        request = {"kind": "time", "arena": arena.describe(), "warmup": config.warmup if warm is not None else 0,
                   "iters": count, "schedule": chunk.schedule,
                   "sample_positions": [arena.put(p) for p in chunk.positions],
                   "input_sets": [draw_into(arena, reference, chunk, index) for index in range(count)]}
        if warm_refs is not None:
            request["input_sets"].append(warm_refs)
            request["warmup_set"] = count
        samples = [arena.slots(chunk.samples[0]) for _ in chunk.schedule]
        calls = sorted(chunk.full)
        full = [arena.slots(chunk.full[call]) for call in calls]
        request.update(sample_slots=[refs for _, refs in samples], check_indices=calls,
                       check_slots=[refs for _, refs in full])
        exchange.ready(arena)
        started = time.perf_counter()
        reply = ask(worker, request, limits.timing_s)
        host_s = time.perf_counter() - started
        # copies: the arena is reused by the next request
        chunk.sample_outputs = [[v.clone() for v in views] for views, _ in samples]
        chunk.full_outputs = {call: [v.clone() for v in views] for call, (views, _) in zip(calls, full)}
        return reply, host_s
    finally:
        exchange.release(arena)


def judge_chunk(reply: Reply, chunk: Chunk, offset: int, config: TimingConfig, host_s: float, audited: bool) -> Timed:
    if isinstance(reply, Failure):
        return Timed(reply.status, f"timing: {reply.message}")
    count, device = len(chunk.schedule), str(chunk.positions[0].device) if chunk.positions else "cpu"
    if audited and judge_audit(reply.audit):
        return Timed(EvalStatus.REJECTED, f"timing: {judge_audit(reply.audit)}")
    checked = [(call, chunk.container, chunk.full[call], chunk.full_outputs[call]) for call in sorted(chunk.full)]
    verdict = judge_timing(reply, checked, device, replace(config, iters=count), host_s)
    if verdict.status is not EvalStatus.CORRECT:
        return verdict
    if len(reply.call_meta or ()) != count:
        return Timed(EvalStatus.REJECTED, "timing: the worker did not return every timed call's samples")
    for call, meta in enumerate(reply.call_meta):
        label = f"timed call {offset + call + 1} of {config.iters}"
        broken = check_contract(chunk.container, chunk.like, meta, device)
        if broken:
            return Timed(EvalStatus.INCORRECT, f"{label}: {broken}")
        sampled = compare(chunk.samples[chunk.schedule[call]], chunk.sample_outputs[call])
        if not sampled.ok:
            return Timed(EvalStatus.INCORRECT, f"{label} (secret sample of its outputs): {sampled.reason}")
    return verdict


def judge_timing(reply: TimedReply, checked: list, device: str, config: TimingConfig, host_s: float) -> Timed:
    """`checked`: (call index, reference container, reference outputs, arena slots) per checked call."""
    event_ms, wall_ms = reply.event_ms, reply.wall_ms
    if not _valid_samples(event_ms, config.iters) or not _valid_samples(wall_ms, config.iters):
        return Timed(EvalStatus.REJECTED, "timing: the worker returned malformed timings")
    if reply.flags_changed:
        return Timed(EvalStatus.REJECTED, f"timing: the candidate changed global precision flags: "
                     f"{', '.join(reply.flags_changed)}")
    if sum(event_ms) / 1e3 > host_s:
        return Timed(EvalStatus.REJECTED, f"timing: the events add up to {sum(event_ms) / 1e3:.3f} s but the whole "
                     f"timed request took {host_s:.3f} s of wall-clock time (timers tampered with)")
    if [entry.index for entry in reply.checked_meta] != [entry[0] for entry in checked]:
        return Timed(EvalStatus.REJECTED, "timing: the worker returned other calls than the ones asked for")
    for (index, container, expected, outputs), entry in zip(checked, reply.checked_meta):
        verdict = judge_call(container, expected, None, outputs, entry.meta, None, device)
        if not verdict.ok:
            return Timed(EvalStatus.INCORRECT, f"timed call {index + 1} of {config.iters}: {verdict.reason}")
    if not 0 <= reply.loop_wall_s <= host_s:
        return Timed(EvalStatus.REJECTED, "timing: the worker returned a malformed loop time")
    stats = TimingStats.from_samples(list(event_ms), list(wall_ms), reply.loop_wall_s)
    mismatch = stats.wall_median_ms > MISMATCH_RATIO * stats.median_ms + MISMATCH_SLACK_MS
    return Timed(EvalStatus.CORRECT, "", stats, (Flag.TIMING_MISMATCH,) if mismatch else ())


def _valid_samples(samples: tuple[float, ...], count: int) -> bool:
    return len(samples) == count and all(math.isfinite(x) and x >= 0 for x in samples)
