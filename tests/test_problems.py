"""Loading problems: files, folders, KernelBench checkouts, the size scale (SMALL_SIZES, or
for a KernelBench problem the shrink heuristic of tools/small_sizes.py), and a clear error
for every way a problem file can be unusable."""
from dataclasses import replace

import pytest
import torch

from tests.conftest import FIXTURES, PROBLEMS
from tools.baselines import BaselineStore
from tools.device import detect
from tools.problems import ProblemError, find_problem_files, load_problem, resized
from tools.reference import Reference
from tools.timing import TimingConfig

KERNELBENCH_STYLE = FIXTURES / "problems" / "kb_conv_bias_relu.py"     # no SMALL_SIZES

GOOD = '''
import torch
import torch.nn as nn

OP_CATEGORY = "activation"
batch_size = 64
dim = 512
SMALL_SIZES = {"batch_size": 3, "dim": 5}


class Model(nn.Module):
    def forward(self, x):
        return torch.relu(x)


def get_inputs():
    return [torch.rand(batch_size, dim)]


def get_init_inputs():
    return []
'''


def write(tmp_path, name, text):
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_loads_a_problem_and_scales_it(tmp_path):
    path = write(tmp_path, "relu.py", GOOD)
    full, small = load_problem(path), load_problem(path, size="small")
    assert (full.name, full.category, full.size) == ("relu", "activation", "full")
    assert full.draw_inputs()[0].shape == (64, 512)
    assert small.draw_inputs()[0].shape == (3, 5)
    assert full.hash == small.hash   # identity is the source, not the size
    assert full.shrunk == small.shrunk == ()    # SMALL_SIZES, not the heuristic


def test_a_kernelbench_problem_is_shrunk_at_the_small_size():
    full, small = load_problem(KERNELBENCH_STYLE), load_problem(KERNELBENCH_STYLE, size="small")
    assert full.draw_inputs()[0].shape == (64, 32, 96, 80) and full.shrunk == ()
    assert small.draw_inputs()[0].shape == (2, 16, 12, 12)
    assert small.shrunk == (("batch_size", 2), ("in_channels", 16), ("out_channels", 16), ("height", 12),
                            ("width", 12), ("bias_shape", (16, 1, 1)))     # a tuple built at import follows
    model = small.build_model()
    assert model.bias.shape == (16, 1, 1) and model(*small.draw_inputs()).shape == (2, 16, 10, 10)
    assert (full.hash, full.source) == (small.hash, small.source)       # the same problem, so the same history
    assert load_problem(KERNELBENCH_STYLE).module.batch_size == 64      # each load has a module of its own
    second = resized(small, {"height": 20}, "second")                   # the second size starts from the small one
    assert second.draw_inputs()[0].shape == (2, 16, 20, 12) and small.draw_inputs()[0].shape == (2, 16, 12, 12)


def test_baselines_of_a_shrunk_problem_have_a_key_of_their_own():
    """Before the heuristic moved into load_problem, "small" ran such a problem at full size: a
    baseline cached then under (hash, small) must not be taken for the shrunk one's."""
    store = BaselineStore(None, detect(force_cpu=True), None, TimingConfig())
    cpu = torch.device("cpu")
    small = Reference(load_problem(KERNELBENCH_STYLE, size="small"), cpu)
    as_before = Reference(replace(small.problem, shrunk=()), cpu)
    again = Reference(load_problem(KERNELBENCH_STYLE, size="small"), cpu)
    assert store.key(small) == store.key(again) != store.key(as_before)


def test_identity_is_the_source_hash_so_a_renamed_file_keeps_it(tmp_path):
    first = load_problem(write(tmp_path, "a.py", GOOD))
    renamed = load_problem(write(tmp_path, "elsewhere/b.py", GOOD))
    edited = load_problem(write(tmp_path, "c.py", GOOD.replace("relu(x)", "relu(x) * 2")))
    assert first.hash == renamed.hash != edited.hash


@pytest.mark.parametrize("text,words", [
    ("def broken(:\n", "syntax error"),
    (GOOD.replace("class Model", "class Other"), "missing Model"),
    (GOOD.replace("def get_inputs", "def _get_inputs"), "missing get_inputs"),
    (GOOD.replace("def get_init_inputs", "def _get_init_inputs"), "missing get_init_inputs"),
    ("raise RuntimeError('no GPU here')\n", "importing the problem raised RuntimeError: no GPU here"),
])
def test_unusable_problem_files_raise_one_clear_error(tmp_path, text, words):
    path = write(tmp_path, "bad.py", text)
    with pytest.raises(ProblemError) as error:
        load_problem(path)
    assert words in str(error.value) and str(path) in str(error.value)


@pytest.mark.parametrize("body,words", [
    ("    raise ValueError('bad size')\n", "get_inputs() raised ValueError: bad size"),
    ("    return [torch.rand(3), 4]\n", "get_inputs() item 1 is int, not a tensor"),
    ("    return torch.rand(3)\n", "must return a list of tensors"),
])
def test_bad_inputs_are_problem_errors(tmp_path, body, words):
    text = GOOD.replace("    return [torch.rand(batch_size, dim)]\n", body)
    problem = load_problem(write(tmp_path, "bad_inputs.py", text))
    with pytest.raises(ProblemError, match=words.replace("(", r"\(").replace(")", r"\)")):
        problem.draw_inputs()


def test_missing_file_and_bad_small_sizes(tmp_path):
    with pytest.raises(ProblemError, match="no such problem file"):
        load_problem(tmp_path / "absent.py")
    path = write(tmp_path, "sizes.py", GOOD.replace('"dim": 5', '"width": 5'))
    with pytest.raises(ProblemError, match="SMALL_SIZES names globals the problem does not define: width"):
        load_problem(path, size="small")


def test_finds_a_folder_and_a_kernelbench_checkout(tmp_path):
    for level, name in [(1, "1_Relu.py"), (1, "10_Relu.py"), (1, "2_Relu.py"), (2, "1_Chain.py")]:
        write(tmp_path, f"KernelBench/KernelBench/level{level}/{name}", GOOD)
    write(tmp_path, "KernelBench/KernelBench/level1/__init__.py", "")
    files = find_problem_files(tmp_path / "KernelBench")
    assert [(f.path.name, f.level, f.suite) for f in files] == [
        ("1_Relu.py", 1, "kernelbench"), ("2_Relu.py", 1, "kernelbench"),
        ("10_Relu.py", 1, "kernelbench"), ("1_Chain.py", 2, "kernelbench")]
    one_level = find_problem_files(tmp_path / "KernelBench/KernelBench/level2")
    assert [(f.path.name, f.level) for f in one_level] == [("1_Chain.py", 2)]
    ours = find_problem_files(PROBLEMS)
    assert len(ours) >= 24 and {f.suite for f in ours} == {"problems"}


def test_every_suite_problem_loads_small_with_a_category():
    for file in find_problem_files(PROBLEMS):
        problem = load_problem(file.path, size="small")
        assert problem.category, f"{file.path.name} has no OP_CATEGORY"
        torch.manual_seed(0)
        assert all(isinstance(x, torch.Tensor) for x in problem.draw_inputs())
