"""Adapters shipped alone and merged on arrival (policy_training/merge.py): a PEFT stage's OUT/adapter
and its summary fields; `train merge` of one adapter, and of a chain of two (LoRA, then DoRA+rsLoRA
trained from the first's merged model), gives the same logits as the stages' own OUT/model;
save_merged = false writes no OUT/model (and needs PEFT); merge refuses a folder that is no adapter
and an adapter of a model of another shape. The tiny model, on a CPU."""
import hashlib
import json
from pathlib import Path

import pytest
import torch

from agent.cli.common import ExitCode
from agent.cli.main import main
from policy_training.__main__ import main as training_main
from policy_training.config import ConfigError, PeftChoice, load_config
from policy_training.export import write_jsonl
from policy_training.grpo import GRPOStageConfig
from policy_training.merge import MergeConfig, run_merge
from policy_training.rft import RFTConfig, sft_config
from policy_training.sft import Device, SFTConfig, run_sft, summary_line
from policy_training.tiny import ARCHITECTURE, build_tiny
from policy_training.training import ADAPTER, BASE_RECORD, TrainingError, load_pretrained, peft_config, save_model

QUIET = dict(log=lambda line: None)
ANSWER = "## Performance analysis\nOne fused pass over the rows.\n\n```python\nimport triton\n```"


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    return build_tiny(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """An export-shaped folder with two rows (what `train export` writes, without a store)."""
    folder = tmp_path_factory.mktemp("data")
    rows = [{"messages": [{"role": "system", "content": "You write Triton kernels."},
                          {"role": "user", "content": f"Fuse problem {n}: scale, bias, relu."},
                          {"role": "assistant", "content": ANSWER}]} for n in range(2)]
    write_jsonl(folder / "messages" / "train.jsonl", rows)
    return folder


def sft(base: Path, data: Path, out: Path, **keys) -> dict:
    keys = {"peft": PeftChoice.LORA, "lora_r": 4, "max_steps": 2, "learning_rate": 1e-2, **keys}
    return run_sft(SFTConfig(model=str(base), data=data, out=out, max_length=512, device=Device.CPU, **keys), **QUIET)


@pytest.fixture(scope="module")
def first(base, data, tmp_path_factory) -> dict:
    return sft(base, data, tmp_path_factory.mktemp("first") / "sft")


def logits(model_dir: Path) -> torch.Tensor:
    model, _ = load_pretrained(model_dir)
    with torch.no_grad():
        return model(torch.arange(3, 40).unsqueeze(0)).logits


@pytest.mark.slow
def test_a_lora_stage_saves_its_adapter_alone_and_records_it(first, base):
    adapter = Path(first["adapter"]["folder"])
    assert adapter == Path(first["model"]).parent / ADAPTER
    assert {"adapter_config.json", "adapter_model.safetensors", BASE_RECORD} <= {p.name for p in adapter.iterdir()}
    assert first["adapter"]["bytes"] == sum(p.stat().st_size for p in adapter.rglob("*") if p.is_file())
    assert first["adapter"]["base"] == str(base)
    assert first["adapter"]["bytes"] < (Path(first["model"]) / "model.safetensors").stat().st_size
    recorded = json.loads((adapter / BASE_RECORD).read_text())
    assert recorded["base"] == str(base) and recorded["architecture"]["hidden_size"] == ARCHITECTURE["hidden_size"]
    assert json.loads((adapter.parent / "summary.json").read_text())["adapter"] == first["adapter"]
    assert "adapter: " in summary_line(first) and "model: " in summary_line(first)


@pytest.mark.slow
def test_the_adapter_merged_into_the_base_gives_the_stages_own_model(first, base, tmp_path, capsys):
    out = tmp_path / "merged"
    assert training_main(["merge", "--set", f"base={base}", "--set", f"adapters={first['adapter']['folder']}",
                          "--out", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    weights = Path(first["adapter"]["folder"]) / "adapter_model.safetensors"
    assert [link["weights_sha256"] for link in summary["chain"]] == [hashlib.sha256(weights.read_bytes()).hexdigest()]
    merged, own, start = logits(out / "model"), logits(Path(first["model"])), logits(base)
    assert (merged - start).abs().max() > 1e-3                      # the adapter did change the model
    torch.testing.assert_close(merged, own, rtol=0, atol=1e-6)
    _, tokenizer = load_pretrained(out / "model")
    _, base_tokenizer = load_pretrained(base)
    assert tokenizer.chat_template == base_tokenizer.chat_template and len(tokenizer) == len(base_tokenizer)


@pytest.mark.slow
def test_a_chain_of_two_adapters_merged_from_the_base_gives_the_last_stages_model(first, base, data, tmp_path):
    second = sft(Path(first["model"]), data, tmp_path / "second", peft=PeftChoice.DORA_RSLORA, max_steps=1)
    assert second["adapter"]["base"] == first["model"]
    chain = (Path(first["adapter"]["folder"]), Path(second["adapter"]["folder"]))
    summary = run_merge(MergeConfig(base=str(base), adapters=chain, out=tmp_path / "merged"), **QUIET)
    assert [link["folder"] for link in summary["chain"]] == [str(a) for a in chain]
    merged, own = logits(tmp_path / "merged" / "model"), logits(Path(second["model"]))
    assert (merged - logits(Path(first["model"]))).abs().max() > 1e-4   # the second adapter counts
    torch.testing.assert_close(merged, own, rtol=0, atol=1e-5)


@pytest.mark.slow
def test_save_merged_false_writes_the_adapter_and_no_model(base, data, tmp_path):
    summary = sft(base, data, tmp_path / "only", max_steps=1, save_merged=False)
    assert summary["model"] is None and not (tmp_path / "only" / "model").exists()
    assert (tmp_path / "only" / ADAPTER / "adapter_model.safetensors").is_file()
    assert "model:" not in summary_line(summary) and "adapter: " in summary_line(summary)


def test_save_merged_false_without_peft_is_refused_and_rft_passes_it_on(capsys):
    for kind, keys in ((SFTConfig, ["data=d"]), (GRPOStageConfig, ["problems=p"]), (RFTConfig, ["problems=p"])):
        with pytest.raises(ConfigError, match="save_merged = false needs peft = lora or dora"):
            load_config(kind, None, ["model=m", "out=o", "save_merged=false", *keys])
    assert main(["train", "sft", "--set", "model=m", "--set", "data=d", "--out", "o",
                 "--set", "save_merged=false"]) == ExitCode.USAGE
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "full fine-tuning has no adapter to save" in err
    rft = load_config(RFTConfig, None, ["model=m", "out=o", "problems=p", "peft=lora", "save_merged=false"])
    assert sft_config(rft).save_merged is False


def test_merge_refuses_a_missing_or_non_adapter_folder_in_one_line(base, tmp_path, capsys):
    for folder, message in ((tmp_path / "absent", "no such adapter folder"),
                            (base, "not a PEFT adapter folder (needs adapter_config.json")):
        assert training_main(["merge", "--set", f"base={base}", "--set", f"adapters={folder}",
                              "--out", str(tmp_path / "m")]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "m").exists()
    with pytest.raises(ConfigError, match="adapters must be given"):
        load_config(MergeConfig, None, [f"base={base}", "out=o"])


def other_sized_adapter(base: Path, folder: Path) -> Path:
    """An adapter of a tiny model with hidden size 32 (the test's base has 64), recorded as a stage would."""
    from peft import get_peft_model
    from transformers import Qwen3Config, Qwen3ForCausalLM

    _, tokenizer = load_pretrained(base)
    config = Qwen3Config(vocab_size=len(tokenizer), **{**ARCHITECTURE, "hidden_size": 32, "intermediate_size": 64})
    wrapped = get_peft_model(Qwen3ForCausalLM(config), peft_config(PeftChoice.LORA, 4, 8, 0.0))
    return save_model(wrapped, tokenizer, folder, base="elsewhere/small", merged=False).adapter


def test_merge_refuses_an_adapter_of_another_model_shape(base, tmp_path):
    adapter = other_sized_adapter(base, tmp_path / "small")
    config = MergeConfig(base=str(base), adapters=(adapter,), out=tmp_path / "m")
    recorded = r"an adapter for another model \(its base elsewhere/small vs .*hidden_size 32 vs 64"
    with pytest.raises(TrainingError, match=recorded):
        run_merge(config, **QUIET)
    (adapter / BASE_RECORD).unlink()                 # an adapter from elsewhere: its tensors' shapes still tell
    shapes = r"another model \(model\.layers\.0\.\S+: (in|out)_features \d+ in the adapter, \d+ in "
    with pytest.raises(TrainingError, match=shapes):
        run_merge(config, **QUIET)
    assert not (tmp_path / "m" / "model").exists()
