"""`kernelpilot history`: read the speedup-history store.

    kernelpilot history list [--limit N] [--json]
    kernelpilot history show ID [--json]
    kernelpilot history best PROBLEM.py [--k N] [--json]
    kernelpilot history export            # JSON lines, sources included
    kernelpilot history hacks [--limit N] [--json] [--export DIR]
"""
import json
from pathlib import Path

from rich.console import Console
from rich.table import Table
from rich.text import Text

from agent.cli.common import ExitCode, UsageError, indented
from tools.hack_cases import export, hack_cases
from tools.history import EvaluationRecord, HistoryStore
from tools.problems import load_problem
from tools.safe_text import clean


def add_history_parser(commands) -> None:
    history = commands.add_parser("history", help="read the speedup-history store",
                                  description="Read the speedup-history store: every evaluation kernelpilot ran. "
                                              "SQLite under $KERNELPILOT_HOME unless --db or KERNELPILOT_DB_URL "
                                              "names another database (any SQLAlchemy URL).")
    history.add_argument("--db", metavar="URL", help="SQLAlchemy URL of the store")
    verbs = history.add_subparsers(dest="verb", required=True, metavar="VERB")
    listing = verbs.add_parser("list", help="the latest evaluations")
    listing.add_argument("--limit", type=int, default=20)
    show = verbs.add_parser("show", help="one evaluation in full, with its candidate's source")
    show.add_argument("id", type=int)
    best = verbs.add_parser("best", help="the fastest correct kernels for a problem")
    best.add_argument("problem", type=Path, help="the problem file (identified by its source hash)")
    best.add_argument("--k", type=int, default=5)
    verbs.add_parser("export", help="every evaluation as JSON lines on stdout, sources included")
    hacks = verbs.add_parser("hacks", help="hack cases: rejected candidates and those flagged for what they did "
                             "(timing_mismatch, no_custom_kernel, precision_policy, excessive_speedup)",
                             description="Hack cases: stored evaluations whose candidate was rejected or flagged for "
                                         "its own doing, with how it was caught. --export DIR writes each as a cheat "
                                         "fixture in the shape of tests/cheats/ (and its problem beside it) for "
                                         "review.")
    hacks.add_argument("--limit", type=int, default=20, help="newest N (default 20)")
    hacks.add_argument("--export", type=Path, metavar="DIR", help="write each case as DIR/hack_*.py for review")
    for verb in (listing, show, best, hacks):
        verb.add_argument("--json", action="store_true", help="print JSON instead of a table")


def run_history(args) -> ExitCode:
    store = HistoryStore(args.db)
    if args.verb == "export":
        for record in reversed(store.records(with_source=True)):
            print(record.model_dump_json())
        return ExitCode.OK
    if args.verb == "hacks":
        return _hacks(store, args)
    if args.verb == "show":
        found = store.records(ids=[args.id], with_source=True)
        if not found:
            raise UsageError(f"no evaluation with id {args.id}")
        return _print(found, args.json, full=True)
    if args.verb == "best":
        problem = load_problem(args.problem)
        records = sorted(store.records(ids=[entry.id for entry in store.best(problem.hash, args.k)]),
                         key=lambda r: r.speedup_vs_eager, reverse=True)
        return _print(records, args.json)
    return _print(store.records(limit=args.limit), args.json)


def _print(records: list[EvaluationRecord], as_json: bool, full: bool = False) -> ExitCode:
    if as_json:
        print(json.dumps([r.model_dump(mode="json") for r in records]))
        return ExitCode.OK
    # Stored text is printed cleaned (tools/safe_text.py): a candidate's source may hold escape
    # bytes, and a row written by an older kernelpilot may hold a raw reason. JSON escapes them itself.
    out = Console(soft_wrap=True)
    if full:
        record = records[0]
        for key, value in record.model_dump(mode="json", exclude={"source"}).items():
            out.print(f"{key}: {indented(str(value), 2)}", markup=False)
        out.print("source:", markup=False)
        out.print(clean(record.source), markup=False, highlight=False)
        return ExitCode.OK
    table = Table("id", "problem", "status", "vs eager", "vs compile", "policy", "session", "created")
    for r in records:
        table.add_row(*(Text(clean(text)) for text in (str(r.id), r.problem, r.status.value, _x(r.speedup_vs_eager),
                                                 _x(r.speedup_vs_compile), r.policy or "-", r.session,
                                                 r.created)))
    out.print(table if records else "no evaluations stored")
    return ExitCode.OK


def _hacks(store: HistoryStore, args) -> ExitCode:
    cases = hack_cases(store, args.limit)
    if args.export:
        written = export(store, cases, args.export)
        print(f"{len(written)} hack case(s) written to {args.export}")
    elif args.json:
        print(json.dumps([{**c.record.model_dump(mode="json"), "mechanism": c.mechanism} for c in cases]))
    else:
        table = Table("id", "problem", "status", "caught", "policy", "session")
        for c in cases:
            table.add_row(*(Text(clean(text)) for text in (str(c.record.id), c.record.problem, c.record.status.value,
                                                           c.mechanism[:100], c.record.policy or "-", c.record.session)))
        Console(soft_wrap=True).print(table if cases else "no hack cases stored")
    return ExitCode.OK


def _x(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"
