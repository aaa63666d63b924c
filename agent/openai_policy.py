"""The `openai` policy: any OpenAI-compatible chat-completions endpoint with function calling.

OpenAI itself, vLLM, SGLang, Ollama or a fine-tuned checkpoint behind one of them. The
endpoint, model and key come from `OpenAIConfig` (CLI flags, then the environment:
OPENAI_BASE_URL, KERNELPILOT_MODEL, OPENAI_API_KEY, then $KERNELPILOT_HOME/config.toml,
whose [openai] table may also set timeout_s, attempts and backoff_s).
Timeouts, 429s, 5xx answers and refused connections are retried with exponential
backoff (tenacity); what cannot be retried — a refused key, a model the endpoint does
not have, a request it rejects — raises `PolicyError` with one line saying what to fix.

    policy = OpenAIPolicy(OpenAIConfig.resolve(base_url="http://localhost:8000/v1", model="qwen"))
    turn = policy.turn(turn_input)
"""
import os
import tomllib
from dataclasses import dataclass

import openai
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from agent.errors import PolicyError
from agent.policy import PolicyTurn, ToolCall, TurnInput
from tools.home import kernelpilot_home
from tools.safe_text import also_redact

RETRIED = (openai.APITimeoutError, openai.APIConnectionError, openai.RateLimitError, openai.InternalServerError)
DEFAULT_BASE_URL = "https://api.openai.com/v1"


@dataclass(frozen=True)
class OpenAIConfig:
    base_url: str
    model: str
    api_key: str
    timeout_s: float = 600.0
    attempts: int = 4             # tries per turn before the endpoint is declared down
    backoff_s: float = 2.0        # first wait; doubles each retry

    @staticmethod
    def resolve(base_url: str | None = None, model: str | None = None, **overrides) -> "OpenAIConfig":
        """Flags first, then the environment, then $KERNELPILOT_HOME/config.toml's [openai] table."""
        file = config_file_table()
        base_url = base_url or os.environ.get("OPENAI_BASE_URL") or file.get("base_url") or DEFAULT_BASE_URL
        model = model or os.environ.get("KERNELPILOT_MODEL") or file.get("model")
        if not model:
            raise PolicyError("no model named: pass --model, set KERNELPILOT_MODEL, or set model in the "
                              "[openai] table of $KERNELPILOT_HOME/config.toml")
        # Local servers (vLLM, Ollama) accept any key; api.openai.com refuses a missing one loudly.
        api_key = os.environ.get("OPENAI_API_KEY") or file.get("api_key") or "none"
        if isinstance(file.get("api_key"), str):     # a secret outside the environment: redacted all the same
            also_redact("config.toml api_key", file["api_key"])
        tuning = {key: file[key] for key in ("timeout_s", "attempts", "backoff_s") if key in file}
        for key, value in tuning.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise PolicyError(f"config.toml: [openai] {key} must be a positive number, not {value!r}")
        if "attempts" in tuning and not isinstance(tuning["attempts"], int):
            raise PolicyError("config.toml: [openai] attempts must be a whole number")
        return OpenAIConfig(base_url=base_url, model=model, api_key=api_key, **{**tuning, **overrides})

    @staticmethod
    def configured() -> bool:
        """Is an LLM endpoint configured at all (so that `optimize` should use it by default)?"""
        return bool(os.environ.get("OPENAI_BASE_URL") or os.environ.get("KERNELPILOT_MODEL")
                    or config_file_table().get("model"))


def config_file_table() -> dict:
    path = kernelpilot_home() / "config.toml"
    if not path.is_file():
        return {}
    try:
        return tomllib.loads(path.read_text()).get("openai", {})
    except tomllib.TOMLDecodeError as error:
        raise PolicyError(f"{path}: not valid TOML: {error}") from None


class OpenAIPolicy:
    name = "openai"

    def __init__(self, config: OpenAIConfig):
        self.config, self.model = config, config.model
        # Retries are ours (tenacity), so the client's own are off.
        self.client = openai.OpenAI(base_url=config.base_url, api_key=config.api_key,
                                    timeout=config.timeout_s, max_retries=0)

    def turn(self, turn_input: TurnInput) -> PolicyTurn:
        response = self._complete(turn_input.messages, turn_input.tools)
        if not response.choices:
            raise PolicyError(f"{self.config.base_url} answered with no choices")
        message = response.choices[0].message
        calls = tuple(ToolCall(id=call.id, name=call.function.name, arguments=call.function.arguments or "")
                      for call in (message.tool_calls or []) if call.type == "function")
        tokens = response.usage.total_tokens if response.usage else 0
        return PolicyTurn(text=message.content or "", tool_calls=calls, tokens=tokens)

    def _complete(self, messages: list[dict], tools: list[dict]):
        retrying = Retrying(retry=retry_if_exception_type(RETRIED), reraise=True,
                            stop=stop_after_attempt(self.config.attempts),
                            wait=wait_exponential(multiplier=self.config.backoff_s, max=60))
        try:
            return retrying(self.client.chat.completions.create, model=self.model, messages=messages, tools=tools)
        except RETRIED as error:
            raise PolicyError(f"{self.config.base_url}: {describe(error)} after {self.config.attempts} attempts; "
                              "is the endpoint up?") from None
        except (openai.AuthenticationError, openai.PermissionDeniedError):
            raise PolicyError(f"{self.config.base_url} refused the API key (set OPENAI_API_KEY)") from None
        except openai.NotFoundError:
            raise PolicyError(f"{self.config.base_url} has no model '{self.model}' (check --model)") from None
        except openai.APIStatusError as error:
            raise PolicyError(f"{self.config.base_url} rejected the request: HTTP {error.status_code}: "
                              f"{str(error.message)[:300]}") from None
        except openai.APIResponseValidationError as error:
            raise PolicyError(f"{self.config.base_url} answered something that is not a chat completion: "
                              f"{error}") from None


def describe(error: Exception) -> str:
    if isinstance(error, openai.APITimeoutError):
        return "timed out"
    if isinstance(error, openai.APIConnectionError):
        return "connection failed"
    if isinstance(error, openai.RateLimitError):
        return "rate-limited (HTTP 429)"
    return f"server error (HTTP {getattr(error, 'status_code', '5xx')})"
