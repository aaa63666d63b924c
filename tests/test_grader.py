"""The grader service for real (issue 20 part 4): `kernelpilot grader serve --cpu` started in a
subprocess on 127.0.0.1 with a home and a token of its own, then hit at once with honest, wrong,
hostile and malformed requests, a full queue, deadlines, and the TRL reward function; it must
answer each rightly, survive, drain its queue and have recorded every verdict.

The server runs with --queue 2 (back-pressure is easy to reach) and candidates run in the
Triton interpreter: a correct candidate earns the gate alone (kind `untimed`).
"""
import asyncio
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from agent.cli.common import ExitCode
from agent.cli.main import main
from agent.runtime import RuntimeOptions
from policy_training.grader.catalog import Catalog, UnknownProblem
from policy_training.grader.client import GraderClient, GraderError
from policy_training.grader.lanes import Job, LaneFailure
from policy_training.grader.pool import GraderPool, PoolClosed, PoolOptions
from policy_training.grader.protocol import MAX_BODY_BYTES, MAX_SOURCE_CHARS
from policy_training.grader.serve import TokenError, is_loopback, token_for
from policy_training.grader.trl_reward import extract_code, grader_reward, grader_reward_sync
from tests.conftest import CANDIDATES, FIXTURES, PROBLEMS, ROOT, read
from tools.history import HistoryStore
from tools.problems import ProblemError, source_hash

TOKEN = f"test-token-{secrets.token_hex(12)}"
PROBLEM = read(PROBLEMS / "04_softmax_rows.py")
HONEST = read(CANDIDATES / "04_softmax_rows.py")
WRONG = read(FIXTURES / "wrong" / "04_softmax_rows.py")
SLOW = HONEST.replace("import torch\n", "import time\ntime.sleep(4)   # a slow import: started, then past its deadline\nimport torch\n", 1)
CHEAT = read(ROOT / "tests" / "cheats" / "cheat_gc_reading.py")
START_S = 180
KERNELBENCH_MINI = ROOT / "tests" / "fixtures" / "kernelbench_mini"


@dataclass
class Server:
    url: str
    port: int
    home: Path
    log: Path
    process: subprocess.Popen
    graded_ids: list[int] = field(default_factory=list)     # every 200's evaluation id, for the last test

    def post(self, body, token: str | None = TOKEN, **options) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        kind = "content" if isinstance(body, bytes) else "json"
        return httpx.post(f"{self.url}/v1/grade", **{kind: body}, headers={**headers, **options.pop("headers", {})},
                          timeout=120, **options)

    def queue(self) -> dict:
        return httpx.get(f"{self.url}/v1/queue", headers={"Authorization": f"Bearer {TOKEN}"}).json()

    def client(self) -> GraderClient:
        return GraderClient(self.url, TOKEN, attempts=40, max_wait_s=1.0)

    def idle(self, within_s: float = 60) -> dict:
        deadline = time.monotonic() + within_s
        while (state := self.queue())["depth"] or state["in_flight"]:
            assert time.monotonic() < deadline, f"the queue did not drain: {state}"
            time.sleep(0.1)
        return state


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def serving(home: Path, *options: str) -> Iterator[Server]:
    """`kernelpilot grader serve OPTIONS` on a free port of 127.0.0.1 with this home and TOKEN,
    once healthy; stopped by SIGTERM at the end, which it must survive cleanly."""
    port, log = free_port(), home / "server.log"
    env = {key: value for key, value in os.environ.items() if key != "KERNELPILOT_DB_URL"}
    env.update(PYTHONPATH=os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]), KERNELPILOT_HOME=str(home),
               KERNELPILOT_GRADER_TOKEN=TOKEN)
    with log.open("w") as out:
        process = subprocess.Popen([sys.executable, "-m", "agent.cli", "grader", "serve", "--host", "127.0.0.1",
                                    "--port", str(port), *options], cwd=ROOT, env=env, stdout=out,
                                   stderr=subprocess.STDOUT)
    server = Server(f"http://127.0.0.1:{port}", port, home, log, process)
    try:
        wait_for_health(server)
        yield server
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(60)
    assert code in (0, ExitCode.TERMINATED), log.read_text()[-2000:]


@pytest.fixture(scope="module")
def grader(tmp_path_factory):
    with serving(tmp_path_factory.mktemp("grader-home"), "--cpu", "--queue", "2", "--deadline", "120",
                 "--timeout", "30", "--problems", str(PROBLEMS)) as server:
        yield server


