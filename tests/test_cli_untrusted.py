"""Candidate text through the real `kernelpilot eval` and `history show` (issue 17, item 6
and the redaction of item 1): a hostile candidate's exception clears the screen, draws a
fake green `correct` line and carries a secret of the trusted process; nothing printed or
stored holds an escape byte or the secret. Its honest twin's multi-line traceback comes
back readable."""
import base64
import json
import os
import re
import sqlite3

from tests.conftest import FIXTURES
from tests.test_cli import SOFTMAX, kernelpilot

HOSTILE = FIXTURES / "hostile"
NAME = "KERNELPILOT_TEST_API_KEY"
SECRET = "sk-test-4f9a2c7e1b8d3f6a0c5e"


def hostile_candidate(tmp_path) -> str:
    """escape_and_secret.py, told the secret's name and (for when /proc is closed) its value,
    with a raw clear-screen byte in a comment, as a source may hold one."""
    source = (HOSTILE / "escape_and_secret.py").read_text()
    source = source.replace('SMUGGLED = ""', f'SMUGGLED = "{base64.b64encode(SECRET.encode()).decode()}"')
    path = tmp_path / "candidate.py"
    path.write_text(source.replace('TARGET = "KERNELPILOT_TEST_API_KEY"', f'TARGET = "{NAME}"')
                    + "# \x1b[2J\x1b[32mcorrect\x1b[0m\n")
    return str(path)


def assert_clean(text: str) -> None:
    assert "\x1b" not in text and "\\u001b" not in text and SECRET not in text
    assert not any(line.lstrip("\x1b[0123456789;HJm").startswith("correct") for line in text.splitlines())


def test_a_hostile_candidates_text_is_shown_and_stored_without_escapes_or_secrets(tmp_path):
    env = os.environ | {NAME: SECRET, "KERNELPILOT_HOME": str(tmp_path / "home")}
    db = tmp_path / "history.db"
    candidate = hostile_candidate(tmp_path)
    shown = kernelpilot("eval", SOFTMAX, candidate, "--cpu", "--trials", "1", "--db", f"sqlite:///{db}", env=env)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith("runtime_error") and f"[redacted {NAME}]" in shown.stdout
    assert_clean(shown.stdout + shown.stderr)
    as_json = kernelpilot("eval", SOFTMAX, candidate, "--cpu", "--trials", "1", "--json", "--db", f"sqlite:///{db}",
                          env=env)
    verdict = json.loads(as_json.stdout)
    assert verdict["status"] == "runtime_error" and f"stolen {NAME}=[redacted {NAME}]" in verdict["log"]
    assert_clean(as_json.stdout + as_json.stderr)
    with sqlite3.connect(db) as connection:
        rows = connection.execute("SELECT * FROM evaluations").fetchall()
    assert len(rows) == 2
    assert_clean(repr(rows))
    history = kernelpilot("history", "--db", f"sqlite:///{db}", "show", "1", env=env)
    assert history.returncode == 0 and "class ModelNew" in history.stdout
    assert_clean(history.stdout + history.stderr)


def test_the_honest_twins_multi_line_traceback_survives_readable(tmp_path):
    env = os.environ | {NAME: SECRET}
    done = kernelpilot("eval", SOFTMAX, str(HOSTILE / "honest_traceback.py"), "--cpu", "--trials", "1", "--json",
                       "--db", f"sqlite:///{tmp_path / 'history.db'}", env=env)
    verdict = json.loads(done.stdout)
    assert verdict["status"] == "runtime_error"
    assert verdict["reason"].endswith("ValueError: rows of 300 columns are not supported:\n\texpected a multiple "
                                      "of 128\n\tsee the kernel's docstring — BLOCK ≥ 128")
    assert verdict["log"] == "loading the kernel table\tdone (µs timings)\n"
    shown = kernelpilot("eval", SOFTMAX, str(HOSTILE / "honest_traceback.py"), "--cpu", "--trials", "1",
                        "--no-record", env=env)
    assert re.search(r"columns are not supported:\n {10}\s+expected a multiple of 128\n {10}\s+see the kernel's "
                     r"docstring — BLOCK ≥ 128\n", shown.stdout)     # each line, indented under the reason
