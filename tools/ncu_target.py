"""Run by `ncu` (see tools/ncu.py): one profiled forward of the candidate in this folder.

    ncu --profile-from-start off ... python -m tools.ncu_target small|full

The candidate (`candidate.py`) and the problem (`problem.py`) sit in the working folder.
Limits are applied before the candidate is imported; the network is not cut, because ncu
talks to its target over a local socket (cutting it hangs both). The warm-up forward
(Triton compiles there) runs outside the profiled range.
"""
import importlib.util
import sys
from pathlib import Path

import torch

from tools.problems import load_problem
from tools.sandbox import worker

GiB = 1024**3


def main(size: str) -> None:
    worker.set_limits({"max_file_bytes": GiB, "host_memory_bytes": 0, "cuda": True})
    problem = load_problem(Path("problem.py"), size=size)
    torch.manual_seed(0)
    inputs = [x.cuda() for x in problem.draw_inputs()]
    spec = importlib.util.spec_from_file_location("kp_candidate", Path("candidate.py").resolve())
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    torch.manual_seed(42)
    model = module.ModelNew(*problem.init_inputs()).cuda()
    with torch.no_grad():
        model(*inputs)
        torch.cuda.synchronize()
        torch.cuda.profiler.start()
        model(*inputs)
        torch.cuda.synchronize()
        torch.cuda.profiler.stop()


if __name__ == "__main__":
    main(sys.argv[1])
