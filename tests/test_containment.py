"""What a hostile candidate can reach from a process-sandbox worker (issue 17, items 1-5
and 7): the hostile fixtures in tests/fixtures/hostile/ try, each raises with what got
through, so a verdict other than `correct` (or a trace on the host) is a hole. Each has
an honest twin (`honest_neighbour.py`: its own files, /proc/self, a socket pair, a
child) that must stay `correct`.

Most holes need a root trusted side to close (the worker becomes a user of its own),
as in CI and on the GPU machines; run as another user those tests skip, saying why.
"""
import glob
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import (FIXTURES, PROBLEMS, ROOT, SLOWDOWN, TEST_LIMITS, accepting, alive, pids, proc_field, read,
                            wait_for_candidate_file)
from tools.device import detect
from tools.evaluator import EvalConfig, Evaluator
from tools.records import EvalStatus, Flag
from tools.sandbox import leftovers
from tools.sandbox.contracts import cache_dir
from tools.sandbox.privilege import UID_BASE, is_worker_uid
from tools.sandbox.process import ProcessSandbox

HOSTILE = FIXTURES / "hostile"
SOFTMAX = PROBLEMS / "04_softmax_rows.py"
root_only = pytest.mark.skipif(os.geteuid() != 0, reason="a worker gets a user of its own only under a root trusted side")


def worker_processes() -> list[int]:
    """Live processes (zombies left out) of worker users."""
    return [pid for pid in pids() if is_worker_uid(_uid(pid)) and proc_field(pid, "State") != "Z"]


def _uid(pid: int) -> int:
    return int(proc_field(pid, "Uid") or -1)


def assert_correct(result) -> None:
    assert result.status is EvalStatus.CORRECT, f"{result.status.value}: {result.reason}"


def test_the_honest_neighbour_keeps_its_own_business(evaluator, softmax_problem):
    result = evaluator.evaluate(softmax_problem, read(HOSTILE / "honest_neighbour.py"))
    assert_correct(result)
    assert Flag.SHARED_USER not in result.flags or os.geteuid() != 0


@root_only
def test_no_secret_of_the_trusted_process_is_readable(tmp_path):
    """The trusted process (a real `kernelpilot eval`) holds a secret in its environment;
    the candidate reads every /proc/*/environ and maps it can, and /etc/shadow."""
    name, secret = "KP_TEST_OPENAI_API_KEY", f"sk-canary-{os.getpid()}-{time.time_ns()}"
    candidate = tmp_path / "proc_secrets.py"
    candidate.write_text(read(HOSTILE / "proc_secrets.py").replace("KP_CANARY_NAME", name))
    env = dict(os.environ, PYTHONPATH=str(ROOT), KERNELPILOT_HOME=str(tmp_path / "home"), **{name: secret})
    done = subprocess.run([sys.executable, "-m", "agent.cli", "eval", str(SOFTMAX), str(candidate), "--json",
                           "--no-record", "--trials", "1"], capture_output=True, text=True, env=env, cwd=ROOT,
                          timeout=300)
    assert secret not in done.stdout + done.stderr
    verdict = json.loads(done.stdout)
    assert verdict["status"] == "correct", verdict["reason"]
    assert "shared_user" not in verdict["flags"]


@root_only
def test_no_pathname_unix_socket_is_reachable(evaluator, softmax_problem, tmp_path):
    path = tmp_path / "daemon.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    os.chmod(path, 0o777)     # as open as a PostgreSQL socket
    server.listen(4)
    with accepting(server) as accepted:
        result = evaluator.evaluate(softmax_problem, read(HOSTILE / "unix_socket.py").replace(
            "/run/KP_SOCKET_PATH", str(path)))
    assert accepted == [], "the candidate reached a Unix socket on the host"
    assert_correct(result)


@root_only
def test_raw_devices_cannot_be_opened(evaluator, softmax_problem):
    if not glob.glob("/dev/loop*") + glob.glob("/dev/kvm") + glob.glob("/dev/[sv]d?"):
        pytest.skip("this machine has no raw device to try")
    assert_correct(evaluator.evaluate(softmax_problem, read(HOSTILE / "raw_devices.py")))


@root_only
def test_the_caches_the_trusted_side_reads_are_not_writable(evaluator, softmax_problem):
    cache = cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    before = sorted(cache.rglob("*"))
    result = evaluator.evaluate(softmax_problem, read(HOSTILE / "cache_plant.py").replace("/KP_CACHE_DIR", str(cache)))
    assert_correct(result)
    assert sorted(cache.rglob("*")) == before


