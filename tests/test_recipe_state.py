"""policy_training/recipe_state.py through `python -m policy_training.recipe pack|unpack`: a STATE
carried between sessions without its models or KernelBench's text, restored from a checkout and
checked; a full folder, a missing archive and a member that climbs out are one line each."""
import io
import tarfile
from pathlib import Path

import pytest

from policy_training.recipe import RecipeConfig, check_held_out, main, prepare

MINI = Path(__file__).resolve().parent / "fixtures" / "kernelbench_mini"
SMALL = RecipeConfig(count=3, held_out_fraction=0.25, level1=(1,), level2=())
OURS = ("steps/sft.json", "sft/adapter/adapter_model.safetensors", "sft/metrics.jsonl", "eval/sft/results.jsonl")
LEFT_OUT = ("sft/model/config.json", "sft/trainer/optimizer.pt", "sft/rebuilt/model/config.json", "eval/history.db",
            "eval/sft/transcripts.jsonl")


@pytest.fixture
def state(tmp_path) -> Path:
    folder = tmp_path / "state"
    prepare(folder, SMALL, MINI, log=lambda line: None)
    for name in OURS + LEFT_OUT:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(f"{name}\n")
    return folder


def test_pack_leaves_out_models_and_kernelbench_and_unpack_restores_a_checked_state(state, tmp_path, capsys):
    archive = tmp_path / "state.tgz"
    assert main(["pack", "--state", str(state), "--out", str(archive)]) == 0
    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
    assert set(OURS) <= names and not names & set(LEFT_OUT)
    assert "heldout/gen_elementwise_a1a57072.py" in names and not [n for n in names if "/kb_" in n]

    again = tmp_path / "again"
    assert main(["unpack", "--archive", str(archive), "--state", str(again), "--kernelbench", str(MINI)]) == 0
    assert "1 KernelBench files" in capsys.readouterr().out
    assert len(check_held_out(again)) == 2
    for name in OURS:
        assert (again / name).read_text() == (state / name).read_text()
    assert not any((again / name).exists() for name in LEFT_OUT)


def test_unpack_refuses_a_full_folder_a_missing_archive_and_a_climbing_member(state, tmp_path, capsys):
    archive = tmp_path / "state.tgz"
    assert main(["pack", "--state", str(state), "--out", str(archive)]) == 0
    capsys.readouterr()
    hostile = tmp_path / "hostile.tgz"
    with tarfile.open(hostile, "w:gz") as tar:
        info = tarfile.TarInfo("../escaped.txt")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"pwn"))
    cases = ((archive, state, "is not empty"), (tmp_path / "none.tgz", tmp_path / "new", "no such archive"),
             (hostile, tmp_path / "victim", "cannot unpack"))
    for source, target, message in cases:
        assert main(["unpack", "--archive", str(source), "--state", str(target), "--kernelbench", str(MINI)]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and "\n" not in err
    assert not (tmp_path / "escaped.txt").exists()
