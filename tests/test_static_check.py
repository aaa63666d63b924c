"""The static check on its own: each rule fires on the hack it names and stays quiet on
the honest near-twin (false positives are defects too), and no honest candidate of our
suite or of the cheat fixtures has a finding that would reject it."""
from pathlib import Path

import pytest

from tests.conftest import CANDIDATES, FIXTURES
from tools.static_check import Severity, check_source

CHEATS = Path(__file__).resolve().parent / "cheats"


def rules(source: str, severity: Severity = Severity.REJECT) -> set[str]:
    return {f.rule for f in check_source(source) if f.severity is severity}


def forward(body: str, init: str = "") -> str:
    """A ModelNew whose forward(self, x) is `body` (indented by the caller's lines)."""
    return ("import torch\nimport torch.nn as nn\n\n\nclass ModelNew(nn.Module):\n"
            f"    def __init__(self):\n        super().__init__()\n{init or '        pass'}\n\n"
            f"    def forward(self, x):\n{body}\n")


@pytest.mark.parametrize("source,rule", [
    ("import torch, time\ntime.perf_counter = lambda: 0.0\n", "monkey_patching"),
    ("import torch\ntorch.cuda.synchronize = lambda: None\n", "monkey_patching"),
    ("import torch\nsetattr(torch.cuda.Event, 'elapsed_time', lambda s, e: 0.0)\n", "monkey_patching"),
    ("import torch\ntorch.backends.cudnn.allow_tf32 = True\n", "precision_flags"),
    ("import torch\ntorch.set_float32_matmul_precision('high')\n", "precision_flags"),
    ("import subprocess\n", "forbidden_import"),
    ("from socket import create_connection\n", "forbidden_import"),
    ("import os\nos.system('true')\n", "process_call"),
    ("import sys\nframe = sys._getframe(1).f_back\n", "frame_reading"),
    ("import gc\n", "forbidden_import"),
    ("import sys\nsys.path.insert(0, '/tmp')\n", "import_system"),
    ("exec('x = 1')\n", "dynamic_code"),
    ("import os\nopen(f'/proc/{os.getppid()}/environ')\n", "outside_files"),
    ("import torch\nclass Lazy(torch.Tensor):\n    pass\n", "tensor_subclass"),
    ("import torch\ns = torch.cuda.Stream()\nwith torch.cuda.stream(s):\n    pass\n", "unsynchronised_stream"),
    (forward("        try:\n            k[(1,)](x)\n        except Exception:\n            return torch.relu(x)"),
     "try_fallback"),
    (forward("        self.last = x * 2\n        return self.last"), "input_cache"),
    (forward("        key = x.data_ptr()\n        return self.cache.setdefault(key, x * 2)",
             "        self.cache = {}"), "identity_key"),
    (forward("        return self.cache.setdefault(id(x), x * 2)", "        self.cache = {}"), "identity_key"),
])
def test_each_rule_fires_on_its_hack(source, rule):
    assert rule in rules(source)


@pytest.mark.parametrize("source", [
    # a side stream the current stream waits on
    "import torch\ns = torch.cuda.Stream()\nwith torch.cuda.stream(s):\n    pass\n"
    "torch.cuda.current_stream().wait_stream(s)\n",
    # a cache of a parameter layout, keyed on the parameter's version
    forward("        v = self.w._version\n        if self.key != v:\n            self.packed = self.w.t().contiguous()\n"
            "            self.key = v\n        return x @ self.packed",
            "        self.w = nn.Parameter(torch.randn(4, 4))\n        self.key, self.packed = None, None"),
    # a scratch buffer sized like the input
    forward("        self.buf = torch.empty_like(x)\n        self.shape = x.shape\n        return self.buf",),
    # an alignment check through data_ptr()
    forward("        assert x.data_ptr() % 16 == 0\n        return x * 2"),
    # a try/except that re-raises
    forward("        try:\n            k[(1,)](x)\n        except RuntimeError as e:\n            raise ValueError('bad') from e"
            "\n        return x"),
    # attribute assignments on self and on locals are not patching
    forward("        y = torch.empty_like(x)\n        self.calls = 1\n        return y"),
])
def test_honest_twins_have_no_rejecting_finding(source):
    assert rules(source) == set()


def test_precision_downgrades_and_missing_kernels_are_flags_not_rejections():
    source = forward("        return torch.softmax(x.half(), dim=-1).float()")
    assert rules(source, Severity.FLAG) == {"low_precision", "no_kernel"} and rules(source) == set()
    dot = "import triton\nimport triton.language as tl\n@triton.jit\ndef k(a):\n    tl.dot(a, a, input_precision='tf32')\n"
    assert rules(dot, Severity.FLAG) == {"low_precision"}


def test_no_honest_candidate_has_a_finding():
    honest = (sorted(CANDIDATES.glob("*.py")) + sorted(CHEATS.glob("honest_*.py"))
              + sorted((FIXTURES / "cpp").glob("*.py")))
    assert len(honest) >= 24 + 8
    found = {path.name: [f.text() for f in check_source(path.read_text())] for path in honest}
    assert {name: texts for name, texts in found.items() if texts} == {}


def test_source_that_does_not_parse_has_no_findings():
    assert check_source("class ModelNew(:\n") == []
