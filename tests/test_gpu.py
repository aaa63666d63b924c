"""GPU checks, run on the device machine (`pytest -m gpu`): real compiled Triton, real
timing and baselines, and failures that only a GPU can produce."""
import pytest
import torch

from tests.conftest import CANDIDATES, FIXTURES, PROBLEMS, read
from tools.device import detect, pick_index
from tools.evaluator import EvalConfig, Evaluator, Protocol
from tools.problems import load_problem
from tools.records import EvalStatus, Mode
from tools.sandbox.process import ProcessSandbox

pytestmark = pytest.mark.gpu      # skipped without CUDA, or failed: tests/conftest.py

ILLEGAL_ACCESS = '''
import torch, triton, triton.language as tl

@triton.jit
def far_store(y_ptr):
    tl.store(y_ptr + (1 << 40), 1.0)   # a terabyte past the buffer

class ModelNew(torch.nn.Module):
    def forward(self, x):
        y = torch.empty_like(x)
        far_store[(1,)](y)
        torch.cuda.synchronize()
        return y
'''


@pytest.fixture(scope="module")
def gpu_evaluator():
    with ProcessSandbox(pick_index()) as sandbox:   # before detect(): the fork server starts before CUDA
        yield Evaluator(sandbox, detect(), EvalConfig())


def test_honest_candidate_is_timed_against_both_baselines(gpu_evaluator):
    problem = load_problem(PROBLEMS / "04_softmax_rows.py")
    result = gpu_evaluator.evaluate(problem, read(CANDIDATES / "04_softmax_rows.py"))
    assert result.status is EvalStatus.CORRECT, result.reason
    assert result.mode is Mode.GPU and result.timing.calls == 100 and result.runtime_ms > 0
    assert result.eager_ms > 0 and result.compile_ms > 0
    assert result.speedup_vs_eager == pytest.approx(result.eager_ms / result.runtime_ms)


@pytest.mark.parametrize("protocol", list(Protocol))
def test_warm_workers_are_waited_for_outside_the_device_lock(gpu_evaluator, monkeypatch, protocol):
    """Before the timed loop the lane waits for its warm workers to finish starting, without the
    device lock (other lanes measure meanwhile); both sizes run in the candidate's one worker."""
    held, settle = [], gpu_evaluator.sandbox.settle
    monkeypatch.setattr(gpu_evaluator.sandbox, "settle", lambda: (held.append(gpu_evaluator.device_lock.held), settle()))
    problem = load_problem(PROBLEMS / "04_softmax_rows.py")
    result = gpu_evaluator.evaluate(problem, read(CANDIDATES / "04_softmax_rows.py"),
                                    EvalConfig(protocol=protocol, second_size=True))
    assert result.status is EvalStatus.CORRECT and result.second_size.holds, result.reason
    assert held and not held[0] and result.phases.lock_held > 0


def test_reward_trials_hold_the_lock_shared_and_the_timing_exclusive(gpu_evaluator, monkeypatch):
    """The reward protocol on a GPU: the first trial outside the lock, the later ones beside other
    lanes' trials (shared), then the timed loop alone (exclusive, after letting go of the shared hold)."""
    problem = load_problem(PROBLEMS / "04_softmax_rows.py")
    gpu_evaluator.context(problem)      # its reference built (exclusive) before anything is recorded
    kinds, acquire = [], gpu_evaluator.device_lock.acquire
    monkeypatch.setattr(gpu_evaluator.device_lock, "acquire",
                        lambda exclusive: (kinds.append("exclusive" if exclusive else "shared"), acquire(exclusive)))
    result = gpu_evaluator.evaluate(problem, read(CANDIDATES / "04_softmax_rows.py"),
                                    EvalConfig(trials=3, protocol=Protocol.REWARD))
    assert result.status is EvalStatus.CORRECT and result.runtime_ms, result.reason
    assert kinds[:2] == ["shared", "exclusive"], kinds


def test_wrong_candidate_is_incorrect_on_the_gpu(gpu_evaluator):
    problem = load_problem(PROBLEMS / "04_softmax_rows.py")
    source = read(CANDIDATES / "04_softmax_rows.py").replace("inv_s = 1.0 / s", "inv_s = 1.0 / (s * 1.001)")
    assert source != read(CANDIDATES / "04_softmax_rows.py")
    assert gpu_evaluator.evaluate(problem, source).status is EvalStatus.INCORRECT


def test_cuda_cpp_candidate_builds_and_is_timed(gpu_evaluator):
    problem = load_problem(PROBLEMS / "04_softmax_rows.py")
    result = gpu_evaluator.evaluate(problem, read(FIXTURES / "cpp" / "softmax_cuda.py"))
    assert result.status is EvalStatus.CORRECT, result.reason + result.log
    assert result.runtime_ms > 0 and result.speedup_vs_eager is not None


