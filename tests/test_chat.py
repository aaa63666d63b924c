"""`kernelpilot chat` driven through a pseudo-terminal, as a person at a keyboard drives it:
a problem, a message that runs tools, Ctrl-C in the middle of a hanging candidate, /best,
/save, /quit, then the session resumed by its id in a new process. And a chat session cut by
`kill -9` between a graph step's writes and its checkpoint, resumed and spoken to (the `Chat`
class driven with a `read` function, the policy behind the scripted HTTP endpoint)."""
import io
import json
import os
import pty
import re
import select
import sys
import time
from dataclasses import replace

import pytest
from rich.console import Console

from agent.builtin import BuiltinPolicy
from agent.builtin.plans.common import Config
from agent.builtin.policy import make_plan
from agent.cli.chat import Chat, wrap_problem
from agent.graph import Budget, RunMode, build_graph, session_config, tool_message
from agent.policies import PolicyKind, PolicySpec
from agent.runtime import checkpoints
from agent.session import SessionOptions
from tests.conftest import CANDIDATES, FIXTURES, PROBLEMS, ROOT, read, wait_for_candidate_file
from tests.openai_server import ChatServer, call, reply
from tests.test_bench import drop_newest_checkpoint, stored
from tools.home import kernelpilot_home
from tools.problems import load_problem
from tools.records import EvalStatus

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
    wait_for_candidate_file(term.pid, "forward_started")     # the hanging candidate is running now
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
    term.expect(b"starting the sandbox")    # said before the seconds the start takes, not after
    assert b"memory-bound" in term.expect(PROMPT)
    term.send("why is it slow?\n")
    assert b"One pass over x" in term.expect(PROMPT)
    term.send("/optimize 1\n")
    assert b"compile" in term.expect(PROMPT)
    term.send("/quit\n")
    assert term.close() == 0
    assert b"Traceback" not in term.seen


# ---- a kill between the two commits of a graph step --------------------------------------------

def chat_killed_after(steps: int, options: SessionOptions) -> tuple[str, dict]:
    """A chat session opened as `/problem` opens one, `steps` graph steps run, then cut between
    the last step's writes and its checkpoint (tests/test_bench.py does the same to a bench
    run); its id and its saved state as `get_state` shows it (the cut step's writes applied)."""
    chat = Chat(options, Console(file=io.StringIO()))
    try:
        chat.open(options)
        session, state_input = chat.session, chat.session.start_state()
        for _ in range(steps):
            for _ in session.graph.stream(state_input, session.config, context=session.context,
                                          interrupt_before=["policy_turn", "run_tools"]):
                pass
            state_input = None
        drop_newest_checkpoint(kernelpilot_home() / "sessions.db", session.id)
        return session.id, session.state()
    finally:
        chat.stack.close()


def typed(*lines: str):
    """A `read` for `Chat.loop`: these lines, then Ctrl-D."""
    left = list(lines)

    def read(prompt: str) -> str:
        if not left:
            raise EOFError
        return left.pop(0)
    return read


def conversation(messages: list[dict]) -> list[tuple]:
    return [(m["role"], m.get("content"), m.get("tool_call_id"), [c["id"] for c in m.get("tool_calls", [])])
            for m in messages]


@pytest.mark.parametrize("steps", [1, 2, 3, 4],
                         ids=["after-the-input", "after-a-policy-turn", "after-a-tool-run", "after-the-last-turn"])
def test_a_chat_cut_between_a_steps_writes_and_its_checkpoint_resumes_with_them(steps):
    """`chat --resume ID` keeps what the cut step saved, answers a cut turn's tool calls
    "interrupted by the user" without running them, and the next message goes on from there:
    each policy turn asked once, no evaluation run twice. The resume used to see no next node
    there and feed the user's message to the graph as new input, which drops those writes: cut
    after the input (the session's whole initial state) KeyError 'backend', after a policy turn
    that turn lost, after a tool run its answers lost (the endpoint refuses the conversation)."""
    name = "02_gelu_tanh"
    analysis = f"## Performance analysis\n{name}: one pass, memory-bound.\n"
    script = [reply(analysis, call("check_correctness", {"code": (CANDIDATES / f"{name}.py").read_text()})),
              reply(analysis + "Checked. Over to you.")]
    with ChatServer(script) as server:
        options = SessionOptions(problem=PROBLEMS / f"{name}.py", mode=RunMode.CHAT, budget=Budget(patience=None),
                                 policy=PolicySpec(PolicyKind.OPENAI, model="test-model", base_url=server.url),
                                 force_cpu=True)
        session, saved = chat_killed_after(steps, options)
        shown = io.StringIO()
        chat = Chat(replace(options, problem=None, session_id=session), Console(file=shown, width=200),
                    turns_per_message=1)
        chat.loop(read=typed("what now?"))
    output = shown.getvalue()
    assert not re.search(r"^error: ", output, re.MULTILINE), output
    cut_calls = [tool_message(c["id"], "interrupted by the user") for c in saved["pending"]]
    assert conversation(server.requests[-1]["messages"]) == conversation(
        saved["messages"] + cut_calls + [{"role": "user", "content": "what now?"}])
    assert len(server.requests) == saved["turns"] + 1           # each policy turn asked once
    assert ("interrupted: the turn was stopped" in output) == (steps < 4)     # a cut turn: control back to the user
    with checkpoints() as saver:
        final = build_graph(saver).get_state(session_config(session, options.budget)).values
    assert final["attempts"][:len(saved["attempts"])] == saved["attempts"]
    assert stored(kernelpilot_home(), [session]) == len(final["attempts"])     # none run twice, none dropped


