"""The cheat suite through the grader service on a GPU (issue 20): `kernelpilot grader serve`
started for real on 127.0.0.1 as an RL run would use it (the reward protocol, two lane
processes sharing the GPU through the device lock), then every cheat fixture and honest twin
of tests/cheats/ POSTed as a trainer would: each gets the verdict tests/test_cheats.py expects
of the evaluator itself, a cheat never earns a positive reward and is marked a hack case when
the failure is its own doing, an honest twin earns a timed reward.

    KERNELPILOT_REQUIRE_GPU=1 pytest -m gpu tests/test_grader_gpu.py     # on the GPU machine
"""
import pytest

from tests.conftest import read
from tests.test_cheats import CHEATS, FIXTURES, check_verdict
from tests.test_grader import serving
from tools.records import EvalStatus

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def gpu_grader(tmp_path_factory):
    with serving(tmp_path_factory.mktemp("grader-gpu-home"), "--queue", "4", "--deadline", "600",
                 "--protocol", "reward", "--gpus", "0", "--lanes", "2") as server:
        yield server


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
