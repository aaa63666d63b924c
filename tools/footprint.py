"""How much GPU memory one problem's evaluation needs, estimated without materialising it,
and whether that makes it heavy for lanes sharing one GPU (`tools/gpu_share.py` admits them).

The problem's inputs and its `Model` are built under `torch.device("meta")` (KernelBench's
`get_inputs` calls `torch.rand` without a device, and the model's layers take the default
device), so only shapes and dtypes exist; a meta forward gives the outputs' shapes. The
sizes are the problem's as loaded: full size on a GPU, the small size in the interpreter.

    footprint = estimate(load_problem("L1/19_ReLU.py"))
    footprint.total_bytes          # FACTOR * (inputs + parameters + outputs); None: not estimable
    heavy(footprint, device_bytes=80 * GiB, lanes=6)

FACTOR counts the copies an evaluation holds at its peak, the timed chunk of a candidate
(`tools/timing.py`): on the trusted side the exchange arena's warm-up set, its call set and a
checked output's slot (outputs over the chunk budget get one slot a chunk), plus the set being
drawn with the reference's output and that output's clone; in the candidate's process its
private copy of the call's inputs and its output. That is about four of each input and output
(the correctness trials and the baseline process hold fewer), and two of the parameters (the
reference's and the candidate's). One more of everything stands for what no shape tells: the
candidate's own intermediates and the allocator's fragmentation. It is an estimate from the
code, not a measurement.
"""
from dataclasses import dataclass

import torch

from tools.inputs import tensor_bytes
from tools.problem_errors import ProblemError
from tools.problems import Problem
from tools.sandbox.contracts import GiB
from tools.sandbox.protocol import flatten_output

FACTOR = 5                  # copies of (inputs + parameters + outputs) an evaluation may hold at once
MARGIN = 0.10               # of the device kept out of every share: fragmentation, other users
LANE_OVERHEAD = 2 * GiB     # per lane, outside any estimate: the CUDA contexts of the lane process, its warm
                            # and candidate workers and the baseline process (about 0.5 GiB each; not measured)


@dataclass(frozen=True)
class Footprint:
    """Bytes of one draw of the problem's inputs, of its model's parameters and buffers, and
    of one forward's outputs. `note` says what was assumed or why nothing could be estimated."""

    input_bytes: int | None
    param_bytes: int | None = None
    output_bytes: int | None = None
    output_measured: bool = False       # False: the outputs are the stand-in (as many bytes as the inputs)
    note: str = ""

    @property
    def total_bytes(self) -> int | None:
        """What an evaluation is assumed to hold on the device at once; None: unknown."""
        if self.input_bytes is None or self.param_bytes is None or self.output_bytes is None:
            return None
        return FACTOR * (self.input_bytes + self.param_bytes + self.output_bytes)


def estimate(problem: Problem) -> Footprint:
    """The problem's footprint from meta tensors: nothing is allocated, no RNG state changes."""
    with torch.random.fork_rng(devices=[]), torch.device("meta"), torch.no_grad():
        try:
            inputs = problem.draw_inputs()
            model = problem.build_model()
        except ProblemError as error:       # a .item(), a .numpy() or a .cuda() needs real tensors
            return Footprint(None, note=f"not estimable on the meta device: {error}")
        params = tensor_bytes([*model.parameters(), *model.buffers()])
        input_bytes = tensor_bytes(inputs)
        try:
            _, outputs = flatten_output(model(*inputs))
        except Exception as error:  # an op without a meta kernel, or control flow on values: the stand-in
            return Footprint(input_bytes, params, input_bytes, False,
                             f"outputs assumed as large as the inputs (the meta forward raised "
                             f"{type(error).__name__}: {str(error)[:120]})")
    if not all(isinstance(y, torch.Tensor) for y in outputs):
        return Footprint(input_bytes, params, input_bytes, False, "outputs assumed as large as the inputs "
                                                                  "(the forward returned more than tensors)")
    return Footprint(input_bytes, params, tensor_bytes(outputs), True)


def lane_share(device_bytes: int, lanes: int) -> int:
    """The bytes one of `lanes` lanes may hold on a device of `device_bytes` beside the others."""
    usable = int(device_bytes * (1 - MARGIN)) - lanes * LANE_OVERHEAD
    return max(usable, 0) // max(lanes, 1)


def heavy(footprint: Footprint, device_bytes: int, lanes: int) -> bool:
    """Must the problem run alone on its device? Only where lanes share it: when its estimate
    exceeds one lane's share, or there is no estimate."""
    total = footprint.total_bytes
    return lanes > 1 and (total is None or total > lane_share(device_bytes, lanes))