# ---- the function and class modes of /problem FILE NAME, through the loader and the evaluator --------

USER_FILE = """import torch
import torch.nn as nn


def slow_gelu_scale(x, w):
    return torch.nn.functional.gelu(x) * w


class Scaler(nn.Module):
    def __init__(self, dim):
        super(Scaler, self).__init__()
        self.w = nn.Parameter(torch.randn(dim))

    def forward(self, x):
        return torch.sigmoid(x) * self.w


def get_inputs():
    return [torch.randn(8, 64){extra}]


def get_init_inputs():
    return [{init}]
"""


@pytest.mark.parametrize("name, extra, init", [("slow_gelu_scale", ", torch.randn(64)", ""), ("Scaler", "", "64")])
def test_a_named_function_or_class_of_a_users_file_gets_a_correct_kernel(tmp_path, evaluator, name, extra, init):
    """The documented function mode (`/problem FILE fn_name`) and a named class whose
    `super()` names itself: the built-in plan's kernel is correct (both were refused:
    'Model has no __init__ written in the problem file')."""
    user = tmp_path / "user_code.py"
    user.write_text(USER_FILE.format(extra=extra, init=init))
    problem = load_problem(wrap_problem(user, name), size="small")
    assert make_plan(problem).error is None
    source = BuiltinPolicy().source(problem, Config())
    result = evaluator.evaluate(problem, source)
    assert result.status is EvalStatus.CORRECT, result.reason + result.log[-2000:]


# ---- the built-in policy in a conversation ------------------------------------------------------------

KEPT_NORMALIZE = read(FIXTURES / "problems" / "kept_normalize.py")   # normalize over dim 1: kept in PyTorch


@pytest.mark.slow
def test_the_builtin_policy_converses(tmp_path):
    """/problem gives the analysis and runs nothing; a question is answered from the analysis,
    one it cannot answer is said to be so; /optimize 2 runs two turns (a check, a submit);
    /history and /best name the same best; /help lists the commands. (It ran a benchmark at
    /problem, reprinted the analysis for any question, ran one turn for /optimize 2, said
    'best: none' in /history while /best showed a kernel, and /help was 'unknown command'.)"""
    problem = tmp_path / "kept_normalize.py"
    problem.write_text(KEPT_NORMALIZE)
    options = SessionOptions(problem=None, mode=RunMode.CHAT, budget=Budget(patience=None), force_cpu=True)
    shown = io.StringIO()
    chat = Chat(options, Console(file=shown, width=250))
    said = []

    def read(prompt: str) -> str:
        said.append(len(shown.getvalue()))
        if len(said) > len(lines):
            raise EOFError
        return lines[len(said) - 1]
    lines = [f"/problem {problem}", "why is normalize kept in PyTorch?", "what is the meaning of life?",
             "/history", "/optimize 2", "/history", "/best", "/help"]
    chat.loop(read=read)
    output = shown.getvalue()
    replies = [output[a:b] for a, b in zip(said, said[1:])]
    opened, why, meaning, before, optimized, history, best, listed = replies
    assert "Op graph (" in opened and "Nothing run yet" in opened and "→" not in opened and "stop:" not in opened
    assert "F.normalize over dim 1 of a rank-4 tensor" in why and "Op graph (" not in why and "→" not in why
    assert "I cannot answer that" in meaning and "→" not in meaning
    assert "0 evaluation(s)" in before and "best: none yet" in before
    assert optimized.count("\n→ ") == 2 and "→ benchmark" in optimized and "→ submit" in optimized
    assert "stop: turn_budget" in optimized and "Op graph (" not in optimized
    assert "Coverage: our Triton kernels (1) run about" in optimized and "`normalize` (F.normalize: " in optimized
    best_line = re.search(r"best: turn \d+ \(benchmark\), correct, not timed", best).group(0)
    assert f"  {best_line}" in history and "2 evaluation(s)" in history and "(submitted)" in history
    assert "best (none timed; the newest correct ones)" in history
    assert all(command in listed for command in ("/problem", "/optimize", "/best", "/save", "/history", "/resume",
                                                 "/help", "/quit"))
    assert stored(kernelpilot_home(), [chat.session.id]) == 2
