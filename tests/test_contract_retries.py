"""The retry contract (agent/openai_policy.py): a retried endpoint failure (5xx, 429, a
timeout, a refused connection) is tried again after an exponential wait — `backoff_s`, then
twice that, ... — never at once; what cannot be retried is not. The waits are measured on the
real chat-completions test server, between the arrivals of the client's requests."""
import pytest

from agent.errors import PolicyError
from agent.openai_policy import OpenAIConfig, OpenAIPolicy
from agent.policy import Backend, TurnInput
from tests.conftest import PROBLEMS
from tests.openai_server import ChatServer, Status, reply
from tools.device import detect
from tools.problems import load_problem

BACKOFF_S = 0.4


def turn_input() -> TurnInput:
    return TurnInput(problem=load_problem(PROBLEMS / "04_softmax_rows.py", size="small"), backend=Backend.TRITON,
                     device=detect(force_cpu=True), messages=[{"role": "user", "content": "make it fast"}], tools=[])


def policy(server: ChatServer, attempts: int) -> OpenAIPolicy:
    return OpenAIPolicy(OpenAIConfig(base_url=server.url, model="test-model", api_key="none", timeout_s=10,
                                     attempts=attempts, backoff_s=BACKOFF_S))


def gaps(server: ChatServer) -> list[float]:
    return [later - earlier for earlier, later in zip(server.arrivals, server.arrivals[1:])]


def test_retries_wait_backoff_then_twice_as_long():
    with ChatServer([Status(500), Status(429), Status(503), reply("## Performance analysis\nDone.")]) as server:
        turn = policy(server, attempts=4).turn(turn_input())
    assert turn.text.endswith("Done.") and len(server.requests) == 4
    first, second, third = gaps(server)
    assert BACKOFF_S <= first < BACKOFF_S + 5
    assert 2 * BACKOFF_S <= second < 2 * BACKOFF_S + 5
    assert 4 * BACKOFF_S <= third < 4 * BACKOFF_S + 5


def test_the_last_attempt_fails_after_the_waits_with_one_line():
    with ChatServer([Status(500)] * 3) as server:
        with pytest.raises(PolicyError, match=r"server error \(HTTP 500\) after 3 attempts"):
            policy(server, attempts=3).turn(turn_input())
    assert len(server.requests) == 3 and sum(gaps(server)) >= 3 * BACKOFF_S


def test_a_refused_key_is_not_retried():
    with ChatServer([Status(401), reply("## Performance analysis\nnever sent")]) as server:
        with pytest.raises(PolicyError, match="refused the API key"):
            policy(server, attempts=4).turn(turn_input())
    assert len(server.requests) == 1
