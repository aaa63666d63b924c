"""Where a kernel sits against the device's roofline.

The work of a problem comes from its reference on the trusted side: FLOPs counted by
`torch.utils.flop_counter.FlopCounterMode` (matmuls, convolutions, attention: elementwise
work is not counted) and the fewest bytes any implementation must move (every input
read once, every output written once). The ceilings are measured once per device and
cached: device-to-device copy bandwidth and fp32 (TF32 off) matmul throughput.
"""
import json
from contextlib import AbstractContextManager, nullcontext

import torch
from torch.utils.flop_counter import FlopCounterMode

from tools.records import Bound, Roofline
from tools.reference import Reference
from tools.sandbox.contracts import cache_dir

COPY_BYTES = 1 << 30
MATMUL_N = 8192
REPEATS = 5


def work(reference: Reference, inputs: list[torch.Tensor]) -> tuple[float, float]:
    """(FLOPs, minimum bytes) of one forward of the reference on `inputs`."""
    counter = FlopCounterMode(display=False)
    with counter:
        _, outputs = reference.run(inputs)
    moved = sum(x.numel() * x.element_size() for x in [*inputs, *outputs])
    return float(counter.get_total_flops()), float(moved)


def ceilings(device: torch.device, guard: AbstractContextManager = nullcontext()) -> tuple[float, float]:
    """(bytes/s, FLOP/s) of this GPU, measured once and cached per device name. `guard` is held
    while measuring (the device lock): measured beside other work, the ceilings come out low and
    honest kernels look faster than the roofline allows."""
    name = torch.cuda.get_device_name(device)
    path = cache_dir() / "ceilings.json"
    known = json.loads(path.read_text()) if path.exists() else {}
    if name not in known:
        with guard:
            known[name] = {"bytes_per_s": _copy_bandwidth(device), "flops_per_s": _matmul_rate(device)}
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(known, indent=1))
    return known[name]["bytes_per_s"], known[name]["flops_per_s"]


def place(reference: Reference, inputs: list[torch.Tensor], runtime_ms: float,
          guard: AbstractContextManager = nullcontext()) -> Roofline:
    flops, moved = work(reference, inputs)
    bandwidth, rate = ceilings(reference.device, guard)
    floor_s = max(flops / rate, moved / bandwidth)
    seconds = runtime_ms / 1e3
    return Roofline(flops=flops, min_bytes=moved, achieved_gbps=moved / seconds / 1e9,
                    achieved_tflops=flops / seconds / 1e12, ceiling_gbps=bandwidth / 1e9,
                    ceiling_tflops=rate / 1e12, bound=Bound.COMPUTE if flops / rate > moved / bandwidth else Bound.MEMORY,
                    fraction_of_roofline=floor_s / seconds)


def _best_ms(step) -> float:
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    times = []
    for _ in range(REPEATS + 1):
        start.record()
        step()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return min(times[1:])


def _copy_bandwidth(device: torch.device) -> float:
    source = torch.empty(COPY_BYTES, dtype=torch.uint8, device=device).random_(0, 255)
    target = torch.empty_like(source)
    ms = _best_ms(lambda: target.copy_(source))
    return 2 * COPY_BYTES / (ms / 1e3)   # read plus write


def _matmul_rate(device: torch.device) -> float:
    a = torch.randn(MATMUL_N, MATMUL_N, device=device)
    b = torch.randn(MATMUL_N, MATMUL_N, device=device)
    ms = _best_ms(lambda: a @ b)
    return 2 * MATMUL_N**3 / (ms / 1e3)
