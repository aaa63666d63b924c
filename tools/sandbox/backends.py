"""Choose a sandbox backend by name: `process` (default) or `docker`.

Both give the evaluator the same interface: `worker()` hands out a fresh worker that
serves one candidate (`call(request, timeout)`, `log_tail()`, `kill()`, `close()`),
`settle()` lets a warm pool catch up, `close()` ends everything.

    with open_sandbox(SandboxKind.PROCESS, cuda_index=None) as sandbox: ...
"""
from enum import StrEnum

from tools.sandbox.process import Limits, ProcessSandbox


class SandboxKind(StrEnum):
    PROCESS = "process"
    DOCKER = "docker"


def open_sandbox(kind: SandboxKind, cuda_index: int | None, limits: Limits = Limits(), warm: int = 1):
    if kind is SandboxKind.DOCKER:
        from tools.sandbox.docker import DockerSandbox    # the docker SDK is needed only here
        return DockerSandbox(cuda_index, limits, warm=warm)
    return ProcessSandbox(cuda_index, limits, warm=warm)
