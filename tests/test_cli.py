"""`kernelpilot eval` as a user runs it: one JSON object with --json, a readable verdict
without, exit 0 whatever the verdict, one-line errors and non-zero codes otherwise."""
import json
import subprocess
import sys

from tests.conftest import CANDIDATES, FIXTURES, PROBLEMS, ROOT

SOFTMAX = str(PROBLEMS / "04_softmax_rows.py")
KEYS = {"status", "flags", "reason", "max_abs_error", "rel_error", "runtime_ms", "eager_ms", "compile_ms",
        "speedup_vs_eager", "speedup_vs_compile", "device", "mode"}


def kernelpilot(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "agent.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)


def test_json_is_exactly_one_object_with_the_contract_keys():
    done = kernelpilot("eval", SOFTMAX, str(CANDIDATES / "04_softmax_rows.py"), "--json", "--cpu")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert KEYS <= set(result)
    assert (result["status"], result["mode"], result["runtime_ms"]) == ("correct", "cpu-interpreter", None)


def test_a_failing_candidate_still_exits_zero_with_its_verdict():
    done = kernelpilot("eval", SOFTMAX, str(FIXTURES / "candidates" / "syntax_error.py"), "--cpu", "--trials", "2")
    assert done.returncode == 0, done.stderr
    assert "compile_error" in done.stdout and "SyntaxError" in done.stdout


def test_readable_verdict_says_why_there_is_no_timing():
    done = kernelpilot("eval", SOFTMAX, str(CANDIDATES / "04_softmax_rows.py"), "--cpu")
    assert done.returncode == 0 and "correct" in done.stdout and "no GPU" in done.stdout


def test_usage_and_problem_errors_are_one_line_with_their_own_codes(tmp_path):
    missing = kernelpilot("eval", SOFTMAX, str(tmp_path / "absent.py"))
    assert missing.returncode == 2 and missing.stderr.strip().count("\n") == 0 and "no such candidate" in missing.stderr
    bad = tmp_path / "bad.py"
    bad.write_text("class Model:\n    pass\n")
    problem = kernelpilot("eval", str(bad), str(CANDIDATES / "04_softmax_rows.py"))
    assert problem.returncode == 3 and "missing get_inputs" in problem.stderr and "Traceback" not in problem.stderr
    usage = kernelpilot("eval", SOFTMAX)
    assert usage.returncode == 2 and "usage:" in usage.stderr


def test_help_explains_the_command():
    done = kernelpilot("eval", "--help")
    assert done.returncode == 0 and "ModelNew" in done.stdout and "--timeout" in done.stdout


def test_eval_records_and_history_reads_it_back(tmp_path):
    db = f"sqlite:///{tmp_path / 'history.db'}"
    honest = kernelpilot("eval", SOFTMAX, str(CANDIDATES / "04_softmax_rows.py"), "--cpu", "--db", db)
    wrong = kernelpilot("eval", SOFTMAX, str(FIXTURES / "wrong" / "04_softmax_rows.py"), "--cpu", "--db", db)
    assert honest.returncode == wrong.returncode == 0
    listed = json.loads(kernelpilot("history", "--db", db, "list", "--json").stdout)
    assert [(r["id"], r["status"], r["policy"]) for r in listed] == [(2, "incorrect", "cli"), (1, "correct", "cli")]
    shown = json.loads(kernelpilot("history", "--db", db, "show", "1", "--json").stdout)
    assert shown[0]["source"] == (CANDIDATES / "04_softmax_rows.py").read_text()
    exported = kernelpilot("history", "--db", db, "export").stdout.splitlines()
    assert [json.loads(line)["id"] for line in exported] == [1, 2]
    best = json.loads(kernelpilot("history", "--db", db, "best", SOFTMAX, "--json").stdout)
    assert best == []   # nothing timed on a CPU, so nothing to rank
    missing = kernelpilot("history", "--db", db, "show", "7")
    assert missing.returncode == 2 and "no evaluation with id 7" in missing.stderr
