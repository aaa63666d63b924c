"""An A/B of the built-in policy's plans on one machine: each problem's first candidate (its plan's
default configuration) and the same with named configuration changes, every candidate evaluated
by its own `kernelpilot eval` in this one run, so the variants share the machine, its clocks and
the problem's cached baselines. What a plan change bought is then read off one table, not off
two leases on two machines.

    python -m benchmarks.variants ~/KernelBench/level1 --only '23_*,40_*' --variant row_split=0 --out ab.json
    python -m benchmarks.variants benchmarks/problems --only '04_*' --variant row_block=1024 --cpu  # a dry run

A variant is comma-separated `field=value` changes to `agent.builtin.plans.common.Config` (ints,
true/false); the default configuration is always the first row. Rows print as they finish;
`--out FILE` is rewritten with every row so far (JSON). Nothing here is a test: it measures.
"""
import argparse
import dataclasses
import fnmatch
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from agent.builtin.plans.common import Config
from benchmarks.builds import first_source
from tools.files import write_atomic
from tools.problems import load_problem

FIELDS = {f.name: f.type for f in dataclasses.fields(Config)}
KEPT = ("status", "runtime_ms", "eager_ms", "compile_ms", "speedup_vs_eager", "speedup_vs_compile", "device", "reason")


def changes(text: str) -> dict:
    """'row_split=0,row_warps=8' -> {'row_split': 0, 'row_warps': 8}; a one-line error otherwise."""
    found = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or key not in FIELDS:
            raise SystemExit(f"error: '{item}' is not FIELD=VALUE with FIELD one of {', '.join(FIELDS)}")
        if value.lower() in ("true", "false"):
            found[key] = value.lower() == "true"
        elif value.lstrip("-").isdigit():
            found[key] = int(value)
        else:
            raise SystemExit(f"error: '{item}': the value must be an integer or true/false")
    return found


def candidate(path: Path, variant: dict, folder: Path) -> tuple[Path | None, str]:
    """The variant's source written to `folder`, and its configuration's text; (None, why) when
    the problem has no plan."""
    built = first_source(load_problem(path), **variant)
    if isinstance(built, str):
        return None, built
    source, config = built
    tag = "_".join(f"{k}{v}" for k, v in variant.items()) or "default"
    file = folder / f"{path.stem}__{tag}.py"
    file.write_text(source)
    return file, ", ".join(f"{k}={getattr(config, k)}" for k in FIELDS if getattr(config, k) != getattr(Config(), k))


def evaluate(problem: Path, source: Path, cpu: bool, timeout: int) -> dict:
    command = [sys.executable, "-m", "agent.cli", "eval", str(problem), str(source), "--json", "--no-record"]
    done = subprocess.run(command + (["--cpu"] if cpu else []), capture_output=True, text=True, timeout=timeout)
    try:
        return json.loads(done.stdout)
    except json.JSONDecodeError:
        return {"status": f"eval exited {done.returncode}", "reason": (done.stderr or done.stdout)[-300:]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="a folder of problem files (e.g. KernelBench/level1)")
    parser.add_argument("--only", default="*", help="comma-separated globs over file names")
    parser.add_argument("--variant", action="append", default=[], help="FIELD=VALUE[,FIELD=VALUE...] (repeatable)")
    parser.add_argument("--cpu", action="store_true", help="evaluate in Triton's interpreter (no timings)")
    parser.add_argument("--timeout", type=int, default=600, help="seconds for one evaluation (default 600)")
    parser.add_argument("--out", type=Path, help="JSON file of the rows, rewritten as each finishes")
    args = parser.parse_args()
    if not args.folder.is_dir():
        print(f"error: {args.folder} is not a folder", file=sys.stderr)
        return 2
    variants = [{}] + [changes(v) for v in args.variant]
    globs = [g.strip() for g in args.only.split(",") if g.strip()]
    paths = sorted(p for p in args.folder.glob("*.py") if any(fnmatch.fnmatch(p.name, g) for g in globs))
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for path in paths:
            for variant in variants:
                file, config = candidate(path, variant, Path(scratch))
                result = evaluate(path, file, args.cpu, args.timeout) if file else {"status": "no plan",
                                                                                     "reason": config}
                row = {"problem": path.stem, "variant": variant, "config": config if file else "",
                       **{k: result.get(k) for k in KEPT}}
                rows.append(row)
                print(f"{path.stem} {variant or 'default'}: {row['status']}, {row['runtime_ms']} ms, "
                      f"{row['speedup_vs_eager']} x eager, {row['speedup_vs_compile']} x compile "
                      f"[{config}]" + (f" ({str(row['reason'])[:160]})" if row["reason"] else ""), flush=True)
                if args.out:
                    write_atomic(args.out, json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
