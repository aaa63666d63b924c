"""Profiling a candidate: the kernels one forward launches, how often, and their share of the
device time (the worker's `profile` request under torch.profiler), placed against the roofline.

    profile(lambda: reference, source, 10, sandbox, exchange, lock, device, limits)   # Evaluator.profile calls it
"""
from typing import Callable

from tools import roofline
from tools.device import DeviceInfo
from tools.device_lock import DeviceLock
from tools.inputs import Distribution, draw, secret_seed
from tools.records import KernelShare, Mode, ProfileResult
from tools.reference import Reference
from tools.sandbox.contracts import Limits, Sandbox
from tools.sandbox.protocol import load_request
from tools.sandbox.replies import Failure, Profiled, ask
from tools.sandbox.shm import Exchange, arena_bytes


def profile(problem_reference: Callable[[], Reference], source: str, calls: int, sandbox: Sandbox,
            exchange: Exchange, device_lock: DeviceLock, device: DeviceInfo, limits: Limits) -> ProfileResult:
    """The kernels `calls` forwards of the candidate launch, in a fresh worker, under the device lock
    (`problem_reference` is asked only on a GPU: a reference can take long to build)."""
    if device.mode is not Mode.GPU:
        return ProfileResult(available=False, reason="no GPU: profiling needs a CUDA device", status=None,
                             kernels=[], device_ms_per_call=None, roofline=None, device=device.name)
    reference = problem_reference()
    problem = reference.problem
    inputs = draw(problem, secret_seed(), Distribution.OWN, reference.device)
    worker = sandbox.worker()
    arena = exchange.acquire(arena_bytes([(x.shape, x.dtype) for x in inputs]))
    try:
        reply = ask(worker, load_request(source, "ModelNew", problem.init_inputs()), limits.load_s)
        if not isinstance(reply, Failure):
            refs = [arena.put(x) for x in inputs]
            exchange.ready(arena)
            with device_lock:
                reply = ask(worker, {"kind": "profile", "arena": arena.describe(), "inputs": refs, "calls": calls},
                            limits.timing_s)
    finally:
        exchange.release(arena)
        worker.close()
        exchange.collect()
    if isinstance(reply, Failure):
        return ProfileResult(available=True, reason=reply.message, status=reply.status, kernels=[],
                             device_ms_per_call=None, roofline=None, device=device.name)
    result = profile_result(reply, device.name)
    roof = roofline.place(reference, inputs, result.device_ms_per_call)
    return result.model_copy(update={"roofline": roof})



def profile_result(reply: Profiled, device: str) -> ProfileResult:
    calls = max(reply.calls, 1)
    total_us = sum(k.device_us for k in reply.kernels) or 1.0
    kernels = sorted((KernelShare(name=k.name, launches_per_call=k.count / calls,
                                  device_ms_per_call=k.device_us / calls / 1e3, share=k.device_us / total_us)
                      for k in reply.kernels), key=lambda k: k.share, reverse=True)
    return ProfileResult(available=True, reason="", status=None, kernels=kernels,
                         device_ms_per_call=total_us / calls / 1e3, roofline=None, device=device)
