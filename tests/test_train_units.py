"""Training's quick parts (issue 21): stage configs from TOML and --set (typed, one-line errors),
the trajectory choice (the multi-mentor rule and the trust rules), the local policy's reading of
a generated reply, `local:DIR` specs, the `train` command line's help and exit codes, and that
the CLI imports no training library unless a stage runs.

    pytest -q tests/test_train_units.py
"""
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from agent.cli.common import ExitCode
from agent.cli.main import main
from agent.errors import PolicyError
from agent.local_policy import LocalPolicy, parse_reply
from agent.policies import PolicyKind, PolicySpec
from agent.policy import Backend
from policy_training.config import ConfigError, PeftChoice, describe, load_config
from policy_training.__main__ import main as training_main
from policy_training.export import ExportConfig
from policy_training.sft import SFTConfig, SFTForm
from policy_training.traces import StoredProblem, Trajectory, choose
from tests.conftest import ROOT
from tools.history import EvaluationRecord
from tools.records import EvalStatus

HEAVY = ("trl", "transformers", "peft", "datasets", "tokenizers", "accelerate")
ANALYSIS = "## Performance analysis\nmemory-bound; one fused pass."


# ---- configs ---------------------------------------------------------------------------------

def test_a_toml_file_and_overrides_fill_the_stage_config_with_typed_values(tmp_path):
    path = tmp_path / "sft.toml"
    path.write_text('model = "tiny"\ndata = "data"\nout = "runs/sft"\nlearning_rate = 0.001\npeft = "lora"\n'
                    'max_steps = 5\n')
    config = load_config(SFTConfig, path, ["max_steps=7", "peft=dora+rslora", "assistant_only_loss=false",
                                           "form=prompt_completion", "max_length=512"])
    assert config.learning_rate == 0.001 and config.max_steps == 7 and config.max_length == 512
    assert config.peft is PeftChoice.DORA_RSLORA and config.form is SFTForm.PROMPT_COMPLETION
    assert config.assistant_only_loss is False and config.data == Path("data")
    assert load_config(SFTConfig, path, ["max_steps=none"]).max_steps is None
    export = load_config(ExportConfig, None, ["out=x", "policies=builtin, openai:qwen"])
    assert export.policies == ("builtin", "openai:qwen")


@pytest.mark.parametrize("overrides, message", [
    (["bogus=1"], "unknown key(s) bogus for SFTConfig"),
    (["max_steps=abc"], "max_steps must be an integer, not 'abc'"),
    (["peft=qlora"], "peft must be one of none, lora, dora+rslora, not 'qlora'"),
    (["assistant_only_loss=maybe"], "assistant_only_loss must be true or false"),
    (["learning_rate=-1"], "learning_rate must be positive"),
    (["noequals"], "write it as key=value"),
])
def test_a_bad_key_or_value_is_one_clear_line(overrides, message):
    base = ["model=m", "data=d", "out=o"]
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)").replace("+", r"\+")) as caught:
        load_config(SFTConfig, None, base + overrides)
    assert "\n" not in str(caught.value)


