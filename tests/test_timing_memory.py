"""What the timed loop holds on the device, from the accounting functions of tools/timing.py with
the shapes of a problem whose outputs dwarf its inputs (KernelBench L1-7: A 32768x64 and B 64x32768
in fp32, 16 MiB a set; C 32768x32768, 4 GiB). Only shapes and byte counts: no GPU, nothing of that
size allocated (the outputs are meta tensors).

Before the chunks were bounded by output bytes, all three whole-output checks of L1-7 fell in its one
chunk: a 13 GiB arena (three 4 GiB slots) on top of the trials' 5 GiB one, plus three reference
outputs and three copies of what came back, about 42 GiB on the trusted side for 4 GiB outputs."""
import secrets

import pytest
import torch

from tools.sandbox.contracts import GiB
from tools.sandbox.shm import arena_bytes, arena_size
from tools.timing import (CONTEXT_BYTES, WORKER_BYTES, TimingConfig, chunk_shapes, chunk_spans, hog_bytes,
                          input_set_count, plan_chunk, whole_output_count)

M = N = 32768
K = 64
SET_SHAPES = [((M, K), torch.float32), ((K, N), torch.float32)]
SET_BYTES = 2 * M * K * 4                       # 16 MiB
LIKE = [torch.empty((M, N), dtype=torch.float32, device="meta")]
OUTPUT_BYTES = M * N * 4                        # 4 GiB
TRIAL_ARENA = arena_size(arena_bytes(SET_SHAPES + [((M, N), torch.float32)]))   # a correctness trial's: 5 GiB


def arenas(config: TimingConfig, checked: set[int]) -> list[tuple[int, int]]:
    """(whole-output checks, arena bytes) of each chunk, as time_candidate plans them."""
    per_chunk = input_set_count(SET_BYTES, config)
    spans = chunk_spans(config.iters, per_chunk, checked, whole_output_count(OUTPUT_BYTES, config))
    ends = [offset + count for offset, count in spans]
    assert [offset for offset, _ in spans] == [0, *ends[:-1]] and ends[-1] == config.iters     # contiguous, all
    found = []
    for offset, count in spans:
        full = {i - offset for i in checked if offset <= i < offset + count}
        chunk = plan_chunk(LIKE, count, full, torch.device("cpu"), config)
        found.append((len(full), arena_size(arena_bytes(chunk_shapes(chunk, SET_SHAPES, warm=offset == 0)))))
    assert sum(full for full, _ in found) == len(checked)     # every whole-output check is made, once
    return found


@pytest.mark.parametrize("iters, checked, most", [
    (30, {0, 1, 2}, 5 * GiB),           # bench --iters 30, the worst draw (three checks in a row): the trials' arena
    (30, {3, 17, 25}, 5 * GiB),         # (before: 13 GiB beside the trials' 5, three 4 GiB slots)
    (100, set(secrets.SystemRandom().sample(range(100), 3)), 6 * GiB),   # 100 sets (1.6 GiB) and one slot (before: 14)
    (100, set(range(20)), 6 * GiB),     # the evaluator's audit run, 20 whole-output checks (before: 82 GiB)
])
def test_an_output_heavy_problem_checks_one_whole_output_per_chunk(iters, checked, most):
    for full, nbytes in arenas(TimingConfig(iters=iters, checked_calls=len(checked)), checked):
        assert full <= 1 and nbytes <= most
    assert TRIAL_ARENA == 5 * GiB


def test_whole_output_checks_per_chunk_follow_the_budget():
    config = TimingConfig()                         # a 2 GiB budget
    assert whole_output_count(64 * 2**20, config) == 32       # most problems: all three checks in one chunk
    assert whole_output_count(GiB, config) == 2
    assert whole_output_count(GiB + 1, config) == 1
    assert whole_output_count(OUTPUT_BYTES, config) == 1      # never fewer than one
    assert whole_output_count(0, config) == 2 * GiB


def test_chunks_of_small_outputs_are_cut_by_the_input_sets_alone():
    assert chunk_spans(100, 100, {5, 40, 90}, most_full=32) == [(0, 100)]
    assert chunk_spans(100, 30, {5, 40, 90}, most_full=32) == [(0, 30), (30, 30), (60, 30), (90, 10)]
    assert chunk_spans(30, 30, {2, 9, 20}, most_full=1) == [(0, 9), (9, 11), (20, 10)]
    assert chunk_spans(30, 30, {0, 1, 2}, most_full=2) == [(0, 2), (2, 28)]
    assert chunk_spans(7, 3, set(), most_full=1) == [(0, 3), (3, 3), (6, 1)]


TOTAL = 80 * GiB
OURS = WORKER_BYTES + SET_BYTES + OUTPUT_BYTES      # context and L2 flush, the warm worker, one call's set and output


def used(*parts: int) -> int:
    return TOTAL - sum(parts)


def test_a_worker_holding_only_what_the_protocol_gave_it_is_never_the_hog():
    trusted = 5 * GiB + 12 * GiB                    # L1-7 at its peak now: the arena, a check's outputs, a draw
    free = used(trusted, CONTEXT_BYTES, OURS)
    assert hog_bytes(free, TOTAL, trusted, OURS) is None
    # a 38 GiB output: the worker's one output and one set alone are near half the device
    big = WORKER_BYTES + 38 * GiB
    assert hog_bytes(used(37 * GiB, CONTEXT_BYTES, big), TOTAL, 37 * GiB, big) is None


def test_a_worker_caching_its_outputs_is_the_hog_by_what_it_keeps_beyond_the_protocol():
    trusted = 5 * GiB + 12 * GiB
    cached = 11 * OUTPUT_BYTES                      # eleven earlier calls' outputs kept
    free = used(trusted, CONTEXT_BYTES, OURS, cached)
    assert hog_bytes(free, TOTAL, trusted, OURS) == cached
    assert hog_bytes(free + cached - 38 * GiB, TOTAL, trusted, OURS) is None     # under half the device: not blamed
