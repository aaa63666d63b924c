"""`kernelpilot eval` as a user runs it: one JSON object with --json, a readable verdict
without, exit 0 whatever the verdict, one-line errors and non-zero codes otherwise; then
each exit code of agent/cli/__init__.py's list, produced by a real failure."""
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from agent.cli.common import ExitCode
from tests.conftest import CANDIDATES, FIXTURES, PROBLEMS, ROOT, wait_for_candidate_file
from tools.records import PhaseSeconds

SOFTMAX = str(PROBLEMS / "04_softmax_rows.py")
KEYS = {"status", "flags", "reason", "max_abs_error", "rel_error", "runtime_ms", "eager_ms", "compile_ms",
        "speedup_vs_eager", "speedup_vs_compile", "device", "mode"}


def kernelpilot(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "agent.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env=env)


def test_json_is_exactly_one_object_with_the_contract_keys():
    done = kernelpilot("eval", SOFTMAX, str(CANDIDATES / "04_softmax_rows.py"), "--json", "--cpu")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert KEYS <= set(result)
    assert (result["status"], result["mode"], result["runtime_ms"]) == ("correct", "cpu-interpreter", None)
    assert result["phases"]["load"] > 0 and sum(result["phases"][p] for p in PhaseSeconds.PHASES) <= result["seconds"]


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
    assert [(r["id"], r["speedup_vs_eager"]) for r in best] == [(1, None)]   # correct, untimed on a CPU
    said = kernelpilot("history", "--db", db, "best", SOFTMAX).stdout
    assert "no timed kernel" in said and "speed not measured" in said
    narrow = kernelpilot("history", "--db", db, "list", env=os.environ | {"COLUMNS": "80"}).stdout
    assert shown[0]["session"] in narrow and max(len(line) for line in narrow.splitlines()) <= 80
    missing = kernelpilot("history", "--db", db, "show", "7")
    assert missing.returncode == 2 and "no evaluation with id 7" in missing.stderr


def test_history_sessions_lists_what_resume_takes(tmp_path):
    env = os.environ | {"KERNELPILOT_HOME": str(tmp_path / "home")}
    done = kernelpilot("optimize", SOFTMAX, "--cpu", "--max-turns", "1", "--json", "--out", str(tmp_path / "out"),
                       env=env)
    session = json.loads(done.stdout)["session_id"]
    listed = json.loads(kernelpilot("history", "sessions", "--json", env=env).stdout)
    assert [(r["session"], r["problem"], r["turns"], r["stop"]) for r in listed] == \
        [(session, "04_softmax_rows.py", 1, "turn_budget")]
    table = kernelpilot("history", "sessions", env=env | {"COLUMNS": "80"}).stdout
    assert session in table
    empty = kernelpilot("history", "sessions", env=os.environ | {"KERNELPILOT_HOME": str(tmp_path / "other")})
    assert empty.returncode == 0 and "no sessions stored" in empty.stdout


def test_help_version_and_reading_the_store_import_no_heavy_library(tmp_path):
    """agent/cli/main.py imports a command's module only when it is named: --version, --help,
    a command's --help, a mistyped command and `history list` start without torch, Triton or
    LangGraph (each CLI run a test starts would otherwise pay seconds for them)."""
    script = ("import json, sys\nfrom agent.cli.main import main\n"
              "for argv in (['--version'], ['--help'], ['history', '--help'], ['evl'], ['history', 'list']):\n"
              "    try:\n        main(argv)\n    except SystemExit:\n        pass\n"
              "print(json.dumps([m for m in ('torch', 'triton', 'langgraph', 'openai') if m in sys.modules]))\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env=os.environ | {"KERNELPILOT_HOME": str(tmp_path)})
    assert done.returncode == 0, done.stderr[-2000:]
    assert "kernelpilot 0" in done.stdout or "not installed" in done.stdout
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []


# ---- exit codes: each one the package docstring (agent/cli/__init__.py) lists ------------------------------

def home_with_fast_retries(tmp_path: Path) -> dict:
    """An environment whose KERNELPILOT_HOME tells the openai policy to give up within a second."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "config.toml").write_text("[openai]\ntimeout_s = 1.0\nattempts = 2\nbackoff_s = 0.01\n")
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_BASE_URL", "OPENAI_API_KEY", "KERNELPILOT_MODEL")}
    return env | {"KERNELPILOT_HOME": str(home)}


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_the_installed_console_script_runs_the_package():
    script = Path(sys.executable).parent / "kernelpilot"
    done = subprocess.run([script, "history", "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == ExitCode.OK and "export" in done.stdout


def test_usage_errors_exit_2(tmp_path):
    unknown_flag = kernelpilot("optimize", SOFTMAX, "--no-such-flag")
    assert unknown_flag.returncode == ExitCode.USAGE == 2 and "unrecognized arguments" in unknown_flag.stderr
    both = kernelpilot("optimize", SOFTMAX, "--resume", "s-0123", "--db", f"sqlite:///{tmp_path / 'h.db'}")
    assert both.returncode == 2 and both.stderr.count("\n") == 1 and "not both" in both.stderr


def test_a_problem_file_without_a_model_exits_3(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def get_inputs():\n    return []\n")
    done = kernelpilot("history", "--db", f"sqlite:///{tmp_path / 'h.db'}", "best", str(bad))
    assert done.returncode == ExitCode.PROBLEM == 3 and done.stderr.startswith("kernelpilot: bad problem:")


def test_a_home_that_is_a_file_or_a_store_that_cannot_open_exits_4(tmp_path):
    home = tmp_path / "home-is-a-file"
    home.write_text("")
    done = kernelpilot("history", "list", env=os.environ | {"KERNELPILOT_HOME": str(home)})
    assert done.returncode == ExitCode.INFRA == 4 and "infrastructure error" in done.stderr
    assert "Traceback" not in done.stderr
    nowhere = kernelpilot("history", "--db", f"sqlite:///{tmp_path / 'no-such-dir' / 'h.db'}", "list")
    assert nowhere.returncode == 4 and "cannot open the history store" in nowhere.stderr


def test_a_corrupt_store_exits_4(tmp_path):
    corrupt = tmp_path / "corrupt.db"
    corrupt.write_text("not a database\n" * 200)
    done = kernelpilot("history", "--db", f"sqlite:///{corrupt}", "list")
    assert done.returncode == ExitCode.INFRA and "Traceback" not in done.stderr
    assert "cannot open the history store" in done.stderr and "not a database" in done.stderr


def test_an_endpoint_with_nothing_listening_exits_5(tmp_path):
    done = kernelpilot("optimize", SOFTMAX, "--cpu", "--policy", "openai", "--model", "m",
                       "--base-url", f"http://127.0.0.1:{closed_port()}/v1", "--out", str(tmp_path / "out"), "--json",
                       env=home_with_fast_retries(tmp_path))
    assert done.returncode == ExitCode.POLICY == 5, done.stderr
    assert "policy error" in done.stderr and "Traceback" not in done.stderr
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["status"] == "none"   # written out anyway


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, ExitCode.INTERRUPTED), (signal.SIGTERM, ExitCode.TERMINATED)])
def test_a_signal_during_a_hanging_candidate_exits_130_or_143(tmp_path, signum, code):
    script = tmp_path / "hang.json"
    script.write_text(json.dumps({"turns": [{"text": "## Performance analysis\nTrying a variant.", "tool_calls": [
        {"name": "compile", "code_file": str(FIXTURES / "candidates" / "hang_forward.py")}]}]}))
    run = subprocess.Popen([sys.executable, "-m", "agent.cli", "optimize", SOFTMAX, "--cpu", "--policy",
                            f"replay:{script}", "--out", str(tmp_path / "out")],
                           cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_candidate_file(run.pid, "forward_started")     # the hanging candidate is running now
    run.send_signal(signum)
    assert run.wait(timeout=60) == code == 128 + signum
    assert (tmp_path / "out" / "summary.json").exists()      # what the run found is written out on the way
