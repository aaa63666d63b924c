"""Failures of our own side through the real CLI (issue 17, item 10): a full disk, a home
that cannot be written, a corrupt history.db or sessions.db, an unknown database URL.
Each is exit 4 with one line on stderr naming the file and the cause, never a traceback;
`eval` still prints a verdict it computed when only recording it fails.

Tests run as root here, so permissions cannot make a folder unwritable: a read-only or a
small tmpfs is mounted instead (skipped where this process may not mount)."""
import json
import os
import subprocess
from pathlib import Path

import pytest

from agent.cli.common import ExitCode
from tests.conftest import CANDIDATES
from tests.test_cli import SOFTMAX, kernelpilot
from tools.history import HistoryStore

HONEST = str(CANDIDATES / "04_softmax_rows.py")


@pytest.fixture
def mount(tmp_path):
    """mount(name, options) -> a tmpfs folder with those options, unmounted afterwards."""
    mounted = []

    def make(name: str, options: str) -> Path:
        folder = tmp_path / name
        folder.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True)
        if done.returncode:
            pytest.skip(f"cannot mount a tmpfs here ({done.stderr.decode().strip()}): needs root")
        mounted.append(folder)
        return folder

    yield make
    for folder in mounted:
        subprocess.run(["umount", str(folder)], check=True)


def fill(folder: Path, leave: int) -> None:
    """Fill `folder`'s filesystem, then free `leave` bytes."""
    filler = folder / "filler"
    with open(filler, "wb", buffering=0) as handle:
        try:
            while True:
                handle.write(b"\0" * 4096)
        except OSError:
            pass
    os.truncate(filler, max(filler.stat().st_size - leave, 0))


def one_line_error(done: subprocess.CompletedProcess, *words: str) -> str:
    assert done.returncode == ExitCode.INFRA == 4, done.stderr
    assert "Traceback" not in done.stderr and done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith("kernelpilot: infrastructure error:")
    assert all(word in done.stderr for word in words), done.stderr
    return done.stderr


def with_home(home: Path) -> dict:
    return os.environ | {"KERNELPILOT_HOME": str(home)}


def test_a_read_only_home_is_one_line_naming_it(mount):
    home = mount("home", "ro,size=64k")
    for command in (["eval", SOFTMAX, HONEST, "--cpu"], ["optimize", SOFTMAX, "--cpu"], ["history", "list"]):
        one_line_error(kernelpilot(*command, env=with_home(home)), str(home), "Read-only file system")


def test_a_corrupt_history_db_is_one_line_and_costs_no_evaluation(tmp_path):
    (tmp_path / "history.db").write_bytes(bytes(range(256)) * 64)
    for command in (["eval", SOFTMAX, HONEST, "--cpu"], ["history", "list"], ["optimize", SOFTMAX, "--cpu"]):
        done = kernelpilot(*command, env=with_home(tmp_path))
        one_line_error(done, str(tmp_path / "history.db"), "file is not a database")
        assert done.stdout == "" or command[0] == "optimize"


def test_a_corrupt_sessions_db_on_resume_is_one_line(tmp_path):
    (tmp_path / "sessions.db").write_bytes(b"garbage, not SQLite\n" * 400)
    done = kernelpilot("optimize", "--resume", "s-0123456789", "--cpu", env=with_home(tmp_path))
    one_line_error(done, str(tmp_path / "sessions.db"), "file is not a database")


def test_an_unknown_url_scheme_is_one_line_without_the_password(tmp_path):
    for command in (["history", "--db", "foo://kp:hunter2-secret@x/y", "list"],
                    ["eval", SOFTMAX, HONEST, "--cpu", "--db", "foo://kp:hunter2-secret@x/y"],
                    ["optimize", SOFTMAX, "--cpu", "--db", "foo://kp:hunter2-secret@x/y"]):
        line = one_line_error(kernelpilot(*command, env=with_home(tmp_path)), "foo://kp:***@x/y",
                              "unknown database URL scheme 'foo'")
        assert "hunter2" not in line


def test_eval_prints_its_verdict_when_the_disk_fills_before_it_is_recorded(tmp_path, mount):
    folder = mount("store", "size=1m")
    url = f"sqlite:///{folder / 'history.db'}"
    HistoryStore(url).engine.dispose()          # the schema is in place; the disk fills after
    fill(folder, leave=48 * 1024)               # room to open it (its WAL index), not to record
    done = kernelpilot("eval", SOFTMAX, HONEST, "--cpu", "--trials", "1", "--json", "--db", url,
                       env=with_home(tmp_path))
    assert json.loads(done.stdout)["status"] == "correct"              # the verdict, on stdout all the same
    one_line_error(done, "the verdict was not recorded", str(folder / "history.db"), "disk is full")


def test_a_disk_that_fills_during_optimize_is_one_line(tmp_path, mount):
    home = mount("home", "size=320k")
    done = kernelpilot("optimize", SOFTMAX, "--cpu", "--max-turns", "3", "--out", str(tmp_path / "out"),
                       env=with_home(home))
    assert "session s-" in done.stdout                                  # it was running when the disk filled
    line = one_line_error(done)
    assert ("history.db" in line or "sessions.db" in line) and "full" in line
