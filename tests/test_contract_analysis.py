"""The analysis contract (agent/policy.py): a turn's text must *open* with a `Performance
analysis` section — the heading on its first non-empty line — or the graph runs none of its
tool calls. A heading further down, or the phrase inside a sentence, is not the analysis.
Pinned on `has_analysis` itself and end to end through `kernelpilot optimize` against the
real chat-completions test server."""
import pytest

from agent.policy import has_analysis
from tests.conftest import CANDIDATES
from tests.openai_server import ChatServer, call, reply
from tests.test_agent import ANALYSIS, optimize, tool_messages
from tools.history import HistoryStore

CANDIDATE = (CANDIDATES / "04_softmax_rows.py").read_text()
REFUSED = "not run: the reply lacked the performance analysis"


@pytest.mark.parametrize("text", [
    "## Performance analysis\nMemory-bound.",
    "# Performance analysis",
    "###### performance analysis: memory-bound",
    "**Performance analysis**\nMemory-bound.",
    "Performance analysis\nMemory-bound.",
    "\n\n   \n  ## Performance Analysis\nblank lines before the heading do not count",
    "PERFORMANCE ANALYSIS — bandwidth bound",
])
def test_a_heading_on_the_first_non_empty_line_is_the_analysis(text):
    assert has_analysis(text)


@pytest.mark.parametrize("text", [
    "Let me compile it.\n## Performance analysis\nMemory-bound.",        # a heading, but not first
    "Here is the kernel.\n\nPerformance analysis\nlater",
    "I will skip the performance analysis this time.",                  # the phrase inside a sentence
    "No ## Performance analysis here",
    "## Analysis of performance",
    "## Performance analyses",                                          # not the word itself
    "#######  Performance analysis",                                    # seven hashes are not a heading
    "",
    "   \n\n",
])
def test_anything_else_is_not(text):
    assert not has_analysis(text)


def test_the_graph_runs_no_tool_of_a_turn_whose_analysis_is_not_first(capsys, tmp_path):
    script = [reply("Let me compile first.\n" + ANALYSIS, call("compile", {"code": CANDIDATE})),
              reply("A quick note before the performance analysis: compiling.", call("compile", {"code": CANDIDATE})),
              reply(ANALYSIS + "Nothing more to try.")]
    with ChatServer(script) as server:
        code, summary, _ = optimize(capsys, tmp_path, server.url)
    assert code == 0 and (summary["turns"], summary["attempts"], summary["status"]) == (3, 0, "none")
    assert tool_messages(server.requests[1]) == [REFUSED]
    assert tool_messages(server.requests[2]) == [REFUSED, REFUSED]
    assert not [r for r in HistoryStore().records() if r.session == summary["session_id"]]
