"""Which device an evaluation runs on, and the software versions that key its caches."""
import os
import platform
from dataclasses import dataclass

import torch
import triton

from tools.records import Mode


@dataclass(frozen=True)
class DeviceInfo:
    mode: Mode
    name: str                 # "NVIDIA H100 80GB HBM3" or "cpu"
    cuda_index: int | None    # None in cpu-interpreter mode

    @property
    def torch_device(self) -> torch.device:
        return torch.device("cpu") if self.cuda_index is None else torch.device("cuda", self.cuda_index)

    @property
    def worker_device(self) -> str:
        """How the worker names its device: `str(torch.device)`."""
        return str(self.torch_device)


def pick_index(cuda_index: int = 0, force_cpu: bool = False) -> int | None:
    """The CUDA device `detect` will describe (None: the Triton interpreter), found without
    initialising CUDA, so that a process sandbox can be opened first."""
    os.environ.setdefault("PYTORCH_NVML_BASED_CUDA_CHECK", "1")    # is_available() then asks NVML, not the driver
    return None if force_cpu or not torch.cuda.is_available() else cuda_index


def detect(cuda_index: int = 0, force_cpu: bool = False) -> DeviceInfo:
    """The device, by name: initialises CUDA on a GPU (open the process sandbox before)."""
    index = pick_index(cuda_index, force_cpu)
    if index is None:
        return DeviceInfo(Mode.CPU_INTERPRETER, "cpu", None)
    return DeviceInfo(Mode.GPU, torch.cuda.get_device_name(index), index)


def versions() -> dict[str, str]:
    return {"torch": torch.__version__, "triton": triton.__version__, "python": platform.python_version(),
            "cuda": torch.version.cuda or "none"}
