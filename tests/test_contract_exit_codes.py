"""The exit-code contract (agent/cli/common.py ExitCode, listed in agent/cli/__init__.py):
each failure of our own side — the sandbox cannot start, the disk refuses the outputs — is
exit 4 (INFRA) with one line on stderr, never a traceback's exit 1. Each code comes from a
real failure through `python -m agent.cli`; the store and checkpoint failures are in
tests/test_cli_store_failures.py, the other codes in tests/test_cli.py."""
import json
import os
import re

from agent.cli import __doc__ as CLI_DOC
from agent.cli.common import ExitCode
from tests.conftest import CANDIDATES
from tests.test_cli import SOFTMAX, kernelpilot

HONEST = str(CANDIDATES / "04_softmax_rows.py")


def no_daemon(tmp_path) -> dict:
    """A Docker endpoint with nothing behind it, whatever this machine runs."""
    return os.environ | {"DOCKER_HOST": f"unix://{tmp_path / 'no-docker.sock'}"}


def assert_infra(done, *words: str) -> None:
    assert done.returncode == 4, (done.returncode, done.stderr[-2000:])
    assert done.stderr.startswith("kernelpilot: infrastructure error:") and done.stderr.count("\n") == 1, done.stderr
    assert "Traceback" not in done.stderr and all(word in done.stderr for word in words), done.stderr


def test_the_codes_are_the_documented_ones():
    documented = {name: int(code) for code, name in re.findall(r"^\s+(\d+)\s+([A-Z]+)\s", CLI_DOC, re.MULTILINE)}
    assert documented == {member.name: member.value for member in ExitCode}
    assert (ExitCode.OK, ExitCode.USAGE, ExitCode.PROBLEM, ExitCode.INFRA, ExitCode.POLICY) == (0, 2, 3, 4, 5)


def test_a_sandbox_that_cannot_start_exits_4_from_eval(tmp_path):
    done = kernelpilot("eval", SOFTMAX, HONEST, "--sandbox", "docker", env=no_daemon(tmp_path))
    assert_infra(done, "no Docker daemon reachable", str(tmp_path / "no-docker.sock"))
    assert done.stdout == ""


def test_a_sandbox_that_cannot_start_exits_4_from_optimize_and_sandbox_check(tmp_path):
    for command in (["optimize", SOFTMAX, "--sandbox", "docker", "--out", str(tmp_path / "out")],
                    ["sandbox", "check"]):
        done = kernelpilot(*command, env=no_daemon(tmp_path))
        assert_infra(done, "no Docker daemon reachable")
        # `sandbox check` does not send its user to `sandbox check` (issue 23 item 8)
        assert ("`kernelpilot sandbox check`" in done.stderr) is (command[0] == "optimize"), done.stderr


def test_outputs_that_cannot_be_written_exit_4(tmp_path):
    script = tmp_path / "script.json"
    script.write_text(json.dumps({"turns": [{"text": "## Performance analysis\nNothing to try."}]}))
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    done = kernelpilot("optimize", SOFTMAX, "--cpu", "--policy", f"replay:{script}", "--db",
                       f"sqlite:///{tmp_path / 'h.db'}", "--out", str(blocker / "out"))
    assert done.returncode == 4, done.stderr[-2000:]
    assert done.stderr.startswith("kernelpilot: infrastructure error:") and "Not a directory" in done.stderr
    assert "Traceback" not in done.stderr
