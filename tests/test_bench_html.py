"""`kernelpilot bench report DIR --html` rendered in a real headless browser (Chromium from
Debian's packages, installed by .ci/run): the page renders, both plots and every problem's
row are there, its links point at the run's own files, and it references nothing on the
network. The run folder is written here with timed rows (no GPU in CI), as a GPU run
would leave it. KERNELPILOT_REQUIRE_BROWSER=1 (set by .ci/run) makes a missing browser a
failure instead of a skip. Also: the same rows in KernelBench's result format.

    pytest -q tests/test_bench_html.py
"""
import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from agent.bench.rows import BenchRow, RunLog
from tests.conftest import ROOT

BROWSER = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.fixture
def run_folder(tmp_path):
    rows = [BenchRow(key="L1/1_gemm", level=1, name="1_gemm", status="correct", speedup_vs_eager=1.8,
                     speedup_vs_compile=1.2, runtime_ms=0.4, turns=3, outputs="problems/L1_1_gemm"),
            BenchRow(key="L1/2_relu", level=1, name="2_relu", status="correct", speedup_vs_eager=0.7,
                     speedup_vs_compile=0.9, runtime_ms=0.1, turns=2, outputs="problems/L1_2_relu"),
            BenchRow(key="L2/3_chain", level=2, name="3_chain", status="incorrect", turns=5,
                     reason="trial 1: max abs error 3e-2 <script>alert(1)</script>\x1b[2J")]
    log = RunLog(tmp_path)
    for row in rows:
        log.finish(row)
    selection = [{"key": r.key, "level": r.level, "path": f"/x/{r.name}.py"} for r in rows]
    selection.append({"key": "L2/4_not_run", "level": 2, "path": "/x/4_not_run.py"})
    (tmp_path / "run.json").write_text(json.dumps({"problems": selection}))
    return tmp_path


def report_html(folder) -> str:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, "-m", "agent.cli", "bench", "report", str(folder), "--html"], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return (folder / "report.html").read_text()


def test_the_page_is_self_contained_and_escaped(run_folder):
    page = report_html(run_folder)
    assert page.count("<svg") == 2                                   # fast_p curves and the histogram
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//|url\(\s*["']?https?:|@import""", page)
    assert "<script>" not in page and "\x1b" not in page and "&lt;script&gt;" in page
    assert "href='problems/L1_1_gemm/best.py'" in page and "not run" in page


@pytest.mark.skipif(BROWSER is None and os.environ.get("KERNELPILOT_REQUIRE_BROWSER") != "1",
                    reason="no Chromium here (.ci/run installs it)")
def test_chromium_renders_it(run_folder, tmp_path):
    assert BROWSER is not None, "KERNELPILOT_REQUIRE_BROWSER=1 but no Chromium is installed"
    report_html(run_folder)
    page = (run_folder / "report.html").as_uri()
    flags = [BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             "--host-resolver-rules=MAP * ~NOTFOUND", f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run(flags + ["--dump-dom", page], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert dom.stdout.count("<svg") == 2 and "L1/1_gemm" in dom.stdout and "L2/4_not_run" in dom.stdout
    assert "1.80x" in dom.stdout and "<script>alert" not in dom.stdout
    shot = tmp_path / "page.png"
    done = subprocess.run(flags + [f"--screenshot={shot}", "--window-size=1200,1600", page], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0 and shot.stat().st_size > 20_000, done.stderr[-2000:]


def test_the_rows_in_kernelbench_format(run_folder):
    report_html(run_folder)
    level1 = json.loads((run_folder / "kernelbench" / "level1" / "eval_results.json").read_text())
    assert set(level1) == {"1", "2"}
    gemm = level1["1"][0]
    assert (gemm["sample_id"], gemm["compiled"], gemm["correctness"], gemm["runtime"]) == (0, True, True, 0.4)
    level2 = json.loads((run_folder / "kernelbench" / "level2" / "eval_results.json").read_text())
    assert level2["3"][0]["correctness"] is False and level2["3"][0]["runtime"] == -1.0 and "4" not in level2
    eager = json.loads((run_folder / "kernelbench" / "timing" / "eager.json").read_text())
    assert eager["level1"]["1_gemm.py"]["mean"] == pytest.approx(0.72)      # 0.4 ms at 1.8x
    assert "level2" not in eager
