"""Choose a sandbox backend by name: `process` (default) or `docker`.

Both satisfy the `Sandbox` protocol of `tools/sandbox/contracts.py`: `worker()` hands
out a fresh `Worker` that serves one candidate (`call(request, timeout)`, `log_tail()`,
`kill()`, `close()`), `settle()` lets a warm pool catch up, `close()` ends everything.

    with open_sandbox(SandboxKind.PROCESS, cuda_index=None) as sandbox: ...
"""
from tools.sandbox.contracts import Limits, Sandbox, SandboxKind
from tools.sandbox.process import ProcessSandbox

__all__ = ["SandboxKind", "open_sandbox"]


def open_sandbox(kind: SandboxKind, cuda_index: int | None, limits: Limits = Limits(), warm: int = 1) -> Sandbox:
    if kind is SandboxKind.DOCKER:
        from tools.sandbox.docker import DockerSandbox    # the docker SDK is needed only here
        return DockerSandbox(cuda_index, limits, warm=warm)
    return ProcessSandbox(cuda_index, limits, warm=warm)
