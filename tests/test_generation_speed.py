"""The static KV cache (policy_training/sampling.py `static_cache`) gives the dynamic cache's greedy
answers for left-padded batches, and policy_training/generation_speed.py measures both; the tiny
model on a CPU, where transformers compiles nothing (the speed itself is a GPU figure)."""
import json
from pathlib import Path

import pytest

from policy_training.generation_speed import main
from policy_training.sampling import sample_batch
from policy_training.tiny import build_tiny
from policy_training.training import load_pretrained

SUITE = Path(__file__).resolve().parents[1] / "benchmarks" / "problems"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return build_tiny(tmp_path_factory.mktemp("tiny"))


def test_static_and_dynamic_caches_give_the_same_greedy_answers_to_a_padded_batch(tiny):
    model, tokenizer = load_pretrained(tiny)
    prompts = [[{"role": "user", "content": text}] for text in ("Fuse a softmax.", "Write one Triton kernel that adds "
                                                                "two tensors and applies a relu, then scale it.")]
    caches, generate = [], model.generate

    def recording(*args, **kwargs):         # which cache each call asked transformers for
        caches.append(kwargs.get("cache_implementation"))
        return generate(*args, **kwargs)

    model.generate = recording
    dynamic = sample_batch(model.eval(), tokenizer, prompts, 1, 24, 0.0)
    static = sample_batch(model, tokenizer, prompts, 1, 24, 0.0, static_cache=True)
    assert caches == [None, "static"]
    assert [s[0].ids for s in static] == [s[0].ids for s in dynamic]
    assert all(len(s[0].ids) == 24 or s[0].stopped for s in dynamic)


def test_generation_speed_times_three_runs_of_equal_length(tiny, tmp_path, capsys):
    problems = tmp_path / "problems"
    problems.mkdir()
    for name in ("04_softmax_rows.py", "06_layernorm.py"):
        (problems / name).write_text((SUITE / name).read_text())
    out = tmp_path / "speed.json"
    assert main(["--model", str(tiny), "--problems", str(problems), "--batch", "3", "--new-tokens", "8",
                 "--out", str(out)]) == 0
    rows = json.loads(out.read_text())
    assert [r["run"] for r in rows] == ["dynamic", "static, first (compiles)", "static, second"]
    assert all(r["same_as_dynamic"] == 1.0 and r["seconds"] > 0 and r["device"] == "cpu" for r in rows)
    assert "| dynamic |" in capsys.readouterr().out
    assert main(["--model", str(tiny), "--problems", str(tmp_path / "none"), "--batch", "1"]) == 2
