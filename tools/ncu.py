"""Nsight Compute metrics of one forward, when `ncu` is on this machine.

`profile` (tools/evaluator.py) already gives the kernels and their time shares from the
torch profiler inside the sandbox. Where NVIDIA's `ncu` is installed, this adds per-kernel
hardware counters: DRAM and SM throughput as a share of peak, achieved occupancy,
registers per thread. `ncu` replays each kernel, so it runs the candidate in its own
process (`python -m tools.ncu_target`), started in a new session with a scrubbed
environment, a throw-away working directory, a file-size cap and no core dumps (applied
before the candidate is imported; no memory cap: CUDA needs its address space), a wall-clock limit and a kill of its whole group — but with the network, which
ncu needs to reach its target. That is weaker than the sandbox, so it is opt-in
(KERNELPILOT_NCU=1), and only candidates the sandbox already profiled cleanly (its static
check rejects network use) run under it.

    report = nsight_compute(problem, source, cuda_index=0)   # None where ncu is absent
"""
import csv
import io
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from tools.problems import Problem
from tools.sandbox.contracts import scrubbed_env

METRICS = {
    "gpu__time_duration.sum": "duration_us",
    "dram__throughput.avg.pct_of_peak_sustained_elapsed": "dram_pct",
    "sm__throughput.avg.pct_of_peak_sustained_elapsed": "sm_pct",
    "sm__warps_active.avg.pct_of_peak_sustained_active": "occupancy_pct",
    "launch__registers_per_thread": "registers",
}
TIMEOUT_S = 120
ROOT = Path(__file__).resolve().parent.parent


class NcuKernel(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    duration_us: float | None = None
    dram_pct: float | None = None
    sm_pct: float | None = None
    occupancy_pct: float | None = None
    registers: float | None = None


class NcuReport(BaseModel):
    model_config = ConfigDict(frozen=True)

    available: bool
    kernels: list[NcuKernel] = []
    reason: str = ""

    def text(self) -> str:
        if not self.available or not self.kernels:
            return f"nsight compute: {self.reason or 'no kernels captured'}"
        lines = ["nsight compute (one forward, each kernel replayed):"]
        lines += [f"  {k.name[:60]}: {_num(k.duration_us, 'us')}, DRAM {_num(k.dram_pct, '%')} of peak, "
                  f"SM {_num(k.sm_pct, '%')}, occupancy {_num(k.occupancy_pct, '%')}, {_num(k.registers, '')} regs"
                  for k in self.kernels[:10]]
        return "\n".join(lines)


def enabled() -> bool:
    return os.environ.get("KERNELPILOT_NCU") == "1"


def ncu_path() -> str | None:
    return shutil.which("ncu") or next((str(p) for p in Path("/usr/local").glob("cuda*/bin/ncu") if p.is_file()), None)


def nsight_compute(problem: Problem, source: str, cuda_index: int) -> NcuReport:
    ncu = ncu_path()
    if ncu is None:
        return NcuReport(available=False, reason="ncu (Nsight Compute) is not installed on this machine")
    with tempfile.TemporaryDirectory(prefix="kp-ncu-") as work:
        Path(work, "problem.py").write_text(problem.source)
        Path(work, "candidate.py").write_text(source)
        command = [ncu, "--csv", "--profile-from-start", "off", "--target-processes", "all", "--metrics", ",".join(METRICS),
                   sys.executable, "-m", "tools.ncu_target", problem.size]
        done = run_group(command, work, cuda_index)
    if done is None:
        return NcuReport(available=True, reason=f"ncu did not finish within {TIMEOUT_S} s")
    kernels = parse_csv(done.stdout)
    if done.returncode != 0 and not kernels:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        return NcuReport(available=True, reason=f"ncu failed (exit {done.returncode}): {' | '.join(tail)[:400]}")
    return NcuReport(available=True, kernels=kernels)


def run_group(command: list[str], work: str, cuda_index: int) -> subprocess.CompletedProcess | None:
    env = {**scrubbed_env(), "HOME": work, "TMPDIR": work, "PYTHONPATH": str(ROOT),
           "CUDA_VISIBLE_DEVICES": str(cuda_index)}
    process = subprocess.Popen(command, cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, start_new_session=True)
    try:
        out, err = process.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        return None
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    return subprocess.CompletedProcess(command, process.returncode, out, err)


def parse_csv(text: str) -> list[NcuKernel]:
    """ncu's --csv rows (one per kernel launch and metric) folded into one record per launch."""
    start = text.find('"ID"')
    if start < 0:
        return []
    launches: dict[str, dict] = {}
    for row in csv.DictReader(io.StringIO(text[start:])):
        metric = METRICS.get(row.get("Metric Name", ""))
        if metric is None:
            continue
        launch = launches.setdefault(row["ID"], {"name": row.get("Kernel Name", "?")})
        launch[metric] = _float(row.get("Metric Value", ""), row.get("Metric Unit", ""))
    return [NcuKernel(**fields) for fields in launches.values()]


def _float(value: str, unit: str) -> float | None:
    try:
        number = float(value.replace(",", ""))
    except ValueError:
        return None
    scale = {"ns": 1e-3, "us": 1.0, "usecond": 1.0, "nsecond": 1e-3, "ms": 1e3, "msecond": 1e3}
    return number * scale.get(unit, 1.0)


def _num(value: float | None, unit: str) -> str:
    return "n/a" if value is None else f"{value:.3g}{unit}"