@pytest.mark.parametrize("source,statuses", [
    (ILLEGAL_ACCESS, {EvalStatus.RUNTIME_ERROR, EvalStatus.CRASHED}),
    (read(FIXTURES / "candidates" / "segfault.py"), {EvalStatus.CRASHED}),
])
def test_gpu_faults_cost_only_the_child(gpu_evaluator, source, statuses):
    problem = load_problem(PROBLEMS / "04_softmax_rows.py")
    assert gpu_evaluator.evaluate(problem, source).status in statuses
    after = gpu_evaluator.evaluate(problem, read(CANDIDATES / "04_softmax_rows.py"))
    assert after.status is EvalStatus.CORRECT, after.reason


def test_profile_names_the_candidates_own_kernel(gpu_evaluator):
    problem = load_problem(PROBLEMS / "04_softmax_rows.py")
    profile = gpu_evaluator.profile(problem, read(CANDIDATES / "04_softmax_rows.py"))
    assert profile.available and profile.status is None, profile.reason
    top = profile.kernels[0]
    assert "softmax_kernel" in top.name and top.launches_per_call == 1 and top.share > 0.9
    assert profile.device_ms_per_call > 0
    roof = profile.roofline   # softmax moves bytes: 1.5 GiB in, 1.5 GiB out, no counted FLOPs
    assert roof.bound == "memory" and roof.flops == 0 and 0.3 < roof.fraction_of_roofline <= 1.2
    print(profile.model_dump_json(indent=1))   # recorded in the issue note


OPEN_AND_HOLD = '''
import json, sys, time
from tools.sandbox.shm import open_arena
arena = open_arena(json.loads(sys.argv[1]))
arena.buffer[0] = 7
import torch; torch.cuda.synchronize()
print("held", flush=True)
time.sleep(600)
'''


def test_outgrown_arenas_are_freed_after_a_worker_that_opened_them_is_killed():
    """A worker that opened the arena is SIGKILLed (no teardown), the arena is outgrown
    twice; after `collect` the device has the memory back (PyTorch's own IPC sharing kept
    such arenas forever: 65-74 GiB held on a KernelBench level-1 run)."""
    import json, subprocess, sys
    from tools.sandbox.shm import Exchange

    device, mib = torch.device("cuda", torch.cuda.current_device()), 1 << 20
    exchange = Exchange(device)
    torch.cuda.synchronize()
    free_before, _ = torch.cuda.mem_get_info()
    for size in (512 * mib, 1024 * mib, 2048 * mib):
        arena = exchange.acquire(size)
        holder = subprocess.Popen([sys.executable, "-c", OPEN_AND_HOLD, json.dumps(arena.describe())],
                                  stdout=subprocess.PIPE, text=True)
        assert holder.stdout.readline().strip() == "held"
        assert arena.buffer[0].item() == 7          # the worker wrote into the trusted side's memory
        holder.kill()
        holder.wait()
        exchange.collect()
    assert exchange.held_bytes == 2048 * mib        # the two outgrown arenas are gone
    free_after, _ = torch.cuda.mem_get_info()
    assert free_before - free_after < 2048 * mib + 256 * mib, (free_before, free_after)


GRAPHED_TORCH_ONLY = '''
import torch
import torch.nn as nn
import triton
import triton.language as tl


@triton.jit
def copy_kernel(x_ptr, y_ptr, n, BLOCK: tl.constexpr):   # defined, never launched
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    tl.store(y_ptr + offs, tl.load(x_ptr + offs, mask=offs < n), mask=offs < n)


def replay(model, x):
    """The built-in policy's graph runner, around a softmax by PyTorch: its own kernel never runs."""
    if getattr(model, "graph", None) is None:
        static = x.clone()
        torch.softmax(static, dim=-1)                   # warm-up outside the capture
        torch.cuda.synchronize()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            output = torch.softmax(static, dim=-1)
        model.graph, model.static, model.output = graph, static, output
    model.static.copy_(x)
    model.graph.replay()
    return model.output.clone()


class ModelNew(nn.Module):
    def forward(self, x):
        return replay(self, x)
'''


def test_kernels_replayed_from_a_cuda_graph_count_as_the_candidates_own(gpu_evaluator):
    """The built-in policy's CUDA-graph variant launches its Triton kernels only inside the
    capture: each replay is credited with them (no `no_custom_kernel`); its twin replays a
    graph of PyTorch ops only and keeps the flag."""
    from dataclasses import replace

    from agent.builtin import BuiltinPolicy
    from agent.builtin.plans.common import Config
    from tools.records import Flag

    problem = load_problem(PROBLEMS / "24_tiny_mlp.py")
    graphed = gpu_evaluator.evaluate(problem, BuiltinPolicy().source(problem, replace(Config(), cuda_graph=True)))
    assert graphed.status is EvalStatus.CORRECT and Flag.NO_CUSTOM_KERNEL not in graphed.flags, graphed.reason
    assert any("kp_candidate" in k and "not the candidate" not in k for k in graphed.kernels), graphed.kernels
    softmax = load_problem(PROBLEMS / "04_softmax_rows.py")
    torch_only = gpu_evaluator.evaluate(softmax, GRAPHED_TORCH_ONLY)
    assert torch_only.status is EvalStatus.CORRECT and Flag.NO_CUSTOM_KERNEL in torch_only.flags
