"""The training-problem generator (policy_training/problems.py and its modules).

Thirty generated problems (five a family, all three dtypes) load through the real loader,
run at their small size on the CPU with finite outputs of the shape their docstring states,
pass the evaluator's own degenerate-problem lint, and fit their full-size budget (traced on
the meta device); the same seed gives the same bytes, another seed other problems, and seed
0's output is pinned to GENERATOR_VERSION. Decontamination runs against a mini checkout
written for these tests (tests/fixtures/kernelbench_mini: our own problems in KernelBench's
format, one of them untraceable): a generated problem planted there, respelled, is dropped;
one planted at other sizes is not. Splits follow the hash. The command line runs end to end
in a child process, and bad input gives one line and exit code 2.

    pytest -q tests/test_problem_generator.py
"""
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import torch

from agent.builtin.capture import capture
from policy_training.decontaminate import decontaminate, evaluation_set, problem_signature
from policy_training.drafts import DType, Family
from policy_training.problems import GENERATOR_VERSION, Split, generate, main, read_split, split_of
from tools.lint import lint_problem
from tools.problems import load_problem, source_hash
from tools.reference import Reference

ROOT = Path(__file__).resolve().parent.parent
MINI = Path(__file__).resolve().parent / "fixtures" / "kernelbench_mini"
SEED = 20
CATEGORIES = {Family.ELEMENTWISE: "elementwise", Family.REDUCTION: "reduction", Family.NORM: "norm",
              Family.SOFTMAX: "softmax", Family.GEMM_EPILOGUE: "matmul_epilogue", Family.CONV_EPILOGUE: "conv_epilogue"}
# Seed 0's first twelve sources, hashed together. A change to the generator that changes them
# must bump GENERATOR_VERSION (manifests record it) and update this pin.
PINNED = (1, "21833037148909f3809fdeebfb53c0aed0d93a008fd029a826fa6cc9cac84680")


@pytest.fixture(scope="module")
def problems():
    return generate(SEED, 30, dtypes=tuple(DType))


