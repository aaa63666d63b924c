"""report.md of a batch run: the metrics per level, then a table per level with a row for
every problem of the selection (one not run says so, and counts as a failure, as
KernelBench's fast_p counts it). In a run that timed nothing (`--untimed`, the Triton
interpreter) the tables are a correctness check: status, flags and why, no speeds.

    path = write_markdown(Path("out"), rows, found, selection, timed=True)
"""
from pathlib import Path

from agent.bench.metrics import LEVEL_COLUMNS, NOT_TIMED, SPEED_COLUMNS, Metrics, level_cells, speed_cells, speedup, times
from agent.bench.rows import BenchRow
from tools.safe_text import clean
from tools.trust import Versus

MARKDOWN_FILE = "report.md"
TIMED_COLUMNS = ("problem", "status", "vs eager", "vs compile", "turns", "evaluations", "note")
CHECK_COLUMNS = ("problem", "status", "turns", "evaluations", "note")


def write_markdown(out: Path, rows: list[BenchRow], found: list[Metrics], selection: list[dict], timed: bool) -> Path:
    """Write DIR/report.md (`timed`: agent.bench.metrics.run_timed); its path."""
    several = len(found) > 1
    parts = ["# kernelpilot bench", "", "fast_p counts every problem of the selection (not run, failed or flagged: "
             "a failure); geomeans are over the counted rows." if timed else
             f"Nothing was timed (--untimed, or no GPU): correctness only; speed metrics: {NOT_TIMED}.", "",
             table(LEVEL_COLUMNS + (SPEED_COLUMNS if timed else ("speed",)),
                   [level_cells(m, several) + (speed_cells(m) if timed else [NOT_TIMED]) for m in found])]
    by_key = {row.key: row for row in rows}
    levels = sorted({p["level"] for p in selection}, key=lambda v: (v is None, v))    # per_level's order
    for level, m in zip(levels, found):
        chosen = [p for p in selection if p["level"] == level]
        parts += ["", f"## Level {level}" if level is not None else "## Problems without a level", "",
                  table(TIMED_COLUMNS if timed else CHECK_COLUMNS,
                        [cells(Path(p["path"]).stem, by_key.get(p["key"]), timed) for p in chosen]),
                  "", level_line(m, timed)]
    path = out / MARKDOWN_FILE
    path.write_text("\n".join(parts) + "\n")
    return path


def cells(name: str, row: BenchRow | None, timed: bool) -> list[str]:
    """One problem's row: its status, speeds as the trust rules allow them, and why it does not count."""
    if row is None:
        return [name, "not run"] + [""] * (len(TIMED_COLUMNS if timed else CHECK_COLUMNS) - 2)
    note = "; ".join(part for part in (", ".join(row.flags), row.reason) if part)
    speeds = [times(speedup(row, Versus.EAGER)), times(speedup(row, Versus.COMPILE))] if timed else []
    return [name, str(row.status), *speeds, str(row.turns), str(row.attempts), note[:300]]


def level_line(m: Metrics, timed: bool) -> str:
    line = f"{m.run}/{m.problems} run; a counted correct kernel on {m.correct}/{m.problems} ({m.correct_rate:.0%})"
    if not timed:
        return line + "; nothing timed"
    return (line + f"; fast_1 vs eager {m.fast_p[Versus.EAGER][1.0]:.0%}, vs torch.compile "
            f"{m.fast_p[Versus.COMPILE][1.0]:.0%}; geomean of the counted {times(m.geomean_counted[Versus.EAGER])} "
            f"vs eager, {times(m.geomean_counted[Versus.COMPILE])} vs torch.compile")


def table(columns: tuple[str, ...], body: list[list[str]]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    return "\n".join(lines + ["| " + " | ".join(escape(c) for c in row) + " |" for row in body])


def escape(text: str) -> str:
    """A cell's text on one line, its pipes escaped (problem names and reasons come from the run)."""
    return clean(" ".join(text.split())).replace("|", "\\|")
