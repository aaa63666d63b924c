"""Stage configs: a TOML file and `--set key=value` overrides, read into a stage's frozen dataclass.

Each stage keeps its config next to it (`SFTConfig` in sft.py, `ExportConfig` in export.py,
...): a frozen dataclass whose fields have defaults, types and a `# comment` (shown by
`kernelpilot train VERB --help`). `load_config` reads a flat TOML table into it, applies the
overrides (each value converted to the field's type: str, int, float, bool, Path, a
StrEnum, a tuple of those given as a TOML array or comma-separated, `X | None` with
`none`), and checks the result once; an unknown key, a value of the wrong type or a missing
required field is one `ConfigError` line naming the file and the key.

    config = load_config(SFTConfig, Path("sft.toml"), ["learning_rate=1e-4", "peft=lora"])
    python -m policy_training sft --config sft.toml --set max_steps=10
"""
import dataclasses
import inspect
import json
import tomllib
import types
import typing
from enum import Enum, StrEnum
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


class ConfigError(ValueError):
    """A config that cannot be used: one line saying where and why."""


class PeftChoice(StrEnum):
    """How the weights are trained: all of them, or adapters merged back when the stage ends."""

    NONE = "none"                  # full fine-tuning
    LORA = "lora"
    DORA_RSLORA = "dora+rslora"    # weight-decomposed LoRA with rank-stabilised scaling


def load_config(kind: type[T], path: Path | None = None, overrides: typing.Sequence[str] = ()) -> T:
    """`kind` filled from the TOML file at `path` (if any), then from `key=value` overrides."""
    values: dict[str, Any] = {}
    if path is not None:
        values.update(read_toml(path))
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: write it as key=value")
        values[key.strip()] = text
    where = " + ".join(([str(path)] if path else []) + (["--set"] if overrides else [])) or "the config"
    return build(kind, values, where)


def read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: not valid TOML ({error})") from None


def build(kind: type[T], values: dict[str, Any], where: str) -> T:
    fields = {f.name: f for f in dataclasses.fields(kind)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)} for {kind.__name__} "
                          f"(known: {', '.join(fields)})")
    hints = typing.get_type_hints(kind)
    converted = {key: convert(hints[key], value, f"{where}: {key}") for key, value in values.items()}
    missing = [name for name, f in fields.items() if name not in converted and is_required(f)]
    if missing:
        raise ConfigError(f"{where}: {', '.join(missing)} must be given ({kind.__name__} has no default for it)")
    config = kind(**converted)
    problem = config.check() if hasattr(config, "check") else None
    if problem:
        raise ConfigError(f"{where}: {problem}")
    return config


def is_required(f: dataclasses.Field) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


def convert(hint, value: Any, label: str) -> Any:
    """`value` (from TOML, or the text of a --set) as type `hint`; ConfigError if it is not one."""
    options = typing.get_args(hint) if isinstance(hint, types.UnionType) else ()
    if options:
        if type(None) in options and (value is None or (isinstance(value, str) and value.lower() in ("none", ""))):
            return None
        inner = [o for o in options if o is not type(None)]
        return convert(inner[0], value, label)
    if typing.get_origin(hint) is tuple:
        item = typing.get_args(hint)[0]
        parts = [p.strip() for p in value.split(",") if p.strip()] if isinstance(value, str) else value
        if not isinstance(parts, list | tuple):
            raise ConfigError(f"{label} takes a list, not {value!r}")
        return tuple(convert(item, part, label) for part in parts)
    return scalar(hint, value, label)


def scalar(hint, value: Any, label: str) -> Any:
    text = isinstance(value, str)
    try:
        if hint is bool:
            if text and value.lower() in ("true", "false", "1", "0", "yes", "no"):
                return value.lower() in ("true", "1", "yes")
            if isinstance(value, bool):
                return value
            raise ValueError
        if hint is int and not isinstance(value, bool) and (text or isinstance(value, int)):
            return int(value)
        if hint is float and not isinstance(value, bool) and (text or isinstance(value, int | float)):
            return float(value)
        if hint in (str, Path) and text:
            return hint(value)
        if inspect.isclass(hint) and issubclass(hint, Enum) and text:
            return hint(value)
    except ValueError:
        pass
    raise ConfigError(f"{label} must be {type_name(hint, long=True)}, not {value!r}")


KINDS = {int: "an integer", float: "a number", bool: "true or false", str: "a string", Path: "a path"}


def type_name(hint, long: bool = False) -> str:
    """'an integer', 'one of a, b' (long) or 'int', 'a|b' (short, for --help)."""
    if inspect.isclass(hint) and issubclass(hint, Enum):
        values = [m.value for m in hint]
        return f"one of {', '.join(values)}" if long else "|".join(values)
    if isinstance(hint, types.UnionType):
        return " or ".join(type_name(o, long) if o is not type(None) else "none" for o in typing.get_args(hint))
    if typing.get_origin(hint) is tuple:
        return f"a list of {type_name(typing.get_args(hint)[0], long)}" if long else \
            f"list of {type_name(typing.get_args(hint)[0])}"
    return KINDS.get(hint, getattr(hint, "__name__", str(hint))) if long else getattr(hint, "__name__", str(hint))


def as_dict(config) -> dict[str, Any]:
    """The config as JSON-ready values (paths and enums as strings), for manifests and summaries."""
    return json.loads(json.dumps(dataclasses.asdict(config), default=str))


def describe(kind: type) -> str:
    """'key (type, default): comment' lines for a stage's --help, from the dataclass and its comments."""
    comments = field_comments(kind)
    hints = typing.get_type_hints(kind)
    lines = []
    for f in dataclasses.fields(kind):
        if is_required(f):
            default = "required"
        else:
            default = f"default {shown(f.default if f.default is not dataclasses.MISSING else f.default_factory())}"
        lines.append(f"  {f.name} ({type_name(hints[f.name])}, {default}): {comments.get(f.name, '')}".rstrip(": "))
    return "\n".join(lines)


def shown(value: Any) -> str:
    """A default as it would be written with --set."""
    if isinstance(value, Enum):
        return str(value.value)
    if isinstance(value, tuple):
        return ",".join(shown(v) for v in value) or "(empty)"
    return "none" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


def field_comments(kind: type) -> dict[str, str]:
    """{field: the `# comment` on its line} from the source of the class and of the dataclasses it extends."""
    found = {}
    for klass in reversed([k for k in kind.__mro__ if dataclasses.is_dataclass(k)]):
        for line in inspect.getsource(klass).splitlines():
            name, _, rest = line.strip().partition(":")
            if "#" in rest and name.isidentifier():
                found[name] = rest.split("#", 1)[1].strip()
    return found
