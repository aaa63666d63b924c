"""Which policy a run uses, as named at the edge (a flag, a checkpoint): a kind and its settings.

The session and the batch runner take a `Policy` object; this module is where a named
kind becomes one, by a table lookup, so a new policy is a new row, not a new branch.

    spec = PolicySpec.parse("replay:demo.json")         # or "local:MODEL_DIR", "openai", "builtin"
    policy = spec.build(store, Budget(max_turns=10))
"""
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Callable

from agent.builtin import BuiltinPolicy
from agent.errors import PolicyError
from agent.graph import Budget
from agent.local_policy import LocalPolicy
from agent.openai_policy import OpenAIConfig, OpenAIPolicy
from agent.policy import Policy
from agent.replay_policy import ReplayPolicy
from tools.history import HistoryStore


class PolicyKind(StrEnum):
    BUILTIN = "builtin"
    OPENAI = "openai"
    REPLAY = "replay"
    LOCAL = "local"             # a model directory loaded in-process with transformers (the `train` extra)


WITH_PATH = frozenset({PolicyKind.REPLAY, PolicyKind.LOCAL})     # kinds named as KIND:PATH


@dataclass(frozen=True)
class PolicySpec:
    kind: PolicyKind
    script: str | None = None       # replay: the script's absolute path
    model: str | None = None        # openai: the model (else from the environment or config.toml); local: its directory
    base_url: str | None = None     # openai: the endpoint (likewise)

    @staticmethod
    def parse(text: str | None, model: str | None = None, base_url: str | None = None) -> "PolicySpec":
        """`builtin`, `openai`, `replay:FILE`, `local:MODEL_DIR`; none given: openai when an endpoint is
        configured, else builtin."""
        if text is None:
            text = "openai" if (base_url or model or OpenAIConfig.configured()) else "builtin"
        name, _, path = text.partition(":")
        if name not in set(PolicyKind) or (name in WITH_PATH) != bool(path):
            raise PolicyError(f"unknown policy '{text}': use builtin, openai, replay:FILE or local:MODEL_DIR")
        if name == PolicyKind.LOCAL:
            return PolicySpec(PolicyKind.LOCAL, model=str(Path(path).resolve()))
        return PolicySpec(PolicyKind(name), str(Path(path).resolve()) if path else None, model, base_url)

    def to_state(self) -> dict:
        return {"kind": self.kind.value, "script": self.script, "model": self.model, "base_url": self.base_url}

    @staticmethod
    def from_state(saved: dict) -> "PolicySpec":
        return PolicySpec(PolicyKind(saved["kind"]), saved.get("script"), saved.get("model"), saved.get("base_url"))

    def build(self, store: HistoryStore, budget: Budget) -> Policy:
        return BUILDERS[self.kind](self, store, budget)


def _builtin(spec: PolicySpec, store: HistoryStore, budget: Budget) -> Policy:
    # It benchmarks configurations and keeps two turns to submit and finish.
    return BuiltinPolicy(history=store, budget=max(1, budget.max_turns - 2))


BUILDERS: dict[PolicyKind, Callable[[PolicySpec, HistoryStore, Budget], Policy]] = {
    PolicyKind.BUILTIN: _builtin,
    PolicyKind.OPENAI: lambda spec, store, budget: OpenAIPolicy(OpenAIConfig.resolve(base_url=spec.base_url,
                                                                                     model=spec.model)),
    PolicyKind.REPLAY: lambda spec, store, budget: ReplayPolicy.load(spec.script),
    PolicyKind.LOCAL: lambda spec, store, budget: LocalPolicy.load(spec.model),
}
