"""report.html of a batch run: one self-contained file (inline SVG plots, no script, nothing
fetched) with the metrics per level, the fast_p curves against eager and torch.compile, a
histogram of the counted speedups, and a row per problem linking its best kernel and report.

    path = write_html(Path("out"), rows, found, selection, timed=True)

Every text that came from a run (problem names, reasons, flags) is cleaned of control
characters and escaped.
"""
import html
import io
from pathlib import Path

from agent.bench.metrics import LEVEL_COLUMNS, SPEED_COLUMNS, Metrics, level_cells, speed_cells, speedup, times
from agent.bench.rows import BenchRow
from tools.safe_text import clean
from tools.trust import Versus

HTML_FILE = "report.html"
STYLE = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
td.name,th.name{text-align:left}.plots{display:flex;flex-wrap:wrap;gap:1em}.note{color:#666}"""


def write_html(out: Path, rows: list[BenchRow], found: list[Metrics], selection: list[dict], timed: bool) -> Path:
    """Write DIR/report.html (`timed`: the run timed kernels, agent.bench.metrics.run_timed); its path."""
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>kernelpilot bench</title>"
             f"<style>{STYLE}</style></head><body><h1>kernelpilot bench</h1>",
             metrics_table(found, timed)]
    if timed:
        parts += ["<div class='plots'>", fast_p_svg(rows, len(selection)), histogram_svg(rows), "</div>"]
    else:
        parts.append("<p class='note'>Nothing was timed (--untimed, or no GPU: correctness only), "
                     "so there are no speed plots.</p>")
    parts += [problem_table(rows, selection), "</body></html>"]
    path = out / HTML_FILE
    path.write_text("\n".join(parts))
    return path


def metrics_table(found: list[Metrics], timed: bool) -> str:
    columns = LEVEL_COLUMNS + (SPEED_COLUMNS if timed else ())
    body = [level_cells(m, len(found) > 1) + (speed_cells(m) if timed else []) for m in found]
    return ("<h2>Metrics</h2><table><tr>" + "".join(f"<th>{c}</th>" for c in columns) + "</tr>"
            + "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>" for cells in body)
            + "</table>")


def problem_table(rows: list[BenchRow], selection: list[dict]) -> str:
    by_key = {row.key: row for row in rows}
    lines = ["<h2>Problems</h2><table><tr><th class='name'>problem</th><th>status</th><th>vs eager</th>"
             "<th>vs compile</th><th>turns</th><th class='name'>outputs</th><th class='name'>note</th></tr>"]
    for entry in selection:
        row = by_key.get(entry["key"])
        if row is None:
            lines.append(f"<tr><td class='name'>{text(entry['key'])}</td><td>not run</td>" + "<td></td>" * 5 + "</tr>")
            continue
        links = (f"<a href='{text(row.outputs)}/best.py'>best.py</a> <a href='{text(row.outputs)}/report.md'>report.md</a>"
                 if row.outputs and row.counted else "")
        note = ", ".join(row.flags) + ("; " if row.flags and row.reason else "") + row.reason
        lines.append(f"<tr><td class='name'>{text(row.key)}</td><td>{text(row.status)}</td>"
                     f"<td>{times(speedup(row, Versus.EAGER))}</td><td>{times(speedup(row, Versus.COMPILE))}</td>"
                     f"<td>{row.turns}</td><td class='name'>{links}</td><td class='name'>{text(note[:160])}</td></tr>")
    return "".join(lines) + "</table>"


def fast_p_svg(rows: list[BenchRow], total: int) -> str:
    """fast_p as a function of p, against both baselines."""
    plt = _pyplot()
    speeds = {v: sorted(s for row in rows if (s := speedup(row, v)) is not None) for v in Versus}
    top = max([3.0] + [s for values in speeds.values() for s in values])
    ps = [top * i / 200 for i in range(201)]
    figure, axes = plt.subplots(figsize=(5.2, 3.4))
    for versus, values in speeds.items():
        axes.plot(ps, [sum(s > p for s in values) / total for p in ps], label=f"vs {versus.value}")
    axes.axvline(1.0, color="#999", linewidth=0.8)
    axes.set(xlabel="p (speedup threshold)", ylabel="fast_p (share of all problems)", ylim=(0, 1),
             title="fast_p against eager and torch.compile")
    axes.legend()
    return _svg(plt, figure)


def histogram_svg(rows: list[BenchRow]) -> str:
    """The counted speedups against eager, on a log scale."""
    plt = _pyplot()
    values = [s for row in rows if (s := speedup(row, Versus.EAGER)) is not None]
    figure, axes = plt.subplots(figsize=(5.2, 3.4))
    low, high = min(values + [0.5]), max(values + [2.0])
    edges = [low * (high / low) ** (i / 20) for i in range(21)]
    axes.hist(values, bins=edges, color="#4a7")
    axes.set_xscale("log")
    axes.axvline(1.0, color="#999", linewidth=0.8)
    axes.set(xlabel="speedup vs eager (log)", ylabel="problems", title=f"speedups of {len(values)} counted kernels")
    return _svg(plt, figure)


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")           # files only, no display
    import matplotlib.pyplot as plt
    return plt


def _svg(plt, figure) -> str:
    buffer = io.StringIO()
    figure.tight_layout()
    figure.savefig(buffer, format="svg")
    plt.close(figure)
    svg = buffer.getvalue()
    return svg[svg.index("<svg"):]      # inline: no XML prolog or doctype inside the HTML


def text(value) -> str:
    return html.escape(clean(str(value)))