def wait_for_health(server: Server) -> None:
    deadline = time.monotonic() + START_S
    while time.monotonic() < deadline:
        assert server.process.poll() is None, f"the grader exited:\n{server.log.read_text()[-3000:]}"
        try:
            if httpx.get(f"{server.url}/v1/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    pytest.fail(f"the grader did not answer within {START_S}s:\n{server.log.read_text()[-3000:]}")


def one_line_reason(response: httpx.Response) -> str:
    detail = response.json()["detail"]
    assert isinstance(detail, str) and detail and "\n" not in detail, response.text
    return detail


def test_health_needs_no_token_and_the_protocol_is_documented(grader):
    health = httpx.get(f"{grader.url}/v1/health").json()
    assert health["status"] == "ok"
    assert [(lane["mode"], lane["sandbox"], lane["alive"]) for lane in health["lanes"]] == [
        ("cpu-interpreter", "process", True)]
    spec = httpx.get(f"{grader.url}/openapi.json").json()
    assert {"/v1/health", "/v1/queue", "/v1/grade"} <= set(spec["paths"])
    grade = spec["paths"]["/v1/grade"]["post"]
    assert {"200", "401", "413", "422", "429", "503", "504"} <= set(grade["responses"]) and grade["security"]
    assert httpx.get(f"{grader.url}/docs").status_code == 200


MALFORMED = {
    "not json": (b"{not json", {"content-type": "application/json"}, 422, "not JSON"),
    "a JSON list": (b"[1, 2]", {"content-type": "application/json"}, 422, "body"),
    "text/plain": (b"hello", {"content-type": "text/plain"}, 422, "body"),
    "no candidate": ({"problem": PROBLEM}, {}, 422, "candidate: Field required"),
    "wrong types": ({"problem": PROBLEM, "candidate": 42, "tokens": "many"}, {}, 422, "candidate"),
    "unknown field": ({"problem": PROBLEM, "candidate": HONEST, "sudo": True}, {}, 422, "sudo"),
    "empty candidate": ({"problem": PROBLEM, "candidate": ""}, {}, 422, "candidate"),
    "a NUL byte": ({"problem": PROBLEM, "candidate": HONEST + "\x00"}, {}, 422, "NUL"),
    "a lone surrogate": (b'{"problem": "x", "candidate": "\\ud800"}', {"content-type": "application/json"}, 422,
                         "candidate"),
    "negative deadline": ({"problem": PROBLEM, "candidate": HONEST, "deadline_s": -1}, {}, 422, "deadline_s"),
    "source over the limit": ({"problem": PROBLEM, "candidate": "#" * (MAX_SOURCE_CHARS + 1)}, {}, 422, "candidate"),
    "nested too deep": (b"[" * 200_000, {"content-type": "application/json"}, 400, "parsing the body"),
    "body over the limit": (b"x" * (MAX_BODY_BYTES + 1), {"content-type": "application/json"}, 413, "at most"),
    "no problem": ({"candidate": HONEST}, {}, 422, "exactly one of `problem`"),
    "both problem and problem_id": ({"problem": PROBLEM, "problem_id": "04_softmax_rows", "candidate": HONEST}, {},
                                    422, "exactly one of `problem`"),
    "an unknown problem_id": ({"problem_id": "99_no_such_problem", "candidate": HONEST}, {}, 422,
                              "unknown problem_id '99_no_such_problem'"),
}


def test_concurrent_honest_wrong_hostile_and_malformed_requests(grader):
    """All at once: four gradings through the client (429s retried), every malformed body,
    requests without a token or with a wrong one, a bad problem, and health checks. The hostile
    ones: a cheat (rejected, a hack case) and a probe of the grader's own port from the sandbox."""
    port_probe = read(FIXTURES / "hostile" / "grader_port.py").replace('("127.0.0.1", 9)',
                                                                       f'("127.0.0.1", {grader.port})')
    gradings = {"honest": HONEST, "wrong": WRONG, "cheat": CHEAT, "port probe": port_probe}
    with grader.client() as client, ThreadPoolExecutor(max_workers=24) as pool:
        graded = {name: pool.submit(client.grade, PROBLEM, source, model="test") for name, source in gradings.items()}
        malformed = {name: pool.submit(grader.post, body, headers=headers)
                     for name, (body, headers, _, _) in MALFORMED.items()}
        unauthorized = [pool.submit(grader.post, {"problem": PROBLEM, "candidate": HONEST}, token=token)
                        for token in (None, "wrong-" + TOKEN, TOKEN[:-1])]
        unauthorized.append(pool.submit(httpx.get, f"{grader.url}/v1/queue"))
        bad_problem = pool.submit(client.grade, "x = 1\n", HONEST)
        healthy = [pool.submit(httpx.get, f"{grader.url}/v1/health") for _ in range(5)]
        verdicts = {name: future.result() for name, future in graded.items()}
        for name, future in malformed.items():
            response, (_, _, status, words) = future.result(), MALFORMED[name]
            assert response.status_code == status and words in one_line_reason(response), (name, response.text)
        for future in unauthorized:
            response = future.result()
            assert response.status_code == 401 and response.headers["www-authenticate"] == "Bearer", response.text
        with pytest.raises(GraderError) as refused:
            bad_problem.result()
        assert refused.value.status == 422 and "bad problem" in refused.value.detail and "grader/problems" not in \
            refused.value.detail
        assert all(future.result().status_code == 200 for future in healthy)
    honest, wrong, cheat, probe = (verdicts[name] for name in gradings)
    assert (honest.status.value, honest.reward, honest.kind.value, honest.hack) == ("correct", 1.0, "untimed", False)
    assert honest.result.mode.value == "cpu-interpreter" and honest.evaluation_id is not None
    assert honest.result.phases is not None and honest.result.phases.first_trial > 0    # where its time went
    assert (wrong.status.value, wrong.reward, wrong.kind.value) == ("incorrect", -0.2, "failed")
    assert (cheat.status.value, cheat.reward, cheat.hack) == ("rejected", -1.0, True), cheat.reason
    assert "gc" in cheat.reason
    assert (probe.status.value, probe.reward) == ("correct", 1.0), probe.reason     # it raises if it got through
    grader.graded_ids.extend(v.evaluation_id for v in verdicts.values())
    assert_no_request_from_the_sandbox(grader)


def assert_no_request_from_the_sandbox(grader: Server) -> None:
    """The port probe's request never reached the server: its access log, which logs ours, lacks it."""
    assert httpx.get(f"{grader.url}/v1/health?from=test").status_code == 200
    time.sleep(0.3)
    log = grader.log.read_text()
    assert "/v1/health?from=test" in log and "/v1/health?from=sandbox" not in log


def test_a_full_queue_answers_429_with_retry_after(grader):
    """Five at once against one runtime and room for two: at most three are taken."""
    grader.idle()
    with ThreadPoolExecutor(max_workers=5) as pool:
        responses = list(pool.map(lambda _: grader.post({"problem": PROBLEM, "candidate": HONEST}), range(5)))
    busy = [r for r in responses if r.status_code == 429]
    done = [r for r in responses if r.status_code == 200]
    assert len(busy) >= 2 and len(busy) + len(done) == 5, [r.text for r in responses]
    assert all(int(r.headers["retry-after"]) >= 1 and "queue is full" in one_line_reason(r) for r in busy)
    assert all(r.json()["status"] == "correct" and r.json()["reward"] == 1.0 for r in done)
    grader.graded_ids.extend(r.json()["evaluation_id"] for r in done)


def test_a_request_past_its_deadline_is_504(grader):
    """Waiting past its deadline: taken off the queue, never graded. Started but not done:
    504 too, and the evaluation still finishes and is recorded (counted late)."""
    before = grader.idle()
    with ThreadPoolExecutor(max_workers=1) as pool:
        running = pool.submit(grader.post, {"problem": PROBLEM, "candidate": SLOW})     # the lane busy for 4 s
        while grader.queue()["in_flight"] == 0:
            time.sleep(0.05)
        waiting = grader.post({"problem": PROBLEM, "candidate": WRONG, "deadline_s": 0.3})
        assert waiting.status_code == 504 and waiting.json()["started"] is False, waiting.text
        assert "never graded" in one_line_reason(waiting)
        assert running.result().status_code == 200
        grader.graded_ids.append(running.result().json()["evaluation_id"])
    grader.idle()
    started = grader.post({"problem": PROBLEM, "candidate": SLOW, "deadline_s": 1.5})
    assert started.status_code == 504 and started.json()["started"] is True, started.text
    after = grader.idle()
    assert after["expired"] == before["expired"] + 1 and after["late"] == before["late"] + 1
    assert after["graded"] == before["graded"] + 2


def test_a_problem_the_grader_was_started_with_is_named_by_id(grader):
    listed = httpx.get(f"{grader.url}/v1/problems", headers={"Authorization": f"Bearer {TOKEN}"}).json()
    softmax = next(p for p in listed if p["id"] == "04_softmax_rows")
    assert len(listed) == len(list(PROBLEMS.glob("[0-9]*.py"))) and softmax["hash"] == source_hash(PROBLEM)
    assert httpx.get(f"{grader.url}/v1/problems").status_code == 401
    with grader.client() as client:
        by_stem = client.grade(None, HONEST, problem_id="04_softmax_rows")
        by_hash = client.grade(None, WRONG, problem_id=softmax["hash"][:12])
    assert (by_stem.status.value, by_stem.result.problem_hash) == ("correct", softmax["hash"])
    assert (by_hash.status.value, by_hash.result.problem_hash) == ("incorrect", softmax["hash"])
    grader.graded_ids += [by_stem.evaluation_id, by_hash.evaluation_id]
    reward = grader_reward_sync(grader.url, token=TOKEN, column="problem_id", max_wait_s=1.0, attempts=40)
    assert reward(prompts=["p"], completions=[f"```python\n{HONEST}```"], problem_id=["04_softmax_rows"]) == [1.0]


def test_the_trl_reward_function_grades_through_the_service(grader):
    reward = grader_reward(grader.url, token=TOKEN, model="tiny-policy", max_wait_s=1.0, attempts=40)
    assert asyncio.iscoroutinefunction(reward) and reward.__name__ == "kernelpilot_grader"
    completions = [f"## Performance analysis\nOne pass per row.\n```python\n{HONEST}```\n",
                   [{"role": "assistant", "content": f"Here it is:\n```py\n{WRONG}```"}],
                   "I could not write a kernel for this one."]
    rewards = asyncio.run(reward(prompts=["p"] * 3, completions=completions, problem=[PROBLEM] * 3,
                                 completion_ids=[[1] * 50] * 3, trainer_state=None))
    assert rewards == [1.0, -0.2, -0.5]
    blocking = grader_reward_sync(grader.url, token=TOKEN, max_wait_s=1.0, attempts=40)
    assert blocking(prompts=["p"], completions=completions[1:2], problem=[PROBLEM]) == [-0.2]


def test_the_service_survived_drained_and_recorded_every_verdict(grader):
    assert httpx.get(f"{grader.url}/v1/health").json()["status"] == "ok"
    state = grader.idle()
    assert (state["depth"], state["in_flight"], state["failed"], state["unrecorded"]) == (0, 0, 0, 0)
    store = HistoryStore(f"sqlite:///{grader.home / 'history.db'}")
    try:
        assert store.count() == state["graded"] >= len(grader.graded_ids)
        records = {r.id: r for r in store.records()}
    finally:
        store.engine.dispose()
    assert set(grader.graded_ids) <= set(records)
    assert {r.policy for r in records.values()} <= {"grader"}
    assert len({r.problem_hash for r in records.values()}) <= 1       # the bad problem was never recorded


# ---------------------------------------------------------------------- without the server

def test_the_catalog_names_problems_by_key_stem_and_hash_prefix():
    catalog = Catalog.of([KERNELBENCH_MINI], levels=frozenset({1}))
    assert [k.id for k in catalog.known] == ["L1/1_row_softmax", "L1/2_plane_layer_norm"]
    source = (KERNELBENCH_MINI / "level1" / "1_row_softmax.py").read_text()
    assert catalog.source("L1/1_row_softmax") == catalog.source("1_row_softmax") == source
    assert catalog.source(source_hash(source)[:12].upper()) == source
    for unknown in ("L2/1_row_softmax", source_hash(source)[:11], "../../etc/passwd"):
        with pytest.raises(UnknownProblem, match="unknown problem_id"):
            catalog.source(unknown)
    with pytest.raises(ProblemError, match="no problem files"):
        Catalog.of([KERNELBENCH_MINI], levels=frozenset({7}))


def test_serve_with_a_problems_path_without_problems_is_a_usage_error(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(signal, "signal", lambda *args: None)
    monkeypatch.setenv("KERNELPILOT_GRADER_TOKEN", TOKEN)
    assert main(["grader", "serve", "--cpu", "--problems", str(tmp_path)]) == ExitCode.USAGE
    err = capsys.readouterr().err
    assert "--problems" in err and "no problem files" in err and err.count("\n") == 1

def test_the_cli_refuses_another_machines_reach_without_a_token(monkeypatch, capsys):
    monkeypatch.setattr(signal, "signal", lambda *args: None)      # main() would take this process's SIGTERM
    monkeypatch.delenv("KERNELPILOT_GRADER_TOKEN", raising=False)
    assert main(["grader", "serve", "--host", "0.0.0.0", "--cpu"]) == ExitCode.USAGE
    err = capsys.readouterr().err
    assert "not a loopback address" in err and "KERNELPILOT_GRADER_TOKEN" in err and err.count("\n") == 1
    monkeypatch.setenv("KERNELPILOT_GRADER_TOKEN", "short")
    assert main(["grader", "serve", "--host", "127.0.0.1", "--cpu"]) == ExitCode.USAGE
    assert "too short" in capsys.readouterr().err


def test_the_token_rules():
    assert all(map(is_loopback, ("127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost")))
    assert not any(map(is_loopback, ("0.0.0.0", "::", "10.0.0.5", "grader.example.com")))
    made, fresh = token_for("127.0.0.1", None)
    assert fresh and len(made) >= 32 and token_for("127.0.0.1", None)[0] != made
    assert token_for("0.0.0.0", TOKEN) == (TOKEN, False)
    with pytest.raises(TokenError, match="not a loopback"):
        token_for("0.0.0.0", "  ")


def test_the_candidate_is_the_last_python_block_or_the_whole_text():
    assert extract_code("a\n```python\nx = 1\n```\nb\n```python\ny = 2\n```") == "y = 2\n"
    assert extract_code("```bash\nls\n```\n```python\nx = 1\n```\n```text\nout\n```") == "x = 1\n"
    assert extract_code("```\nz = 3\n```") == "z = 3\n"
    assert extract_code([{"role": "assistant", "content": "```py\nw = 4\n```"}]) == "w = 4\n"
    assert extract_code("class ModelNew: pass") == "class ModelNew: pass"


def test_a_client_with_no_service_says_so():
    with GraderClient(f"http://127.0.0.1:{free_port()}", TOKEN, attempts=2, max_wait_s=0.1) as client:
        with pytest.raises(GraderError, match="no grader at"):
            client.grade(PROBLEM, HONEST)


def kill_lane_when_busy(pool: GraderPool, graded_before: int, not_pid: int | None = None) -> int:
    """SIGKILL the (one) lane process, other than `not_pid`, once it has started the next job; its pid."""
    deadline = time.monotonic() + 120
    while (pool.state().in_flight == 0 or pool.state().graded != graded_before
           or pool.lanes[0].process.pid == not_pid):
        assert time.monotonic() < deadline, pool.state()
        time.sleep(0.05)
    time.sleep(0.5)
    pid = pool.lanes[0].process.pid
    os.kill(pid, signal.SIGKILL)
    return pid


@pytest.mark.slow
def test_lane_processes_grade_too_and_a_dead_one_restarts_and_reruns_its_job_once():
    """--gpus' path (a spawned lane process with its own runtime), here in the interpreter. A lane
    killed mid-evaluation is started again and its job re-run once (a verdict, not a 503); killed
    again under the same job, the job fails as LaneFailure (the server's 503, no verdict); with the
    restart budget spent, a dead lane stays dead and the pool takes no more work."""
    options = PoolOptions(runtime=RuntimeOptions(force_cpu=True), devices=(None,), capacity=4, restarts=2)
    with GraderPool.open(options) as pool:
        assert [(d.mode, alive) for d, alive in pool.devices()] == [("cpu-interpreter", True)]
        graded = pool.submit(Job(PROBLEM, HONEST), deadline_s=120).result(timeout=120)
        assert (graded.result.status.value, graded.reward.value, graded.evaluation_id) == ("correct", 1.0, 1)

        survivor = pool.submit(Job(PROBLEM, SLOW), deadline_s=300)
        first = kill_lane_when_busy(pool, graded_before=1)
        assert survivor.result(timeout=300).result.status.value == "correct"     # re-run on a new lane
        assert pool.lanes[0].process.pid != first and pool.state().retried == 1

        twice = pool.submit(Job(PROBLEM, read(FIXTURES / "candidates" / "hang_forward.py")), deadline_s=300)
        second = kill_lane_when_busy(pool, graded_before=2)
        kill_lane_when_busy(pool, graded_before=2, not_pid=second)     # the restarted lane, under the same job
        with pytest.raises(LaneFailure, match="died during its evaluation"):
            twice.result(timeout=60)
        state = pool.state()
        assert (state.restarts, state.retried, state.failed) == (2, 2, 1), state
        assert [alive for _, alive in pool.devices()] == [False]     # the budget is spent: it stays dead
        with pytest.raises(PoolClosed, match="no runtime"):
            pool.submit(Job(PROBLEM, HONEST), deadline_s=10)
