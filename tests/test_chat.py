"""`kernelpilot chat` driven through a pseudo-terminal, as a person at a keyboard drives it:
a problem, a message that runs tools, Ctrl-C in the middle of a hanging candidate, /best,
/save, /quit, then the session resumed by its id in a new process."""
import json
import os
import pty
import re
import select
import sys
import time

from tests.conftest import CANDIDATES, FIXTURES, PROBLEMS, ROOT

PROMPT = b"you> "


class Terminal:
    def __init__(self, *args: str):
        # pty.fork makes the terminal the child's controlling terminal, so Ctrl-C becomes SIGINT.
        self.pid, self.master = pty.fork()
        if self.pid == 0:
            os.chdir(ROOT)
            os.execv(sys.executable, [sys.executable, "-m", "agent.cli", "chat", *args])
        self.seen = b""

    def expect(self, pattern: bytes, timeout: float = 120) -> bytes:
        """Read until `pattern` appears after what earlier expects consumed; what came before it."""
        deadline = time.monotonic() + timeout
        while pattern not in self.seen:
            ready, _, _ = select.select([self.master], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                raise AssertionError(f"no {pattern!r} within {timeout}s; the terminal shows:\n{self.seen.decode(errors='replace')[-3000:]}")
            self.seen += os.read(self.master, 65536)
        before, _, self.seen = self.seen.partition(pattern)
        return before

    def send(self, text: str) -> None:
        os.write(self.master, text.encode())

    def close(self) -> int:
        deadline = time.monotonic() + 60
        while (done := os.waitpid(self.pid, os.WNOHANG))[0] == 0 and time.monotonic() < deadline:
            self.drain()
            time.sleep(0.1)
        os.close(self.master)
        return os.waitstatus_to_exitcode(done[1]) if done[0] else -1

    def drain(self) -> None:
        try:
            while select.select([self.master], [], [], 0)[0]:
                self.seen += os.read(self.master, 65536)
        except OSError:         # the child closed the terminal
            pass


def test_a_chat_with_ctrl_c_then_resumed(tmp_path):
    script = tmp_path / "chat.json"
    script.write_text(json.dumps({"turns": [
        {"text": "## Performance analysis\nSoftmax reads x once and writes it once: memory-bound."},
        {"text": "## Performance analysis\nMeasuring a row kernel.",
         "tool_calls": [{"name": "benchmark", "code_file": str(CANDIDATES / "04_softmax_rows.py")}]},
        {"text": "## Performance analysis\nTrying a variant.",
         "tool_calls": [{"name": "compile", "code_file": str(FIXTURES / "candidates" / "hang_forward.py")}]},
        {"text": "## Performance analysis\nThe row kernel stays the best. Over to you."}]}))
    term = Terminal("--policy", f"replay:{script}", "--cpu", "--turns", "1")
    term.expect(b"/problem FILE to begin")
    term.send(f"/problem {PROBLEMS / '04_softmax_rows.py'}\n")
    session = re.search(rb"session (s-[0-9a-f]+)", term.expect(b"memory-bound")).group(1).decode()
    term.expect(PROMPT)
    term.send("please make it faster\n")
    assert b"benchmark: correct" in term.expect(PROMPT)
    term.send("try another\n")
    term.expect(b"compile")
    time.sleep(2)                             # the hanging candidate is running now
    term.send("\x03")
    assert b"interrupted" in term.expect(PROMPT, timeout=60)
    saved = tmp_path / "best.py"
    term.send(f"/best\n/save {saved}\n/quit\n")
    assert b"best: turn 2 (benchmark), correct" in term.expect(b"saved the best kernel")
    assert term.close() == 0
    assert saved.read_text() == (CANDIDATES / "04_softmax_rows.py").read_text()

    again = Terminal("--resume", session, "--cpu", "--turns", "1")
    term_output = again.expect(PROMPT)
    assert session.encode() in term_output
    again.send("what now?\n")
    assert b"stays the best" in again.expect(PROMPT)
    again.send("/quit\n")
    assert again.close() == 0


def test_a_chat_opened_on_a_file_converses(tmp_path):
    """`chat FILE` starts as `/problem FILE` does (the problem's first turn first), so the
    first message and /optimize find the problem in the session (they ended in KeyError
    'backend' when the first input came from the user's message)."""
    script = tmp_path / "chat.json"
    script.write_text(json.dumps({"turns": [
        {"text": "## Performance analysis\nGELU is elementwise: memory-bound."},
        {"text": "## Performance analysis\nOne pass over x is all it needs."},
        {"text": "## Performance analysis\nMeasuring one kernel.",
         "tool_calls": [{"name": "compile", "code_file": str(CANDIDATES / "04_softmax_rows.py")}]}]}))
    term = Terminal(str(PROBLEMS / "02_gelu_tanh.py"), "--policy", f"replay:{script}", "--cpu", "--turns", "1")
    assert b"memory-bound" in term.expect(PROMPT)
    term.send("why is it slow?\n")
    assert b"One pass over x" in term.expect(PROMPT)
    term.send("/optimize 1\n")
    assert b"compile" in term.expect(PROMPT)
    term.send("/quit\n")
    assert term.close() == 0
    assert b"Traceback" not in term.seen
