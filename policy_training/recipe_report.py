"""The recipe's results (policy_training/recipe.py): the held-out table after each stage, what each
stage cost, and the learning curves as PNG, from a STATE folder, whatever steps it has done so far.
A stage not yet measured is a row that says so, never a number.

    python -m policy_training.recipe report --state runs/recipe --out benchmarks/recipe

writes OUT/recipe.md (the tables, each row with the run that produced it) and, where the steps
exist, OUT/recipe_curves.png (GRPO with and without exemplars: reward, correct share and geomean
speedup of the correct candidates, per step) and OUT/recipe_sft_loss.png. Returns the Markdown.
"""
import json
from pathlib import Path

from agent.bench.metrics import times
from agent.bench.rows import BenchRow, RowStatus
from policy_training.evaluate import counted_metrics

ROWS = (("built-in policy", "eval-builtin", None), ("base", "eval-base", None), ("SFT", "eval-sft", "sft"),
        ("+ rejection sampling", "eval-rft", "rft"), ("+ contrastive GRPO", "eval-grpo", "grpo"),
        ("GRPO without exemplars (ablation)", "eval-grpo-plain", "grpo-plain"))
NOT_BUILT = (RowStatus.NO_KERNEL, RowStatus.FAILED, RowStatus.COMPILE_ERROR)


def read_step(state: Path, step: str) -> dict | None:
    path = state / "steps" / f"{step}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def builtin_metrics(state: Path) -> dict:
    """The built-in policy's held-out rows in evaluate's terms (compiles: a kernel was built and
    loaded, i.e. a row that is none of no_kernel, failed, compile_error; no tokens: no LLM)."""
    rows = [BenchRow.from_dict(json.loads(line)) for line in
            (state / "eval" / "builtin" / "builtin" / "results.jsonl").read_text().splitlines() if line.strip()]
    compiles = sum(r.status not in NOT_BUILT for r in rows) / len(rows) if rows else None
    return {"compiles": compiles, **counted_metrics(rows), "mean_tokens": None}


def pct(value) -> str:
    return "-" if value is None else f"{100 * value:.0f}%"


def table_row(state: Path, label: str, eval_step: str, stage: str | None) -> str:
    done = read_step(state, eval_step)
    trained = read_step(state, stage) if stage else None
    cost = f"{trained['seconds'] / 60:.1f}" if trained else "-"
    if done is None:
        return f"| {label} | not measured yet | | | | | | {cost} | |"
    s = builtin_metrics(state) if eval_step == "eval-builtin" else done["summary"]
    budget = (s.get("config") or {}).get("max_new_tokens")      # rows sampled with different budgets say so
    tokens = "-" if s.get("mean_tokens") is None else f"{s['mean_tokens']:.0f} of {budget}"
    geomean = f"{times(s['geomean_eager'])} ({s['geomean_rows']})" if s.get("geomean_eager") is not None else "-"
    run = f"{done['finished'][:10]}, {done['device']}, {(done.get('commit') or '?')[:7]}"
    return (f"| {label} | {pct(s['compiles'])} | {pct(s['correct'])} | {pct(s['fast_1_eager'])} | "
            f"{pct(s['fast_1_compile'])} | {geomean} | {tokens} | {cost} | {run} |")


def graded(summary: dict) -> int | None:
    """Candidates a step had graded: written back by a model's stage, or the bench rows of the
    built-in policy's steps (teacher, eval-builtin); None for a step that grades nothing (sft)."""
    if summary.get("written_back") is not None:
        return summary["written_back"]
    collected = summary.get("collect")
    return sum(m["rows"] for m in collected.values()) if collected else None


def cost_rows(state: Path, steps: tuple[str, ...]) -> list[str]:
    """Every finished step's minutes (over the runs that worked on it) and candidates graded a
    minute: GRPO's own profile where it has one, else graded over the step's minutes."""
    rows = []
    for step in steps:
        done = read_step(state, step)
        if done is None:
            continue
        count = graded(done["summary"])
        per_minute = (done["summary"].get("profile") or {}).get("graded_per_minute")
        if per_minute is None and count is not None and done["seconds"] > 0:
            per_minute = round(count / (done["seconds"] / 60), 1)
        rows.append(f"| {step} | {done['seconds'] / 60:.1f} | {'-' if count is None else count} | "
                    f"{'-' if per_minute is None else per_minute} | {done['device']} |")
    return rows


def write_report(state: Path, out: Path, steps: tuple[str, ...]) -> str:
    """`steps`: the recipe's steps in order (recipe.STEPS), for the cost table."""
    out.mkdir(parents=True, exist_ok=True)
    held = json.loads((state / "heldout.json").read_text())
    lines = [f"Held-out set: {len(held['problems'])} problems fixed {held['fixed_at']} "
             f"({sum(p['from'] == 'generated' for p in held['problems'])} generated, the rest KernelBench); "
             f"{held['train']} training problems.", "",
             "| stage | compiles | correct | fast_1 vs eager | fast_1 vs torch.compile | geomean vs eager (timed) | "
             "tokens / answer (of the budget) | training minutes | measured (date, device, commit) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    lines += [table_row(state, *row) for row in ROWS]
    costs = cost_rows(state, steps)
    if costs:
        lines += ["", "| step | minutes | candidates graded | graded per minute | device |", "|---|---:|---:|---:|---|", *costs]
    plots = [name for name in (curves(state, out), sft_loss(state, out)) if name]
    lines += ["", *[f"![{name}]({name})" for name in plots]]
    text = "\n".join(lines) + "\n"
    (out / "recipe.md").write_text(text)
    return text


def curves(state: Path, out: Path) -> str | None:
    """Reward, correct share and geomean speedup per GRPO step, with and without exemplars."""
    runs = {name: state / name for name in ("grpo", "grpo-plain") if (state / name / "profile.json").is_file()}
    if not runs:
        return None
    plt = pyplot()
    figure, axes = plt.subplots(1, 3, figsize=(12, 3.4))
    for name, folder in runs.items():
        steps = json.loads((folder / "profile.json").read_text())["steps"]
        logged = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines() if line.strip()]
        rewards = [(e["step"], e["reward"]) for e in logged if "reward" in e]
        label = "contrastive" if name == "grpo" else "no exemplars"
        if rewards:
            axes[0].plot(*zip(*rewards), marker="o", label=label)
        axes[1].plot([s["step"] for s in steps], [s["correct"] / s["graded"] if s["graded"] else 0 for s in steps],
                     marker="o", label=label)
        timed = [(s["step"], s["geomean_speedup"]) for s in steps if s.get("geomean_speedup") is not None]
        if timed:
            axes[2].plot(*zip(*timed), marker="o", label=label)
    for ax, title in zip(axes, ("mean reward", "correct share of the step's candidates",
                                "geomean speedup vs eager (correct ones)")):
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("GRPO step")
        ax.legend(fontsize=8)
    return save(plt, figure, out / "recipe_curves.png")


def sft_loss(state: Path, out: Path) -> str | None:
    path = state / "sft" / "metrics.jsonl"
    if not path.is_file():
        return None
    logged = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    points = [(e["step"], e["loss"]) for e in logged if "loss" in e]
    if not points:
        return None
    plt = pyplot()
    figure, ax = plt.subplots(figsize=(5.2, 3.4))
    ax.plot(*zip(*points))
    ax.set_xlabel("SFT step")
    ax.set_ylabel("loss")
    return save(plt, figure, out / "recipe_sft_loss.png")


def pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def save(plt, figure, path: Path) -> str:
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path.name
