"""`kernelpilot history`: read the speedup-history store.

    kernelpilot history list [--limit N] [--json]
    kernelpilot history show ID [--json]
    kernelpilot history best PROBLEM.py [--k N] [--json]
    kernelpilot history export            # JSON lines, sources included
    kernelpilot history hacks [--limit N] [--json] [--export DIR]
    kernelpilot history sessions [--limit N] [--json]
"""
import argparse
import json
from pathlib import Path

from rich.console import Console
from rich.table import Table
from rich.text import Text

from agent.cli.common import ExitCode, UsageError, indented
from tools.hack_cases import export, hack_cases
from tools.history import EvaluationRecord, HistoryStore
from tools.records import EvalStatus
from tools.safe_text import clean
from tools.trust import Use, allowed


def add_arguments(history: argparse.ArgumentParser) -> None:
    history.description = ("Read the speedup-history store: every evaluation kernelpilot ran. "
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
                             "(timing_mismatch, no_custom_kernel, precision_policy, excessive_speedup, "
                             "size_specialised)",
                             description="Hack cases: stored evaluations whose candidate was rejected or flagged for "
                                         "its own doing, with how it was caught. --export DIR writes each as a cheat "
                                         "fixture in the shape of tests/cheats/ (and its problem beside it) for "
                                         "review.")
    hacks.add_argument("--limit", type=int, default=20, help="newest N (default 20)")
    hacks.add_argument("--export", type=Path, metavar="DIR", help="write each case as DIR/hack_*.py for review")
    sessions = verbs.add_parser("sessions", help="agent sessions to go on with (`optimize --resume ID`, `chat "
                                "--resume ID`), newest first",
                                description="The agent sessions in $KERNELPILOT_HOME/sessions.db, newest first: "
                                            "problem, mode, turns, policy and where each stopped (or that it was "
                                            "cut mid-run).")
    sessions.add_argument("--limit", type=int, default=20, help="newest N (default 20)")
    for verb in (listing, show, best, hacks, sessions):
        verb.add_argument("--json", action="store_true", help="print JSON instead of a table")


def run(args) -> ExitCode:
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
        from tools.problems import load_problem     # torch: loading a problem runs it; the other verbs need none
        return _best(store, load_problem(args.problem), args)
    if args.verb == "sessions":
        return _sessions(args)
    return _print(store.records(limit=args.limit), args.json)


def _best(store: HistoryStore, problem, args) -> ExitCode:
    """The fastest correct kernels the trust rules allow for best; where none was timed (no
    GPU), the newest correct ones, said to be untimed."""
    timed = [e for e in store.best(problem.hash, None) if allowed(e, Use.BEST)][:args.k]
    untimed = [] if timed else [e for e in reversed(store.entries(problem.hash))
                                if e.status is EvalStatus.CORRECT and e.speedup_vs_eager is None][:args.k]
    records = store.records(ids=[e.id for e in timed or untimed])
    if timed:
        records.sort(key=lambda r: r.speedup_vs_eager, reverse=True)
    if untimed and not args.json:
        Console(soft_wrap=True).print(f"{problem.name}: no timed kernel; the newest correct ones (checked, speed not measured: "
                        "no GPU ran them):", markup=False)
    if not records and not args.json:
        Console(soft_wrap=True).print(f"{problem.name}: no correct kernel stored", markup=False)
        return ExitCode.OK
    return _print(records, args.json)


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
    table = Table("id", "problem", "status", "vs eager", "vs compile", "policy", "created")
    table.add_column("session", no_wrap=True, min_width=12)    # whole, for --resume, even at 80 columns
    for r in records:
        table.add_row(*(Text(clean(text)) for text in (str(r.id), r.problem, r.status.value, _x(r.speedup_vs_eager),
                                                 _x(r.speedup_vs_compile), r.policy or "-", r.created,
                                                 r.session)))
    out.print(table if records else "no evaluations stored")
    return ExitCode.OK


def _sessions(args) -> ExitCode:
    from agent.graph import build_graph         # LangGraph and the agent, for this verb alone
    from agent.runtime import checkpoints
    with checkpoints() as saver:
        graph = build_graph(saver)
        ids = [row[0] for row in saver.conn.execute(
            "SELECT thread_id FROM checkpoints WHERE checkpoint_ns = '' GROUP BY thread_id "
            "ORDER BY MAX(checkpoint_id) DESC LIMIT ?", (args.limit,))]
        found = [session_row(graph, thread) for thread in ids]
    if args.json:
        print(json.dumps(found))
        return ExitCode.OK
    table = Table("problem", "mode", "turns", "policy", "stop")
    table.add_column("session", no_wrap=True, min_width=12)
    for row in found:
        table.add_row(*(Text(clean(str(row[key]))) for key in ("problem", "mode", "turns", "policy", "stop", "session")))
    Console(soft_wrap=True).print(table if found else "no sessions stored")
    return ExitCode.OK


def session_row(graph, thread: str) -> dict:
    snapshot = graph.get_state({"configurable": {"thread_id": thread}})
    state = snapshot.values
    return {"session": thread, "problem": Path(state.get("problem_path", "?")).name, "mode": state.get("mode", "?"),
            "turns": state.get("turns", 0), "policy": state.get("policy", {}).get("kind", "?"),
            "stop": state.get("stop") or ("cut mid-run" if snapshot.tasks else "-")}


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
