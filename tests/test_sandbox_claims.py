"""Claims of the process sandbox's docstring that no other test pinned (issue 18): a child
sees a scrubbed environment (in `os.environ` and in the block its process started with,
/proc/self/environ, which is the fork server's), and a file it writes past the file-size cap
fails. Each runs real candidates in a sandbox of its own (fresh workers, so what the
trusted process holds at the time is what a worker would get).

The parent-death signal is tests/test_containment.py's kill -9 test (root); the
resident-memory watchdog is a GPU claim (on a CPU the address-space cap comes first:
tests/test_failure_statuses.py's memory hog), in tests/test_gpu_claims.py.

    pytest -q tests/test_sandbox_claims.py
"""
import dataclasses
import os
import time

import pytest

from tests.conftest import CANDIDATES, FIXTURES, TEST_LIMITS, read
from tools.device import detect
from tools.evaluator import EvalConfig, Evaluator
from tools.records import EvalStatus, Phase
from tools.sandbox.process import ProcessSandbox

# What a worker may see (tools/sandbox/contracts.py PASSED_ENV, then what the worker adds:
# its home, temporary folder, locale, user name and compile caches), stated here, not read
# from the code under test: a name added there must be added here, on purpose.
PASSED = ("PATH", "CUDA_HOME", "CUDA_PATH", "LD_LIBRARY_PATH", "CUDA_VISIBLE_DEVICES", "TRITON_PTXAS_PATH", "CC", "CXX")
WORKER_ADDS = ("HOME", "TMPDIR", "LANG", "PYTHONDONTWRITEBYTECODE", "USER", "LOGNAME", "TRITON_CACHE_DIR",
               "TORCHINDUCTOR_CACHE_DIR", "TORCH_EXTENSIONS_DIR", "TORCHINDUCTOR_COMPILE_THREADS", "TRITON_INTERPRET")
FORK_SERVER_ADDS = ("TRITON_INTERPRET", "KERNELPILOT_FORKSERVER_PARENT")
SECRET_NAME = "KP_TEST_OPENAI_API_KEY"


def own_sandbox_evaluate(problem, source: str, limits=TEST_LIMITS):
    with ProcessSandbox(None, limits, warm=0) as sandbox:
        return Evaluator(sandbox, detect(force_cpu=True), EvalConfig(trials=1, limits=limits)).evaluate(problem, source)


def environment_probe(allowed: tuple[str, ...], canary: str) -> str:
    source = read(FIXTURES / "hostile" / "own_environment.py")
    return source.replace('ALLOWED = ("PATH",)', f"ALLOWED = {allowed!r}").replace(
        'CANARY = "KP_CANARY_VALUE"', f"CANARY = {canary!r}")


def test_a_worker_sees_only_the_scrubbed_environment(monkeypatch, softmax_problem):
    """A secret the trusted process holds when the worker starts reaches neither the
    worker's os.environ nor its process's environment block; nor does anything else of the
    trusted side's (KERNELPILOT_HOME, PYTHONPATH, the test runner's variables)."""
    canary = f"sk-canary-{os.getpid()}-{time.time_ns()}"
    monkeypatch.setenv(SECRET_NAME, canary)
    result = own_sandbox_evaluate(softmax_problem, environment_probe(PASSED + WORKER_ADDS + FORK_SERVER_ADDS, canary))
    assert result.status is EvalStatus.CORRECT, result.reason
    assert canary not in result.log + result.reason


def test_the_environment_probe_sees_both_places(softmax_problem):
    """The probe above is no blind spot: told that nothing is allowed, it names PATH in
    os.environ and in /proc/self/environ, and the worker's own HOME."""
    result = own_sandbox_evaluate(softmax_problem, environment_probe((), "no such value"))
    assert (result.status, result.phase) == (EvalStatus.RUNTIME_ERROR, Phase.RUN), result.reason
    for seen in ("os.environ PATH", "os.environ HOME", "/proc/self/environ PATH"):
        assert seen in result.reason


WRITER = '''
with open("written.bin", "wb") as handle:      # the worker's own folder
    handle.write(b"x" * {size})
'''


@pytest.mark.parametrize("size, status, phase, words", [
    (768 * 1024, EvalStatus.CORRECT, None, ""),
    (2 * 1024 * 1024, EvalStatus.RUNTIME_ERROR, Phase.LOAD, "File too large"),
], ids=["under-the-cap", "over-the-cap"])
def test_a_file_past_the_size_cap_cannot_be_written(softmax_problem, size, status, phase, words):
    limits = dataclasses.replace(TEST_LIMITS, max_file_bytes=1024 * 1024)
    source = read(CANDIDATES / "04_softmax_rows.py") + WRITER.format(size=size)
    result = own_sandbox_evaluate(softmax_problem, source, limits)
    assert (result.status, result.phase) == (status, phase), result.reason
    assert words in result.reason
