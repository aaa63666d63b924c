"""The cheat suite through the grader service on a GPU (issue 20): `kernelpilot grader serve`
started for real on 127.0.0.1 as an RL run would use it (the reward protocol, two lane
processes sharing the GPU through the device lock), then every cheat fixture and honest twin
of tests/cheats/ POSTed as a trainer would: each gets the verdict tests/test_cheats.py expects
of the evaluator itself, a cheat never earns a positive reward and is marked a hack case when
the failure is its own doing, an honest twin earns a timed reward.

    KERNELPILOT_REQUIRE_GPU=1 pytest -m gpu tests/test_grader_gpu.py     # on the GPU machine
"""
import os
import signal
import subprocess
import sys

import pytest

from agent.cli.common import ExitCode
from tests.conftest import ROOT, read
from tests.test_cheats import CHEATS, FIXTURES, check_verdict
from tests.test_grader import TOKEN, Server, free_port, wait_for_health
from tools.records import EvalStatus

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def gpu_grader(tmp_path_factory):
    home = tmp_path_factory.mktemp("grader-gpu-home")
    port, log = free_port(), home / "server.log"
    env = {key: value for key, value in os.environ.items() if key != "KERNELPILOT_DB_URL"}
    env.update(PYTHONPATH=os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]), KERNELPILOT_HOME=str(home),
               KERNELPILOT_GRADER_TOKEN=TOKEN)
    with log.open("w") as out:
        process = subprocess.Popen([sys.executable, "-m", "agent.cli", "grader", "serve", "--host", "127.0.0.1",
                                    "--port", str(port), "--queue", "4", "--deadline", "600", "--protocol", "reward",
                                    "--gpus", "0", "--lanes", "2"],
                                   cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    server = Server(f"http://127.0.0.1:{port}", port, home, log, process)
    try:
        wait_for_health(server)
        yield server
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(60)
    assert code in (0, ExitCode.TERMINATED), log.read_text()[-2000:]


@pytest.mark.parametrize("fixture", FIXTURES, ids=[f.name for f in FIXTURES])
def test_cheat_fixture_through_the_grader(gpu_grader, fixture):
    with gpu_grader.client() as client:
        graded = client.grade(read(fixture.problem), read(CHEATS / f"{fixture.name}.py"), deadline_s=600)
    assert graded.result.mode.value == "gpu", graded.result.mode
    check_verdict(graded.result, fixture, gpu=True)
    if fixture.name.startswith("honest_"):
        assert graded.status is EvalStatus.CORRECT and graded.reward is not None and not graded.hack, graded.reward_detail
        assert graded.kind.value == "speed", graded.reward_detail         # timed on the GPU: a speed term
    else:
        assert graded.reward is not None and graded.reward <= 0, (graded.reward, graded.reward_detail)
        if graded.status is EvalStatus.REJECTED:
            assert graded.hack, graded.reward_detail
