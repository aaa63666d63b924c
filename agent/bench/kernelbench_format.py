"""A batch run's rows in KernelBench's own result format, so its analysis scripts
(`scripts/benchmark_eval_analysis.py` in a KernelBench checkout) can read a kernelpilot run.

Written under DIR/kernelbench/:
- `levelN/eval_results.json`: {problem id: [{"sample_id": 0, "compiled", "correctness",
  "runtime", "runtime_stats", "metadata"}]}, the problem id being the number the file name
  starts with; `correctness` is true only for a row the trust rules count (tools/trust.py),
  `compiled` false only for a compile error or a problem that could not be run; `runtime`
  is the answer's median in ms, -1.0 when untimed; `metadata` keeps kernelpilot's status,
  flags, reason and session;
- `timing/eager.json` and `timing/compile.json`: {"levelN": {file name: {"mean": ms}}}, the
  baselines measured in the same run (a speedup times the runtime), for the problems
  whose answer was timed.

    paths = write_kernelbench(Path("out"), rows, selection)
"""
import json
from pathlib import Path

from agent.bench.rows import BenchRow, RowStatus

NOT_COMPILED = {RowStatus.COMPILE_ERROR, RowStatus.FAILED, RowStatus.NO_KERNEL}


def entry(row: BenchRow) -> dict:
    return {"sample_id": 0, "compiled": row.status not in NOT_COMPILED, "correctness": row.counted,
            "runtime": row.runtime_ms if row.runtime_ms is not None else -1.0,
            "runtime_stats": {"mean": row.runtime_ms} if row.runtime_ms is not None else {},
            "metadata": {"kernelpilot_status": str(row.status), "flags": list(row.flags), "reason": row.reason,
                         "session": row.session}}


def problem_id(name: str) -> str | None:
    number = name.split("_", 1)[0]
    return number if number.isdigit() else None


def write_kernelbench(out: Path, rows: list[BenchRow], selection: list[dict]) -> list[Path]:
    """The files above for every KernelBench level of the selection; the paths written."""
    by_key = {row.key: row for row in rows}
    files = {p["key"]: Path(p["path"]).name for p in selection}
    results: dict[int, dict] = {}
    baselines: dict[str, dict[str, dict]] = {"eager": {}, "compile": {}}
    for row in (by_key[p["key"]] for p in selection if p["key"] in by_key):
        pid = problem_id(row.name)
        if row.level is None or pid is None:
            continue
        results.setdefault(row.level, {})[pid] = [entry(row)]
        for name, speedup in (("eager", row.speedup_vs_eager), ("compile", row.speedup_vs_compile)):
            if row.runtime_ms is not None and speedup is not None:
                baselines[name].setdefault(f"level{row.level}", {})[files[row.key]] = {"mean": row.runtime_ms * speedup}
    written = []
    for level, found in sorted(results.items()):
        written.append(_write(out / "kernelbench" / f"level{level}" / "eval_results.json", found))
    for name, levels in baselines.items():
        if levels:
            written.append(_write(out / "kernelbench" / "timing" / f"{name}.json", levels))
    return written


def _write(path: Path, data: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1) + "\n")
    return path
