"""A real HTTP server on 127.0.0.1 that speaks OpenAI chat completions, replaying a script.

The one fake in the agent's tests stands where the LLM's text would come from: the
transport (HTTP, JSON, status codes, timeouts) is real, so the policy's client, retries
and error handling run exactly as they do against vLLM or OpenAI.

    with ChatServer([reply("## Performance analysis ...", call("benchmark", {"code": src})),
                     Status(500), reply("## Performance analysis\\ndone")]) as server:
        ... OpenAIPolicy(OpenAIConfig(base_url=server.url, model="m", api_key="k")) ...
        server.requests   # the JSON bodies received, in order
"""
import itertools
import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass(frozen=True)
class Status:
    """Answer with this HTTP error (500, 429, 401, 404 ...)."""

    code: int
    message: str = "scripted error"


@dataclass(frozen=True)
class Stall:
    """Hold the request this long before answering (to trip the client's timeout), then send `then`."""

    seconds: float
    then: dict


_call_ids = itertools.count(1)


def call(name: str, arguments: dict | str, call_id: str | None = None) -> dict:
    text = arguments if isinstance(arguments, str) else json.dumps(arguments)
    return {"id": call_id or f"call-{name}-{next(_call_ids)}", "type": "function",
            "function": {"name": name, "arguments": text}}


def reply(text: str, *calls: dict) -> dict:
    message = {"role": "assistant", "content": text}
    if calls:
        message["tool_calls"] = list(calls)
    return message


class ChatServer:
    def __init__(self, script: list, models: tuple[str, ...] = ("test-model",)):
        self.script, self.models, self.requests = list(script), models, []
        self.arrivals: list[float] = []     # time.monotonic() of each request, to measure the client's waits
        self.lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.httpd.server_port}/v1"

    def __enter__(self) -> "ChatServer":
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def next_action(self, body: dict):
        with self.lock:
            self.requests.append(body)
            self.arrivals.append(time.monotonic())
            unanswered = unanswered_calls(body.get("messages", []))
            if unanswered:     # what api.openai.com answers to a broken conversation
                return Status(400, f"tool_calls without tool messages: {', '.join(unanswered)}")
            if body.get("model") not in self.models:
                return Status(404, f"The model '{body.get('model')}' does not exist")
            if not self.script:
                return reply("## Performance analysis\nThe scripted server has nothing more to say.")
            return self.script.pop(0)

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if self.path != "/v1/chat/completions":
                    return self._send(404, {"error": {"message": f"no route {self.path}"}})
                action = server.next_action(body)
                if isinstance(action, Stall):
                    time.sleep(action.seconds)
                    action = action.then
                if isinstance(action, Status):
                    return self._send(action.code, {"error": {"message": action.message, "type": "scripted",
                                                              "code": str(action.code)}})
                self._send(200, completion(body["model"], action))

            def _send(self, code: int, payload: dict) -> None:
                data = json.dumps(payload).encode()
                try:
                    self.send_response(code)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass    # the client gave up (a scripted timeout): nothing to answer

            def log_message(self, *args):
                pass

        return Handler


def unanswered_calls(messages: list[dict]) -> list[str]:
    """Tool-call ids of an assistant message not answered by the tool messages right after it."""
    missing = []
    for index, message in enumerate(messages):
        if message.get("role") == "assistant" and message.get("tool_calls"):
            answers = set()
            for following in messages[index + 1:]:
                if following.get("role") != "tool":
                    break
                answers.add(following.get("tool_call_id"))
            missing += [c["id"] for c in message["tool_calls"] if c["id"] not in answers]
    return missing


def completion(model: str, message: dict) -> dict:
    finish = "tool_calls" if message.get("tool_calls") else "stop"
    return {"id": "chatcmpl-test", "object": "chat.completion", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120}}