def test_missing_required_keys_wrong_toml_types_and_bad_files_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="model, data, out must be given"):
        load_config(SFTConfig)
    path = tmp_path / "c.toml"
    path.write_text('model = "m"\ndata = "d"\nout = "o"\nmax_steps = "ten"\n')
    with pytest.raises(ConfigError, match=f"{path}: max_steps must be an integer"):
        load_config(SFTConfig, path)
    path.write_text("model = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(SFTConfig, path)
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(SFTConfig, tmp_path / "missing.toml")


def test_help_lists_every_key_with_its_type_default_and_comment():
    text = describe(SFTConfig)
    assert "  peft (none|lora|dora+rslora, default none): none (full fine-tuning), lora, dora+rslora" in text
    assert "  model (str, required):" in text and "max_steps (int or none, default none)" in text


# ---- choosing trajectories -------------------------------------------------------------------

def record(id: int, status: str = "correct", speedup: float | None = None, flags=(), analysis: str | None = ANALYSIS,
           session: str = "s1", turn: int = 1) -> EvaluationRecord:
    return EvaluationRecord(id=id, problem="p", problem_hash="h" * 64, candidate_hash=f"c{id}", status=status,
                            flags=list(flags), reason="", runtime_ms=None, eager_ms=None, compile_ms=None,
                            speedup_vs_eager=speedup, speedup_vs_compile=None, max_abs_error=0.0, rel_error=0.0,
                            device="H100", mode="gpu", size="full", sandbox="process", versions={}, session=session,
                            created="", policy="builtin", model=None, analysis=analysis, turn=turn, call_id=f"k{id}",
                            source=f"# kernel {id}")


def trajectory(session: str, *records: EvaluationRecord, policy: str = "builtin", problem: str = "h" * 64):
    return Trajectory(session=session, problem=StoredProblem(problem, "p", "suite", None, None, "src"), policy=policy,
                      model=None, backend=Backend.TRITON, evaluations=records)


def test_the_fastest_trusted_correct_trace_wins_across_mentors_and_flagged_ones_never_count():
    fast_but_flagged = record(1, speedup=9.0, flags=["no_custom_kernel"], session="a")
    slow = record(2, speedup=1.2, session="a", turn=2)
    faster = record(3, speedup=2.0, session="b", turn=3)
    without_analysis = record(4, speedup=5.0, analysis="here is a kernel", session="c")
    wrong = record(5, status="incorrect", session="d")
    excluded_ours = record(6, speedup=7.0, flags=["network_not_isolated"], session="e")
    chosen, skipped = choose([trajectory("a", fast_but_flagged, slow), trajectory("b", faster, policy="openai"),
                              trajectory("c", without_analysis), trajectory("d", wrong),
                              trajectory("e", excluded_ours)])
    assert len(chosen) == 1 and chosen[0].evaluation.id == 3 and chosen[0].trajectory.session == "b"
    assert chosen[0].mentors == ("builtin", "openai")
    assert skipped == {"another mentor's was better": 1, "no performance analysis": 1, "no correct evaluation": 1,
                       "correct only with a disqualifying flag": 1}


def test_timed_beats_untimed_then_the_earlier_turn_and_each_problem_keeps_its_own():
    untimed, timed = record(1, session="a"), record(2, speedup=0.9, session="b", turn=4)
    chosen, _ = choose([trajectory("a", untimed), trajectory("b", timed)])
    assert chosen[0].evaluation.id == 2
    early, late = record(3, session="c", turn=1), record(4, session="d", turn=2)
    other = replace(trajectory("e", record(5, session="e")), problem=StoredProblem("g" * 64, "q", "s", None, None, ""))
    chosen, _ = choose([trajectory("d", late), trajectory("c", early), other])
    assert sorted(c.evaluation.id for c in chosen) == [3, 5]


# ---- the local policy's reading of a reply, and its spec -------------------------------------

def test_a_reply_becomes_tool_calls_or_a_submitted_kernel():
    kernel = "import torch\nclass ModelNew(torch.nn.Module):\n    pass\n"
    turn = parse_reply(f"<think>\nhmm\n</think>\n{ANALYSIS}\n<tool_call>\n"
                       '{"name": "benchmark", "arguments": {"code": "x"}}\n</tool_call>', turn=2, tokens=9)
    assert turn.text == ANALYSIS and turn.tokens == 9
    assert [(c.id, c.name, json.loads(c.arguments)) for c in turn.tool_calls] == [("local-2-0", "benchmark", {"code": "x"})]
    bare = parse_reply(f"{ANALYSIS}\n\n```python\n{kernel}```", turn=0)
    assert [c.name for c in bare.tool_calls] == ["submit"] and json.loads(bare.tool_calls[0].arguments) == {"code": kernel}
    assert parse_reply("gibberish ``` no kernel", turn=0).tool_calls == ()
    broken = parse_reply("<tool_call>{not json</tool_call>", turn=1).tool_calls[0]
    assert broken.name == "unparsed_tool_call" and broken.arguments == "{not json"


def test_local_specs_name_a_model_directory(tmp_path):
    spec = PolicySpec.parse(f"local:{tmp_path}")
    assert spec.kind is PolicyKind.LOCAL and spec.model == str(tmp_path.resolve())
    assert PolicySpec.from_state(spec.to_state()) == spec
    with pytest.raises(PolicyError, match="unknown policy"):
        PolicySpec.parse("local")
    with pytest.raises(PolicyError, match="not a Hugging Face model directory"):
        LocalPolicy.load(tmp_path)


# ---- the command line ------------------------------------------------------------------------

def test_train_help_and_exit_codes(tmp_path, capsys):
    with pytest.raises(SystemExit) as shown:
        main(["train", "sft", "--help"])
    out = capsys.readouterr().out
    assert shown.value.code == 0 and "dora+rslora" in out and "learning_rate (float" in out
    base = ["train", "sft", "--set", "model=m", "--set", "data=d"]
    assert main(base + ["--set", "out=o", "--set", "bogus=1"]) == ExitCode.USAGE
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown key(s) bogus" in err
    assert main(base + ["--set", f"out={tmp_path / 'o'}"]) == ExitCode.USAGE
    assert "no such file" in capsys.readouterr().err
    assert training_main(["export", "--set", "held_out_fraction=2", "--set", "out=o"]) == 2
    assert "held_out_fraction must be within [0, 1)" in capsys.readouterr().err
    with pytest.raises(SystemExit) as bare:
        main(["train"])
    assert bare.value.code == 2


@pytest.mark.slow
def test_the_cli_imports_no_training_library_unless_a_stage_runs(tmp_path):
    script = (f"import json, sys\nfrom agent.cli.main import main\n"
              f"main(['train', 'export', '--set', 'out={tmp_path / 'x'}', '--show-config'])\n"
              f"main(['history', 'list', '--json'])\n"
              f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "KERNELPILOT_HOME": str(tmp_path)})
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []
