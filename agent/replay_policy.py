"""The `replay` policy: scripted turns from a JSON file, for tests and demos.

    {"model": "script-1",
     "turns": [
       {"text": "## Performance analysis\\n...", "tool_calls": [
           {"name": "benchmark", "code_file": "../candidates/04_softmax_rows.py"}]},
       {"text": "## Performance analysis\\n...", "tool_calls": [
           {"name": "submit", "arguments": {"code": "..."}}]},
       {"text": "## Performance analysis\\nDone."}]}

A tool call gives `arguments` as an object, or as a string sent verbatim (to script
malformed arguments), or `code_file`, a path relative to the script whose text becomes
`{"code": ...}`. Turn N of a session plays the script's turn N, so a resumed session
goes on where it stopped; past the end the policy ends the session.

    policy = ReplayPolicy.load("demo.json")
"""
import json
from pathlib import Path

from agent.errors import PolicyError
from agent.policy import PolicyTurn, ToolCall, TurnInput

END_TEXT = "## Performance analysis\nThe script has no more turns."


class ReplayPolicy:
    name = "replay"

    def __init__(self, turns: list[PolicyTurn], model: str = "replay"):
        self.turns, self.model = turns, model

    @staticmethod
    def load(path: str | Path) -> "ReplayPolicy":
        path = Path(path)
        try:
            script = json.loads(path.read_text())
            turns = [parse_turn(raw, index, path.parent) for index, raw in enumerate(script["turns"])]
        except FileNotFoundError:
            raise PolicyError(f"{path}: no such replay script") from None
        except (json.JSONDecodeError, KeyError, TypeError, OSError) as error:
            raise PolicyError(f"{path}: not a replay script ({type(error).__name__}: {error})") from None
        return ReplayPolicy(turns, model=script.get("model", f"replay:{path.name}"))

    def turn(self, turn_input: TurnInput) -> PolicyTurn:
        if turn_input.turn >= len(self.turns):
            return PolicyTurn(text=END_TEXT)
        return self.turns[turn_input.turn]


def parse_turn(raw: dict, index: int, base: Path) -> PolicyTurn:
    calls = tuple(parse_call(call, f"turn{index}-call{n}", base) for n, call in enumerate(raw.get("tool_calls", [])))
    return PolicyTurn(text=raw["text"], tool_calls=calls)


def parse_call(raw: dict, call_id: str, base: Path) -> ToolCall:
    if "code_file" in raw:
        path = base / raw["code_file"]
        if not path.is_file():
            raise PolicyError(f"{path}: no such code_file (named by tool call {call_id} of the replay script)")
        arguments = json.dumps({"code": path.read_text()})
    else:
        given = raw.get("arguments", {})
        arguments = given if isinstance(given, str) else json.dumps(given)
    return ToolCall(id=call_id, name=raw["name"], arguments=arguments)
