"""The process sandbox starts its fork server when it is constructed (before its owner
can initialise CUDA), refuses to start one for a GPU after CUDA, and both backends are
siblings behind the contracts of tools/sandbox/contracts.py."""
import inspect
import os
import subprocess
import sys
from pathlib import Path

from tools.sandbox.contracts import Sandbox, Worker

ROOT = Path(__file__).resolve().parent.parent


def run_python(code: str) -> subprocess.CompletedProcess:
    """A fresh interpreter: the fork server is one per process, and this one may have started it."""
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_constructing_a_process_sandbox_starts_its_fork_server():
    done = run_python(
        "import multiprocessing.forkserver as fs, os\n"
        "from tools.sandbox.process import ProcessSandbox\n"
        "assert fs._forkserver._forkserver_pid is None\n"
        "with ProcessSandbox(None, warm=0) as sandbox:\n"
        "    pid = fs._forkserver._forkserver_pid\n"
        "    os.kill(pid, 0)\n"       # alive, and no worker() was asked for
        "    print('fork server', pid)\n")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("fork server ")


def test_a_gpu_sandbox_after_cuda_is_refused_with_what_to_do():
    done = run_python(
        "import torch\n"
        "torch.cuda.is_initialized = lambda: True\n"   # as after tools.device.detect() on a GPU machine
        "from tools.sandbox.contracts import SandboxError\n"
        "from tools.sandbox.process import ProcessSandbox\n"
        "try:\n"
        "    ProcessSandbox(0, warm=0)\n"
        "except SandboxError as error:\n"
        "    print(error)\n")
    assert done.returncode == 0, done.stderr
    assert "open the sandbox (the runtime) before touching CUDA" in done.stdout


def test_process_and_docker_backends_satisfy_the_same_contracts():
    from tools.sandbox.docker import DockerSandbox, DockerWorker
    from tools.sandbox.process import ProcessSandbox, ProcessWorker

    for protocol, classes in ((Sandbox, (ProcessSandbox, DockerSandbox)), (Worker, (ProcessWorker, DockerWorker))):
        wanted = {name for name, _ in inspect.getmembers(protocol, inspect.isfunction) if not name.startswith("_")}
        for cls in classes:
            assert wanted <= {name for name, _ in inspect.getmembers(cls, inspect.isfunction)}, (cls, wanted)
    assert {ProcessSandbox.backend.value, DockerSandbox.backend.value} == {"process", "docker"}


TRUSTED_MAIN = '''import sys
from pathlib import Path
with open({marker!r}, "a") as marker:     # every run of this module, as __main__ or __mp_main__
    marker.write("ran\\n")
if __name__ == "__main__":
    from tools.sandbox.process import ProcessSandbox
    from tools.sandbox.protocol import load_request
    from tools.sandbox.replies import ask
    with ProcessSandbox(None, warm=0) as sandbox:
        worker = sandbox.worker()
        reply = ask(worker, load_request("import sys\\nraise RuntimeError(repr(sys.argv))\\n", "ModelNew", []), 60)
        worker.close()
        print(reply.message)
'''


def test_a_worker_starts_without_the_trusted_main_module_or_its_command_line(tmp_path):
    """multiprocessing would run the trusted `__main__` again in every worker (2-4 s of imports
    for `kernelpilot` or the grader's script), and hand it the trusted command line."""
    marker, script = tmp_path / "ran.txt", tmp_path / "trusted_main.py"
    script.write_text(TRUSTED_MAIN.format(marker=str(marker)))
    done = subprocess.run([sys.executable, str(script), "--a-trusted-argument"], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    assert marker.read_text() == "ran\n"                        # the trusted process's own run only
    assert "RuntimeError" in done.stdout and "--a-trusted-argument" not in done.stdout, done.stdout
