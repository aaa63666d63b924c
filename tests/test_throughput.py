"""The throughput benchmark's script (policy_training/grader/throughput.py) as a dry run in the
Triton interpreter: a warm-up outside the clock, each pass printed with its phase breakdown as
soon as it ends and written to --out, a pass past --deadline skipped and said so, and the
KernelBench side pass refused with one line where it cannot run (no checkout, no CUDA)."""
import json
import re

import pytest

from policy_training.grader.kernelbench_pass import Harness, checkout
from policy_training.grader.lanes import default_lanes
from policy_training.grader.throughput import main, parse
from tools.records import PhaseSeconds


@pytest.mark.slow
def test_a_dry_run_warms_up_prints_each_pass_with_its_phases_and_writes_json(tmp_path, capsys):
    out = tmp_path / "thru.json"
    assert main(["--cpu", "--lanes", "0", "--only", "04*", "--rounds", "1", "--protocols", "reward",
                 "--out", str(out)]) == 0
    captured = capsys.readouterr()
    printed = captured.out
    assert "### reward:" in printed and "after a warm-up pass of" in printed and "| first_trial |" in printed
    progress = [re.sub(r"\d+ s$", "N s", line) for line in captured.err.splitlines() if " graded after " in line]
    assert progress == ["throughput: reward warm-up: 1/1 graded after N s",       # a cut run says how far it got
                        "throughput: reward on the clock: 1/1 graded after N s"]
    assert "| second_run |" in printed and "1/1 candidates with the same verdict" in printed
    data = json.loads(out.read_text())
    (report,) = data["passes"]
    assert (data["warmup"], data["second_size"], data["warm"], data["candidates"]) == \
        (True, True, 1, ["04_softmax_rows"])
    assert (report["protocol"], report["status"], report["graded"], report["failed"]) == ("reward", "measured", 1, 0)
    assert report["warmup_seconds"] > 0 and report["seconds"] > 0 and report["per_minute"] > 0
    assert report["verdicts"] == {"04_softmax_rows": ["correct"]}
    (graded,) = report["evaluations"]
    assert graded["lane_s"] >= graded["seconds"] >= sum(graded["phases"][p] for p in PhaseSeconds.PHASES) > 0
    phases = {row["phase"]: row for row in report["phases"]}
    assert set(PhaseSeconds.PHASES) <= set(phases)
    assert phases["load"]["mean_s"] > 0 and phases["second_run"]["mean_s"] > 0 and phases["timing"]["mean_s"] == 0
    assert sum(row["share"] for name, row in phases.items() if not name.startswith("device lock")) == \
        pytest.approx(1.0, abs=0.01)        # the phases, the rest and the idle time are the lanes' whole time


def test_a_pass_past_the_deadline_is_skipped_and_said_so(tmp_path, capsys):
    out = tmp_path / "thru.json"
    assert main(["--cpu", "--lanes", "0", "--only", "04*", "--deadline", "0", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "### reward: skipped (it would have started after the --deadline of 0s)" in printed
    assert "### full: skipped" in printed and "no pass was measured" in printed
    assert [(p["protocol"], p["status"], p["graded"]) for p in json.loads(out.read_text())["passes"]] == \
        [("reward", "skipped", 0), ("full", "skipped", 0)]


def test_the_kernelbench_pass_needs_a_checkout_and_cuda(tmp_path):
    with pytest.raises(SystemExit, match=r"^throughput: --kernelbench .*: no src/kernelbench/eval.py there"):
        main(["--cpu", "--kernelbench", str(tmp_path)])
    harness = tmp_path / "src" / "kernelbench" / "eval.py"
    harness.parent.mkdir(parents=True)
    harness.write_text("raise SystemExit('never imported on a machine without CUDA')\n")
    with pytest.raises(SystemExit, match=r"^throughput: --kernelbench needs a CUDA GPU .*--cpu was given$"):
        main(["--cpu", "--kernelbench", str(tmp_path)])


def test_an_unknown_protocol_is_a_usage_error(capsys):
    with pytest.raises(SystemExit):
        main(["--protocols", "reward,fast"])
    assert "'fast' is not one of full, reward, kernelbench" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--protocols", "kernelbench"])
    assert "--protocols kernelbench needs --kernelbench PATH" in capsys.readouterr().err


FAKE_HARNESS = '''"""A stand-in for a checkout's src/kernelbench/eval.py (written by the test, not KernelBench's):
it imports the two LLM-only modules KernelBench's package imports, and answers with what it was asked."""
import types

import dotenv
import litellm


def eval_kernel_against_ref(original_model_src, custom_model_src, **settings):
    asked = (settings["num_correct_trials"], settings["num_perf_trials"], settings["backend"],
             settings["measure_performance"], settings["check_for_excessive_speedup"])
    if "raise" in custom_model_src:
        raise RuntimeError("raised in the harness")
    return types.SimpleNamespace(compiled=True, correctness=asked == (5, 100, "triton", True, True),
                                 runtime=float(settings["num_perf_trials"]), metadata={"hardware": "stand-in"})
'''


def test_the_harness_subprocess_asks_as_documented_and_stubs_llm_clients_only_when_told(tmp_path):
    harness = tmp_path / "src" / "kernelbench" / "eval.py"
    harness.parent.mkdir(parents=True)
    harness.write_text(FAKE_HARNESS)
    (harness.parent / "__init__.py").write_text("")
    with pytest.raises(SystemExit, match=r"^throughput: KernelBench's harness does not import here \("
                                         r"ModuleNotFoundError: No module named '(litellm|dotenv)'\).*stub-llm"):
        Harness(checkout(tmp_path), gpu=0)
    with Harness(checkout(tmp_path), gpu=0, stub_llm=True) as stubbed:
        assert sorted(stubbed.stubbed) == ["dotenv", "litellm"]
        honest, raised = stubbed.grade("problem", "candidate"), stubbed.grade("problem", "raise")
    assert (honest.verdict(), honest.runtime_us, honest.device) == ("correct", 100.0, "stand-in")
    assert (raised.verdict(), raised.answered) == ("no result", False) and "raised in the harness" in raised.error


def test_the_reward_protocols_lanes_by_default_follow_the_cpu_cores():
    assert [default_lanes("reward", cores) for cores in (None, 1, 2, 8, 16, 64)] == [1, 1, 1, 4, 8, 8]
    assert default_lanes("reward", 16, gpus=2) == 4 and default_lanes("full", 64) == 4
    assert parse([]).lanes is None and parse(["--lanes", "3"]).lanes == 3
