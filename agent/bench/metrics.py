"""A batch run's metrics, as pure functions of its rows (KernelBench's definitions).

- correct rate: counted rows over all problems of the selection;
- fast_p: the share of ALL problems (not run, failed and flagged ones count as failures)
  whose answer is correct, allowed by the trust rules, and faster than the baseline by a
  factor above p, for p in {0, 1, 1.5, 2}, against eager and against torch.compile;
- geomean: of the speedups over counted rows, and over all problems with every problem
  without a counted, timed answer taken as 1.0x (say which when quoting it).

A run that timed nothing (`--untimed`, or the Triton interpreter) has no speed metrics:
`as_dict(timed=False)` gives NOT_TIMED for them rather than 0.

    m = metrics(rows, total=100)
    m.fast_p[Versus.EAGER][1.0], m.geomean_counted[Versus.EAGER]
"""
import math
import statistics
from dataclasses import asdict, dataclass

from agent.bench.rows import BenchRow
from tools.trust import Versus

P_VALUES = (0.0, 1.0, 1.5, 2.0)
NOT_TIMED = "not timed"


@dataclass(frozen=True)
class Metrics:
    level: int | None           # None: every level together (or a suite without levels)
    problems: int               # problems in the selection
    run: int                    # problems with a row
    correct: int                # rows whose answer counts (correct, allowed)
    timed: dict[str, int]       # counted rows with a speedup, per baseline
    correct_rate: float
    fast_p: dict[str, dict[float, float]]           # {versus: {p: share of all problems}}
    geomean_counted: dict[str, float | None]        # over counted, timed rows
    geomean_all: dict[str, float | None]            # over all problems, 1.0x for the rest

    def as_dict(self, timed: bool = True) -> dict:
        """summary.json's entry; in a run that timed nothing, the speed metrics say NOT_TIMED."""
        data = asdict(self)
        data["fast_p"] = {v: {str(p): share if timed else NOT_TIMED for p, share in shares.items()}
                          for v, shares in self.fast_p.items()}
        if not timed:
            for name in ("geomean_counted", "geomean_all"):
                data[name] = dict.fromkeys(data[name], NOT_TIMED)
        return data


LEVEL_COLUMNS = ("level", "run", "correct")
SPEED_COLUMNS = ("fast_1 eager", "fast_1 compile", "fast_2 eager", "geomean eager", "geomean compile")


def run_timed(untimed: bool, rows: list[BenchRow]) -> bool:
    """Did the run time kernels? Not with `--untimed` (`untimed`, from run.json), nor where every
    row ran in the interpreter; rows written before rows said so: whether one has a speedup."""
    if untimed:
        return False
    known = [row.timed for row in rows if row.timed is not None]
    return any(known) if known else any(speedup(row, Versus.EAGER) is not None for row in rows)


def level_cells(m: "Metrics", several: bool) -> list[str]:
    """The table's first columns for one Metrics (`several`: per_level's last one is all levels)."""
    level = "all" if m.level is None and several else str(m.level if m.level is not None else "-")
    return [level, f"{m.run}/{m.problems}", f"{m.correct} ({m.correct_rate:.0%})"]


def speed_cells(m: "Metrics") -> list[str]:
    """The table's SPEED_COLUMNS for one Metrics."""
    return [f"{m.fast_p[Versus.EAGER][1.0]:.0%}", f"{m.fast_p[Versus.COMPILE][1.0]:.0%}",
            f"{m.fast_p[Versus.EAGER][2.0]:.0%}", times(m.geomean_counted[Versus.EAGER]),
            times(m.geomean_counted[Versus.COMPILE])]


def times(value: float | None) -> str:
    return f"{value:.2f}x" if value is not None and math.isfinite(value) else "-"


def speedup(row: BenchRow, versus: Versus) -> float | None:
    """The row's speedup when it counts in metrics; else None."""
    if not row.counted:
        return None
    return row.speedup_vs_eager if versus is Versus.EAGER else row.speedup_vs_compile


def fast_p(rows: list[BenchRow], total: int, p: float, versus: Versus) -> float:
    """KernelBench's fast_p: correct and faster than p times the baseline, over all `total` problems."""
    wins = sum(1 for row in rows if (s := speedup(row, versus)) is not None and s > p)
    return wins / total if total else 0.0


def geomean(values: list[float]) -> float | None:
    return statistics.geometric_mean(values) if values else None


def metrics(rows: list[BenchRow], total: int, level: int | None = None) -> Metrics:
    """Metrics of `rows` over a selection of `total` problems (rows missing count as failures)."""
    if total < len(rows):
        raise ValueError(f"{len(rows)} rows cannot come from a selection of {total} problems")
    counted = [row for row in rows if row.counted]
    per = {v.value: [s for row in rows if (s := speedup(row, v)) is not None] for v in Versus}
    return Metrics(
        level=level, problems=total, run=len(rows), correct=len(counted),
        timed={v: len(values) for v, values in per.items()},
        correct_rate=len(counted) / total if total else 0.0,
        fast_p={v.value: {p: fast_p(rows, total, p, v) for p in P_VALUES} for v in Versus},
        geomean_counted={v: geomean(values) for v, values in per.items()},
        geomean_all={v: geomean(values + [1.0] * (total - len(values))) if total else None
                     for v, values in per.items()})


def per_level(rows: list[BenchRow], totals: dict[int | None, int]) -> list[Metrics]:
    """One Metrics per level of the selection (`totals`: problems per level), then all together
    when there are several levels."""
    found = [metrics([r for r in rows if r.level == level], total, level) for level, total in
             sorted(totals.items(), key=lambda item: (item[0] is None, item[0]))]
    if len(totals) > 1:
        found.append(metrics(rows, sum(totals.values()), None))
    return found
