"""benchmarks/variants.py, the plans' A/B on one machine: its variant syntax, and one run in the
interpreter (correctness only: no GPU here, so no timings).

    pytest -q tests/test_variants.py
"""
import json
import subprocess
import sys

import pytest

from benchmarks.variants import changes
from tests.conftest import PROBLEMS


def test_a_variant_is_config_fields_with_int_or_bool_values():
    assert changes("row_split=0, cuda_graph=true,row_warps=8") == {"row_split": 0, "cuda_graph": True, "row_warps": 8}
    with pytest.raises(SystemExit, match="not FIELD=VALUE"):
        changes("rowsplit=3")
    with pytest.raises(SystemExit, match="integer or true/false"):
        changes("row_split=many")


def test_each_variant_is_evaluated_and_written_out(tmp_path):
    out = tmp_path / "ab.json"
    done = subprocess.run([sys.executable, "-m", "benchmarks.variants", str(PROBLEMS), "--only", "06_*",
                           "--variant", "row_block=1024,row_split=16", "--cpu", "--out", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = json.loads(out.read_text())
    assert [(r["problem"], r["variant"], r["status"]) for r in rows] == [
        ("06_layernorm", {}, "correct"), ("06_layernorm", {"row_block": 1024, "row_split": 16}, "correct")]
    assert "row_split=16" in rows[1]["config"] and rows[0]["runtime_ms"] is None     # the interpreter times nothing
