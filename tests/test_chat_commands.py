"""`kernelpilot chat`'s commands that no other test pinned (issue 18): code pasted between
``` lines becomes the problem, `/optimize N` lets the agent run N turns on the optimize
request (and refuses anything but a positive N), `/history` shows the problem's stored
evaluations without asking the policy, `/resume ID` goes back to an earlier session of the
same conversation, which goes on from its own messages. The `Chat` class is driven with a
`read` function, the policy behind the scripted chat-completions server; the sandbox,
store and checkpoints are real.

    pytest -q tests/test_chat_commands.py
"""
import hashlib
import io
import re

import pytest
from rich.console import Console

from agent.cli.chat import OPTIMIZE_REQUEST, Chat
from agent.graph import Budget, RunMode
from agent.policies import PolicyKind, PolicySpec
from agent.session import SessionOptions
from tests.conftest import CANDIDATES, PROBLEMS
from tests.openai_server import ChatServer, call, reply
from tools.home import kernelpilot_home

PASTED = (PROBLEMS / "04_softmax_rows.py").read_text()
OTHER = PROBLEMS / "02_gelu_tanh.py"


def analysis(words: str) -> str:
    return f"## Performance analysis\n{words}\n"


def lines_then_eof(*lines):
    """A `read` for `Chat.loop`: these lines (a callable is asked for its line when it is
    read), then Ctrl-D."""
    left = list(lines)

    def read(prompt: str) -> str:
        if not left:
            raise EOFError
        line = left.pop(0)
        return line() if callable(line) else line
    return read


def user_messages(request: dict) -> list[str]:
    return [m["content"] for m in request["messages"] if m["role"] == "user"]


@pytest.mark.slow
def test_pasted_code_optimize_history_and_resume(kernelpilot_home):
    script = [reply(analysis("A: the pasted softmax is memory-bound.")),
              reply(analysis("A: checking a row kernel."),
                    call("check_correctness", {"code": (CANDIDATES / "04_softmax_rows.py").read_text()})),
              reply(analysis("A: looking at what is stored."), call("speedup_history", {"k": 2})),
              reply(analysis("B: GELU is elementwise.")),
              reply(analysis("A again: the row kernel stays the answer."))]
    shown, sessions = io.StringIO(), {}
    with ChatServer(script) as server:
        options = SessionOptions(mode=RunMode.CHAT, budget=Budget(patience=None), force_cpu=True,
                                 policy=PolicySpec(PolicyKind.OPENAI, model="test-model", base_url=server.url))
        chat = Chat(options, Console(file=shown, width=200), turns_per_message=1)

        def remember_a() -> str:
            sessions["A"] = chat.session.id
            return "/optimize 2"

        chat.loop(read=lines_then_eof("```", *PASTED.splitlines(), "```", remember_a, "/optimize 0", "/optimize x",
                                      "/history", f"/problem {OTHER}", lambda: f"/resume {sessions['A']}",
                                      "what now?"))
    output = shown.getvalue()
    assert not re.search(r"^error: ", output, re.MULTILINE), output

    # the paste: saved under the home by its content, and the problem of session A
    pasted = kernelpilot_home / "pasted" / f"pasted_{hashlib.sha256(PASTED.encode()).hexdigest()[:10]}.py"
    assert pasted.read_text() == PASTED and f"saved the pasted code as {pasted}" in output
    assert "torch.softmax(x, dim=-1)" in server.requests[0]["messages"][1]["content"]

    # /optimize 2: the optimize request, then exactly two turns; /optimize 0 and x: usage, no turn
    assert user_messages(server.requests[1])[-1] == user_messages(server.requests[2])[-1] == OPTIMIZE_REQUEST
    assert output.count("usage: /optimize [N]") == 2
    assert "gelu" in server.requests[3]["messages"][1]["content"].lower()       # the 4th request is B's first turn

    # /history (after the refused /optimize lines, before B): the check stored in A's turn,
    # shown without asking the policy
    history = output.split("default 8)\n")[2].split("session s-")[0]
    assert re.search(r"^  best \(none timed; the newest correct ones\):\n\s+#\d+ pasted_[0-9a-f]{10}: correct, not timed "
                     r"— A: checking.*^  recent:\n\s+#\d+ pasted_[0-9a-f]{10}: correct, not timed — A: checking",
                     history, re.MULTILINE | re.DOTALL), history

    # /resume A: A's session again, and the next message goes on from A's own conversation
    assert f"session {sessions['A']}: pasted_" in output.rsplit("GELU is elementwise", 1)[1]
    last = server.requests[4]["messages"]
    assert "A: looking at what is stored." in [m.get("content", "").strip().splitlines()[-1] for m in last
                                               if m["role"] == "assistant"]
    assert user_messages(server.requests[4])[-1] == "what now?"
    assert not any("GELU" in (m.get("content") or "") for m in last)
    assert len(server.requests) == 5          # no turn asked for the refused /optimize or for /history


def test_resume_and_optimize_without_what_they_need_say_how(kernelpilot_home):
    shown = io.StringIO()
    chat = Chat(SessionOptions(mode=RunMode.CHAT, force_cpu=True), Console(file=shown, width=200))
    chat.loop(read=lines_then_eof("/resume", "/optimize 3", "/history", "/resume s-nope"))
    output = shown.getvalue()
    assert "usage: /resume SESSION_ID" in output
    assert "no problem yet: /problem FILE (or paste code between ``` lines)" in output
    assert "no problem yet\n" in output
    assert re.search(r"error: .*no session 's-nope'", output), output
