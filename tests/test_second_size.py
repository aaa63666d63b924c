"""The check at a second size set (issue 23 item 1), through the real evaluator in the Triton
interpreter: a softmax with the problem's small shape baked in is flagged `size_specialised`,
its honest twin that reads sizes from its input holds; one that falls back to PyTorch away from
the checked sizes is flagged; one that cheats only there is rejected (tests/fixtures/sizes/). Both
sizes run in the candidate's one fresh worker: what it keeps across its loads there (a count of
them, the shape it saw first) gets it nothing.
Without the check the baked kernel passes silently: that was the bug. The size sets are drawn
secretly, keep the problem's constraints, and leave settings (layers, groups, dims) alone."""
import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from agent.cli import main
from tests.conftest import PROBLEMS
from tools.problems import load_problem
from tools.records import EvalStatus, Flag
from tools.second_size import second_size, size_names
from tools.trust import ALL_USES, CANDIDATES_DOING, DISQUALIFIES

SIZES = Path(__file__).parent / "fixtures" / "sizes"
SOFTMAX = PROBLEMS / "04_softmax_rows.py"
CPU = torch.device("cpu")


def header(path: Path) -> dict[str, str]:
    return dict(line[2:].split(": ", 1) for line in path.read_text().splitlines() if line.startswith("# "))


def second_sized(evaluator, name: str, problem=None):
    problem = problem or load_problem(SOFTMAX, size="small")
    return evaluator.evaluate(problem, (SIZES / f"{name}.py").read_text(), replace(evaluator.config, second_size=True))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["baked_shape", "reads_shape", "falls_back_elsewhere", "cheats_elsewhere",
                                  "later_load_falls_back", "remembers_first_shape"])
def test_each_fixture_gets_its_verdict_at_the_second_size(evaluator, name):
    expected, result = header(SIZES / f"{name}.py"), second_sized(evaluator, name)
    check = result.second_size
    assert check is not None and check.sizes and check.sizes != {"batch_size": 7, "dim": 300}, result
    if expected["second-size"] == "holds":
        assert (result.status, check.holds, Flag.SIZE_SPECIALISED in result.flags) == (EvalStatus.CORRECT, True, False)
        assert check.text().startswith("holds at a second size (")
    elif expected["second-size"] == "size_specialised":      # the verdict stands; the flag says where it breaks
        assert (result.status, check.holds, Flag.SIZE_SPECIALISED in result.flags) == (EvalStatus.CORRECT, False, True)
        assert check.text() in result.notes and expected.get("reason", "") in check.reason
    else:                                                    # a cheat at the second size is the verdict
        assert (result.status, check.status, Flag.SIZE_SPECIALISED in result.flags) == \
            (EvalStatus.REJECTED, EvalStatus.REJECTED, False)
        assert "second size" in result.reason and expected["reason"] in result.reason


def test_both_sizes_run_in_the_candidates_one_fresh_worker(evaluator, monkeypatch):
    taken, start = [], evaluator.sandbox.worker
    monkeypatch.setattr(evaluator.sandbox, "worker", lambda: taken.append(start()) or taken[-1])
    result = second_sized(evaluator, "reads_shape")
    assert result.second_size.holds and result.phases.second_run > 0
    (worker,) = taken
    assert not worker.alive()           # closed with the evaluation


def test_without_the_check_a_baked_kernel_passes_silently(evaluator):
    source = (SIZES / "baked_shape.py").read_text()
    result = evaluator.evaluate(load_problem(SOFTMAX, size="small"), source)
    assert (result.status, result.second_size) == (EvalStatus.CORRECT, None)
    assert Flag.SIZE_SPECIALISED not in result.flags


def test_second_sizes_are_drawn_secretly_and_differ_from_the_problems():
    problem = load_problem(PROBLEMS / "09_sum_reduction.py", size="small")
    draws = [second_size(problem, CPU) for _ in range(6)]
    sizes = [tuple(d.sizes.items()) for d in draws]
    assert all(dict(s) != {"batch_size": 3, "dim1": 300, "dim2": 33} for s in sizes)
    assert len(set(sizes)) > 1                    # secrets, not a seed the candidate could know
    assert all(d.problem.module.dim1 == d.sizes["dim1"] for d in draws)
    assert problem.module.dim1 == 300             # the problem's own module is left as it was


