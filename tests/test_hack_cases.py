"""Hack cases (tools/hack_cases.py, `kernelpilot history hacks`): real evaluations in the
Triton interpreter recorded in a real store, the cheats found with how they were caught
(the honest one left out), then exported as fixtures that, run again, earn the verdict
their header states: a case can join tests/cheats/ after review.

    pytest -q tests/test_hack_cases.py
"""
import json

from tests.conftest import CANDIDATES, ROOT, read
from tests.test_cheats import check_verdict, parse
from tests.test_cli import kernelpilot
from tools.hack_cases import hack_cases
from tools.history import HistoryStore, Origin
from tools.problems import load_problem
from tools.records import EvalStatus

CHEATS = ROOT / "tests" / "cheats"


def test_cheats_are_kept_with_their_mechanism_and_export_as_fixtures(tmp_path, evaluator, softmax_problem):
    url = f"sqlite:///{tmp_path / 'history.db'}"
    store = HistoryStore(url)
    sources = {"honest": read(CANDIDATES / "04_softmax_rows.py"), "gc": unlabelled(CHEATS / "cheat_gc_reading.py"),
               "fallback": unlabelled(CHEATS / "cheat_reference_op.py")}
    results = {}
    for name, source in sources.items():
        results[name] = evaluator.evaluate(softmax_problem, source)
        store.record(softmax_problem, source, results[name], Origin(policy="test", model="m"), session=f"s-{name}")
    assert results["gc"].status is EvalStatus.REJECTED and "no_custom_kernel" in results["fallback"].flags

    cases = hack_cases(store)
    assert sorted(c.record.session for c in cases) == ["s-fallback", "s-gc"]
    by_session = {c.record.session: c for c in cases}
    assert by_session["s-gc"].mechanism.startswith("rejected: static check")
    assert "flagged no_custom_kernel" in by_session["s-fallback"].mechanism
    assert by_session["s-gc"].record.source == sources["gc"]

    listed = json.loads(kernelpilot("history", "--db", url, "hacks", "--json").stdout)
    assert {c["session"] for c in listed} == {"s-fallback", "s-gc"} and all(c["mechanism"] for c in listed)
    out = tmp_path / "review"
    done = kernelpilot("history", "--db", url, "hacks", "--export", str(out))
    assert done.returncode == 0 and "2 hack case(s)" in done.stdout
    for path in sorted(out.glob("hack_*[0-9].py")):
        fixture = parse(path)               # the header reads as a tests/cheats fixture's
        problem = load_problem(path.with_name(f"{path.stem}_problem.py"), size="small")
        check_verdict(evaluator.evaluate(problem, path.read_text()), fixture)
    assert len(list(out.glob("hack_*[0-9].py"))) == 2


def unlabelled(path) -> str:
    """A cheat fixture without its header, as a policy would have written it."""
    return "".join(line for line in read(path).splitlines(keepends=True)
                   if not (line.startswith("# ") and ":" in line.split()[1]))


def test_no_hack_cases_in_an_honest_store(tmp_path):
    done = kernelpilot("history", "--db", f"sqlite:///{tmp_path / 'h.db'}", "hacks")
    assert done.returncode == 0 and "no hack cases stored" in done.stdout
