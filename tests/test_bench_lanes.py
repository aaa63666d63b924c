"""`kernelpilot bench` on several lanes (agent/bench/lanes.py), in the Triton interpreter:
lane processes (`--cpu --lanes 2`, the code path of `--gpus`) killed mid-way with the
driver and resumed, every problem exactly once and nothing evaluated twice; and Ray's
local mode with two actors (the `ray` extra, which the test extra installs).

    pytest -q tests/test_bench_lanes.py
"""
import os
import signal
import subprocess
import sys
import time

from agent.bench.rows import RunLog
from tests.conftest import ROOT, alive, pids, proc_field
from tests.test_bench import SMALL, bench, finished, results, second_problem_evaluated, stored, suite  # noqa: F401


def lane_pids(rows: list[dict]) -> set[int]:
    return {int(r["lane"].split()[0].split("/")[1]) for r in rows}


def children(pid: int) -> list[int]:
    return [child for child in pids() if proc_field(child, "PPid") == str(pid) and alive(child)]


def test_lane_processes_die_with_a_killed_run_which_resumes_with_every_problem_once(suite, tmp_path):
    out, home = tmp_path / "run", tmp_path / "home"
    first = bench(out, home, str(suite), "--cpu", "--lanes", "2")
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not second_problem_evaluated(out, home):
        time.sleep(0.2)
    assert second_problem_evaluated(out, home), "the run never evaluated a kernel of its second problem"
    lanes = [pid for pid in children(first.pid) if b"spawn_main" in _cmdline(pid)]
    assert len(lanes) == 2, "the run has not two lane processes"
    first.send_signal(signal.SIGKILL)
    first.wait(30)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(alive(pid) for pid in lanes):
        time.sleep(0.1)
    assert not any(alive(pid) for pid in lanes), "a lane process outlived its killed run"
    assert len(results(out) if (out / "results.jsonl").exists() else []) < len(SMALL)

    summary = finished(bench(out, home, str(suite), "--cpu", "--lanes", "2"))
    rows = results(out)
    assert sorted(r["key"] for r in rows) == sorted(SMALL)                # each problem exactly once
    assert all(r["status"] == "correct" for r in rows), [(r["key"], r["status"], r["reason"]) for r in rows]
    assert stored(home, [r["session"] for r in rows]) == sum(r["attempts"] for r in rows)   # nothing run twice
    assert summary["metrics"][0]["correct"] == len(SMALL)
    assert all(r["lane"].endswith(" cpu") for r in rows)


def _cmdline(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            return cmdline.read()
    except OSError:
        return b""


def test_ray_local_mode_runs_two_actors(suite, tmp_path):
    out, home = tmp_path / "run", tmp_path / "home"
    process = bench(out, home, str(suite), "--cpu", "--lanes", "2", "--ray", "local", "--workers", "2")
    summary = finished(process)
    rows = results(out)
    assert sorted(r["key"] for r in rows) == sorted(SMALL)
    assert all(r["status"] == "correct" for r in rows), [(r["key"], r["status"], r["reason"]) for r in rows]
    assert summary["metrics"][0]["correct"] == len(SMALL)
    assert process.pid not in lane_pids(rows), "the problems ran in the driver, not in Ray actors"
    assert len(RunLog(out).sessions()) == len(SMALL)


def test_lanes_per_gpu_repeat_each_gpu(monkeypatch):
    """--gpus I,J --lanes N: N lane processes on each GPU (they share it through tools/device_lock.py)."""
    from argparse import Namespace
    from agent.cli import bench

    monkeypatch.setattr(bench, "visible_gpus", lambda: 2)      # the GPU count NVML would give
    assert bench.lane_devices(Namespace(gpus="0,1", lanes=2, cpu=False, ray=None)) == (0, 0, 1, 1)
    assert bench.lane_devices(Namespace(gpus="1", lanes=None, cpu=False, ray=None)) == (1,)
    assert bench.lane_devices(Namespace(gpus=None, lanes=2, cpu=True, ray=None)) == (None, None)


def test_lane_options_are_checked(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT), KERNELPILOT_HOME=str(tmp_path / "home"))
    for extra, words in ((["--gpus", "0", "--cpu"], "exclude each other"), (["--lanes", "2"], "--lanes goes with"),
                         (["--gpus", "x,y"], "--gpus")):
        done = subprocess.run([sys.executable, "-m", "agent.cli", "bench", str(tmp_path), *extra, "--out",
                               str(tmp_path / "run")], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 2 and words in done.stderr, (extra, done.stderr[-500:])
        assert "Traceback" not in done.stderr