def test_size_names_are_what_shows_in_shapes_not_settings():
    small = lambda name: size_names(load_problem(PROBLEMS / f"{name}.py", size="small"))
    assert small("24_tiny_mlp") == {"batch_size": 20, "hidden": 48}           # num_layers: structure
    assert small("08_groupnorm") == {"batch_size": 3, "features": 12, "height": 9, "width": 11}   # groups: a setting
    assert small("09_sum_reduction") == {"batch_size": 3, "dim1": 300, "dim2": 33}        # reduce_dim stays
    kernelbench = load_problem(Path(__file__).parent / "fixtures" / "kernelbench_mini" / "level1" / "1_row_softmax.py")
    assert size_names(kernelbench) == {"rows": 512, "cols": 2048}             # no SMALL_SIZES: ints of 8 and more


def test_second_sizes_keep_the_problems_constraints():
    problem = load_problem(PROBLEMS / "08_groupnorm.py", size="small")
    for _ in range(4):
        drawn = second_size(problem, CPU)
        assert drawn.sizes["features"] % 4 == 0          # what GroupNorm(4, features) accepts
        assert drawn.problem.module.num_groups == 4


FIXED = """import torch
import torch.nn as nn


class Model(nn.Module):
    def forward(self, x):
        return torch.softmax(x, dim=-1)


def get_inputs():
    return [torch.randn(7, 300)]


def get_init_inputs():
    return []
"""


def test_a_problem_with_no_size_to_scale_is_said_not_flagged(evaluator, tmp_path):
    (tmp_path / "fixed_softmax.py").write_text(FIXED)
    problem = load_problem(tmp_path / "fixed_softmax.py", size="small")
    assert second_size(problem, CPU) == "the problem has no size constants that show in its tensors' shapes"
    result = second_sized(evaluator, "reads_shape", problem)
    assert (result.status, result.flags.count(Flag.SIZE_SPECIALISED), result.second_size.status) == \
        (EvalStatus.CORRECT, 0, None)
    assert "not checked at a second size: the problem has no size constants" in " ".join(result.notes)


def test_the_trust_rules_rule_a_specialised_kernel_out_of_everything():
    assert DISQUALIFIES[Flag.SIZE_SPECIALISED] == ALL_USES and Flag.SIZE_SPECIALISED in CANDIDATES_DOING


@pytest.mark.slow
def test_eval_second_size_reports_a_specialised_kernel(capsys):
    args = ["eval", str(SOFTMAX), str(SIZES / "baked_shape.py"), "--cpu", "--size", "small", "--no-record"]
    assert main(args + ["--second-size", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["status"] == "correct" and "size_specialised" in summary["flags"]
    assert summary["second_size"]["holds"] is False and summary["second_size"]["status"] == "incorrect"
    assert main(args + ["--second-size"]) == 0
    out = capsys.readouterr().out
    assert "flags: size_specialised" in out and "does not hold at a second size" in out


def test_a_fallback_everywhere_is_no_custom_kernel_not_size_specialised(evaluator):
    source = (Path(__file__).parent / "cheats" / "cheat_reference_op.py").read_text()     # torch.softmax itself
    result = evaluator.evaluate(load_problem(SOFTMAX, size="small"), source, replace(evaluator.config, second_size=True))
    assert Flag.NO_CUSTOM_KERNEL in result.flags and Flag.SIZE_SPECIALISED not in result.flags
    assert result.second_size.holds


class Held:
    """A guard that counts its holds and whether it is held (the evaluator passes its device lock)."""

    def __init__(self):
        self.taken, self.held = 0, False

    def __enter__(self):
        self.taken, self.held = self.taken + 1, True

    def __exit__(self, *exc):
        self.held = False


def test_only_the_reference_tries_take_the_guard(monkeypatch):
    """The draws and the meta-device shape checks run outside the device lock; the reference's
    build and run on the device inside it."""
    import tools.second_size as module
    guard, outside = Held(), []
    shape_facts = module.shape_facts
    monkeypatch.setattr(module, "shape_facts", lambda p: outside.append(guard.held) or shape_facts(p))
    second = second_size(load_problem(SOFTMAX, size="small"), torch.device("cpu"), guard=guard)
    assert not isinstance(second, str), second
    assert guard.taken >= 1 and not guard.held
    assert outside and not any(outside)