@pytest.fixture(scope="module")
def written(problems, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("generated")
    for problem in problems:
        (folder / f"{problem.name}.py").write_text(problem.source)
    return folder


def stated_shape(problem, loaded) -> tuple[int, ...]:
    """The output shape the generator states, evaluated at the loaded problem's sizes."""
    return tuple(eval(expression, dict(loaded.module.__dict__)) for expression in problem.output)


def test_thirty_problems_cover_every_family_and_dtype(problems):
    assert Counter(p.family for p in problems) == {family: 5 for family in Family}
    assert {p.dtype for p in problems} == set(DType)
    assert all(p.dtype is DType.FP32 for p in problems if p.family is Family.REDUCTION)
    for p in problems:
        assert p.hash == source_hash(p.source)
        assert re.fullmatch(rf"gen_{p.family.value}_{p.hash[:8]}", p.name)
    assert len({p.hash for p in problems}) == 30


def test_every_problem_loads_and_runs_small_on_cpu(problems, written):
    for p in problems:
        problem = load_problem(written / f"{p.name}.py", size="small")
        assert (problem.hash, problem.category) == (p.hash, CATEGORIES[p.family])
        model = problem.build_model()
        torch.manual_seed(0)
        inputs = problem.draw_inputs()
        assert sum(x.numel() for x in inputs) < 20_000, p.name
        with torch.no_grad():
            out = model(*inputs)
        assert type(out) is torch.Tensor, p.name
        assert tuple(out.shape) == stated_shape(p, problem), p.name
        assert out.dtype == getattr(torch, p.dtype.value), p.name
        assert bool(torch.isfinite(out).all()), p.name


def test_no_problem_is_degenerate(problems, written):
    """The evaluator's lint (tools/lint.py) at the small size: the output depends on the input,
    zeros do not pass, and every input distribution gives finite outputs."""
    for p in problems:
        report = lint_problem(Reference(load_problem(written / f"{p.name}.py", size="small"), torch.device("cpu")))
        assert not report.degenerate, (p.name, report.findings)
        assert report.distributions == ["own", "signed", "scaled"], p.name


def test_full_sizes_fit_the_budget(problems, written):
    """Traced at full size on the meta device: the stated output shape, inputs of 512 MiB at
    most, every tensor of the forward together under 4 GiB, a quarter million input elements or more."""
    for p in problems:
        problem = load_problem(written / f"{p.name}.py")
        graph = capture(problem)
        assert graph.node(graph.output).shape == stated_shape(p, problem), p.name
        input_bytes = sum(n.numel * n.dtype.itemsize for n in graph.nodes if n.op == "input")
        all_bytes = sum(n.numel * n.dtype.itemsize for n in graph.nodes if n.shape is not None)
        assert 2**18 <= sum(n.numel for n in graph.nodes if n.op == "input"), p.name
        assert input_bytes <= 2**29 and all_bytes < 2**32, (p.name, input_bytes, all_bytes)


def test_same_seed_same_bytes_other_seed_other_problems(problems):
    again = generate(SEED, 30, dtypes=tuple(DType))
    assert [p.source for p in again] == [p.source for p in problems]
    assert generate(SEED, 10, dtypes=tuple(DType)) == problems[:10]        # a prefix of the same stream
    other = generate(SEED + 1, 30, dtypes=tuple(DType))
    assert not {p.hash for p in other} & {p.hash for p in problems}
    assert all(p.dtype is DType.FP32 for p in generate(SEED, 12))        # fp32 unless asked


def test_seed_zero_is_pinned_to_the_generator_version():
    digest = hashlib.sha256("".join(p.source for p in generate(0, 12)).encode()).hexdigest()
    assert (GENERATOR_VERSION, digest) == PINNED, \
        "seed 0's problems changed: bump GENERATOR_VERSION and update PINNED"


# ------------------------------------------------------------------ decontamination

def respelled(source: str, grow: int = 0) -> str:
    """The problem as an evaluation set would write it: another docstring, no SMALL_SIZES or
    OP_CATEGORY, upper-case size constants, `out` for `y`; `grow` adds to the first size."""
    text = re.sub(r'^""".*?"""\n', '"""An evaluation problem."""\n', source, flags=re.S)
    text = re.sub(r"^(SMALL_SIZES|OP_CATEGORY) = .*\n", "", text, flags=re.M)
    constants = re.findall(r"^(\w+) = \d+$", text, flags=re.M)
    for name in constants:
        text = re.sub(rf"\b{name}\b(?!=)", name.upper(), text)
    text = re.sub(r"\by\b", "out", text)
    first = constants[0].upper()
    return re.sub(rf"^{first} = (\d+)$", lambda m: f"{first} = {int(m.group(1)) + grow}", text, count=1, flags=re.M)


def test_the_mini_checkout_is_read_and_its_untraceable_problem_skipped():
    found = evaluation_set(MINI)
    assert found.checked == 4 and len(found.signatures) == 4
    assert [s.path for s in found.skipped] == ["level3/1_branch_on_values.py"]
    assert "CaptureError" in found.skipped[0].reason
    assert evaluation_set(MINI) == found            # the second time from the cache


def test_the_signature_ignores_spelling_but_not_sizes(tmp_path):
    base = MINI / "level2" / "1_gemm_relu_rowsum.py"
    source = base.read_text()
    other = source.replace("self.fc = nn.Linear(n_in, n_out)", "self.proj = nn.Linear(n_in, n_out)\n"
                           "        self.act = nn.ReLU()")
    other = other.replace("x = self.fc(x)\n        x = torch.relu(x)", "h = self.act(self.proj(x))")
    other = other.replace("return x.sum(dim=1, keepdim=True)", "return torch.sum(h, 1, keepdim=True)")
    assert other.count("proj") == 2 and "torch.sum(h" in other
    (tmp_path / "same.py").write_text(other)
    (tmp_path / "bigger.py").write_text(other.replace("batch = 256", "batch = 257"))
    assert problem_signature(tmp_path / "same.py") == problem_signature(base)
    assert problem_signature(tmp_path / "bigger.py").digest != problem_signature(base).digest


def test_a_planted_problem_is_dropped_and_the_rest_kept(problems, tmp_path):
    checkout = shutil.copytree(MINI, tmp_path / "KernelBench")
    planted = next(p for p in problems if p.family is Family.GEMM_EPILOGUE)
    copy = respelled(planted.source)
    assert source_hash(copy) != planted.hash and "SMALL_SIZES" not in copy
    (checkout / "level2" / "3_planted.py").write_text(copy)
    result = decontaminate(problems, checkout)
    assert [d.name for d in result.dropped] == [planted.name]
    assert "same op graph and sizes as level2/3_planted.py" in result.dropped[0].reason
    assert result.kept == tuple(p for p in problems if p is not planted)


def test_a_problem_at_other_sizes_is_kept(problems, tmp_path):
    checkout = shutil.copytree(MINI, tmp_path / "KernelBench")
    planted = next(p for p in problems if p.family is Family.CONV_EPILOGUE)
    (checkout / "level2" / "3_planted_bigger.py").write_text(respelled(planted.source, grow=1))
    result = decontaminate(problems, checkout)
    assert result.dropped == () and result.kept == tuple(problems)


# ------------------------------------------------------------------ splits

def test_the_split_follows_the_hash():
    hashes = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(20_000)]
    held = [h for h in hashes if split_of(h) is Split.HELD_OUT]
    assert abs(len(held) / len(hashes) - 0.1) < 0.01
    quarter = {h for h in hashes if split_of(h, 0.25) is Split.HELD_OUT}
    assert abs(len(quarter) / len(hashes) - 0.25) < 0.015
    assert set(held) <= quarter                     # a larger held-out share only adds problems
    assert [split_of(h) for h in hashes[:50]] == [split_of(h) for h in hashes[:50]]
    assert {split_of(h, 0.0) for h in hashes} == {Split.TRAIN}
    assert {split_of(h, 1.0) for h in hashes} == {Split.HELD_OUT}
    with pytest.raises(ValueError, match="held_out_fraction"):
        split_of(hashes[0], 1.5)