@root_only
def test_a_concurrent_candidate_cannot_touch_an_honest_evaluations_arena(evaluator, softmax_problem):
    """The scribbler zeroes every arena it can open for six seconds while an honest
    evaluation runs five trials beside it, in its own sandbox."""
    hostile: list = []
    litter_before = set(glob.glob("/dev/shm/kp-litter-*"))
    with ProcessSandbox(None, TEST_LIMITS, warm=0) as other:
        neighbour = Evaluator(other, detect(force_cpu=True), EvalConfig(trials=1, limits=TEST_LIMITS))
        thread = threading.Thread(target=lambda: hostile.append(
            neighbour.evaluate(softmax_problem, read(HOSTILE / "arena_scribbler.py"))))
        thread.start()
        wait_for_candidate_file(os.getpid(), "scribbling")      # the scribbler is loaded and scribbling
        honest = [evaluator.evaluate(softmax_problem, read(HOSTILE / "honest_neighbour.py")) for _ in range(2)]
        thread.join(60)
    for result in honest:
        assert_correct(result)
    assert_correct(hostile[0])
    assert set(glob.glob("/dev/shm/kp-litter-*")) == litter_before, "a file the candidate wrote outlived it"


@root_only
def test_a_detached_chain_is_caught_at_once_and_killed(evaluator, softmax_problem):
    result = evaluator.evaluate(softmax_problem, read(ROOT / "tests" / "cheats" / "cheat_detached_child.py"))
    assert result.status is EvalStatus.REJECTED and "detached children" in result.reason
    assert result.trials_run <= 1, "the detached process went unseen for a trial"
    strays = [pid for pid in worker_processes() if _uid(pid) - UID_BASE != pid]   # warm workers are pid = uid - base
    assert strays == [], [Path(f"/proc/{pid}/cmdline").read_bytes() for pid in strays]


@root_only
def test_kill_9_of_eval_leaves_nothing_behind(tmp_path):
    """SIGKILL of `kernelpilot eval` while its candidate runs: its fork server and the
    worker die at once, and the next sandbox removes the folder and arena the killed
    process could not."""
    candidate = tmp_path / "slow.py"
    candidate.write_text("import time, torch, torch.nn as nn\n"
                         "class ModelNew(nn.Module):\n"
                         "    def forward(self, x):\n"
                         "        time.sleep(60)\n"
                         "        return torch.softmax(x, dim=-1)\n")
    env = dict(os.environ, PYTHONPATH=str(ROOT), KERNELPILOT_HOME=str(tmp_path / "home"))
    process = subprocess.Popen([sys.executable, "-m", "agent.cli", "eval", str(SOFTMAX), str(candidate), "--no-record",
                                "--no-baselines", "--trials", "1", "--timeout", "120"], env=env, cwd=ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    prefix = f"{leftovers.WORKDIR_PREFIX}{process.pid}-"
    workdirs = _wait_for(lambda: glob.glob(f"{tempfile.gettempdir()}/{prefix}*/candidate.py"), 120)
    assert workdirs, "the evaluation never loaded its candidate"
    workers = [pid for pid in worker_processes() if _cwd(pid).startswith(str(Path(workdirs[0]).parent))]
    assert workers, "no worker process of its own user was found"
    servers = [pid for pid in pids() if proc_field(pid, "PPid") == str(process.pid)
               and b"forkserver" in Path(f"/proc/{pid}/cmdline").read_bytes()]
    assert servers, "the evaluation's fork server was not found"
    process.send_signal(signal.SIGKILL)
    process.wait(10)
    # dead means gone or a zombie (this machine's init may never reap an orphan); a
    # fork server that finalised its interpreter took seconds here (forkserver_guard)
    assert _wait_for(lambda: not any(alive(pid) for pid in servers + workers), 5 * SLOWDOWN)
    with ProcessSandbox(None, TEST_LIMITS, warm=0):
        pass
    assert glob.glob(f"{tempfile.gettempdir()}/{prefix}*") == []
    assert glob.glob(f"/dev/shm/kernelpilot-arena-{process.pid}-*") == []


def _cwd(pid: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return ""


def _wait_for(predicate, seconds: float):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    return predicate()


def test_a_leftover_another_sandbox_swept_first_is_no_error(monkeypatch):
    """Lanes of a batch run start their sandboxes at once, and each sweeps the leftovers of dead
    trusted processes: one already removed by the other is not an error (it killed a lane)."""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    path = Path(tempfile.gettempdir()) / f"{leftovers.WORKDIR_PREFIX}{dead.pid}-swept"
    path.write_text("")
    alive = leftovers._alive

    def other_sweeper_first(pid: int) -> bool:     # between this sweep's listing and its removal
        if pid != dead.pid:
            return alive(pid)
        path.unlink(missing_ok=True)
        return False

    monkeypatch.setattr(leftovers, "_alive", other_sweeper_first)
    assert str(path) in leftovers.sweep_stale()
    assert not path.exists()
