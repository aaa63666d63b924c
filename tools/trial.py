"""One correctness call of a loaded model in its worker: the inputs into a shared-memory arena, the
`run` request, then the outputs the worker put in the slots (and the inputs as the call left them)
judged against the reference's. The evaluator's trials use it, and so does a baseline's untimed
first call (tools/baselines.py)."""
import torch

from tools.compare import Comparison, judge_call
from tools.sandbox.contracts import Worker
from tools.sandbox.replies import Failure, Reply, ask
from tools.sandbox.shm import Exchange, arena_bytes


def run_trial(worker: Worker, exchange: Exchange, container: str, expected: list[torch.Tensor],
              inputs: list[torch.Tensor], device: str, timeout: float) -> tuple[Reply, Comparison | None]:
    """One `run` request: inputs into the arena, the call, then the outputs the worker
    put in the slots and the inputs as the call left them, judged against the reference."""
    arena = exchange.acquire(arena_bytes([(x.shape, x.dtype) for x in inputs] + [(y.shape, y.dtype) for y in expected]))
    try:
        in_refs = [arena.put(x) for x in inputs]
        seen = [arena.view(ref) for ref in in_refs]
        outputs, out_refs = arena.slots(expected)
        exchange.ready(arena)
        reply = ask(worker, {"kind": "run", "arena": arena.describe(), "inputs": in_refs, "output_slots": out_refs},
                    timeout)
        if isinstance(reply, Failure):
            return reply, None
        return reply, judge_call(container, expected, inputs, outputs, reply.output_meta, seen, device)
    finally:
        exchange.release(arena)