# ------------------------------------------------------------------ the command line

def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "policy_training.problems", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def test_the_command_line_writes_problems_and_a_manifest(tmp_path):
    out = tmp_path / "problems"
    run = run_cli("--out", str(out), "--seed", "3", "--count", "12", "--kernelbench", str(MINI), "--held-out", "0.25")
    assert run.returncode == 0, run.stderr
    lines = run.stdout.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"wrote 12 problems to {out} (")
    record = json.loads((out / "manifest.json").read_text())
    expected = generate(3, 12)                      # the child's bytes are this process's
    assert [(row["name"], row["hash"], row["family"], row["dtype"]) for row in record["problems"]] == \
        [(p.name, p.hash, p.family.value, p.dtype.value) for p in expected]
    assert all((out / f"{p.name}.py").read_text() == p.source for p in expected)
    assert [row["split"] for row in record["problems"]] == [split_of(p.hash, 0.25).value for p in expected]
    assert record["generator"] == {"module": "policy_training.problems", "version": GENERATOR_VERSION, "seed": 3,
                                   "count": 12, "drawn": 12, "families": [f.value for f in Family],
                                   "dtypes": ["float32"]}
    assert record["versions"]["torch"] == torch.__version__
    assert record["decontamination"]["kernelbench"] == str(MINI) and record["decontamination"]["checked"] == 4
    assert [s["path"] for s in record["decontamination"]["skipped"]] == ["level3/1_branch_on_values.py"]
    train, held = read_split(out / "manifest.json", Split.TRAIN), read_split(out / "manifest.json", Split.HELD_OUT)
    assert sorted(train + held) == sorted(out / f"{p.name}.py" for p in expected)
    assert record["split"]["counts"] == {"train": len(train), "held_out": len(held)}


def test_dropped_problems_are_replaced_from_the_same_stream(tmp_path, capsys):
    checkout = shutil.copytree(MINI, tmp_path / "KernelBench")
    first = generate(3, 1)[0]
    (checkout / "level1" / "3_planted.py").write_text(respelled(first.source))
    assert main(["--out", str(tmp_path / "out"), "--seed", "3", "--count", "12", "--kernelbench", str(checkout)]) == 0
    record = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert [row["name"] for row in record["problems"]] == [p.name for p in generate(3, 13)[1:]]
    assert record["generator"]["drawn"] == 13
    assert [d["name"] for d in record["decontamination"]["dropped"]] == [first.name]
    assert "1 dropped as KernelBench duplicates" in capsys.readouterr().out


def test_bad_input_is_one_line_and_exit_code_2(tmp_path, capsys):
    run = run_cli("--out", str(tmp_path / "out"), "--seed", "1", "--count", "5", "--kernelbench", str(tmp_path / "nope"))
    assert run.returncode == 2 and run.stdout == ""
    assert run.stderr.strip() == f"error: --kernelbench {tmp_path / 'nope'}: no such folder"
    assert not (tmp_path / "out").exists()
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x.txt").write_text("taken")
    cases = {("--count", "0"): "--count must be 1 or more",
             ("--held-out", "1.5"): "--held-out must be within [0, 1)",
             ("--out", str(tmp_path / "busy")): "is not an empty folder",
             ("--kernelbench", str(tmp_path / "busy")): "no KernelBench problems under it"}
    for extra, message in cases.items():
        argv = ["--out", str(tmp_path / "fresh"), "--seed", "1", "--count", "3", *extra]
        assert main(argv) == 2, extra
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], (extra, err)
    with pytest.raises(SystemExit) as exit_info:
        main(["--out", str(tmp_path / "fresh"), "--seed", "1", "--count", "3", "--families", "attention"])
    assert exit_info.value.code == 2 and "choose from elementwise" in capsys.readouterr().err
    assert not (tmp_path / "fresh").exists()
