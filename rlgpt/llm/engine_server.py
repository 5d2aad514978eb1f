"""A small OpenAI-compatible endpoint on 127.0.0.1 in front of the embedded engine.

It serves `GET /v1/models` and `POST /v1/chat/completions` (plain and streamed), with the
llama.cpp extensions rlgpt uses: `grammar` (GBNF) and `response_format` carrying a JSON
schema, both enforced by a grammar sampler. A request it cannot serve (malformed, a prompt
longer than the context window, a grammar llama.cpp would fail on) gets HTTP 400 with an
OpenAI-style error body, streamed or not. Run it as
`python -m rlgpt.llm.engine_server --model FILE.gguf --port N`.
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from rlgpt.llm.engine import Completion, EngineConfig, EngineError, LlamaEngine, Sampling
from rlgpt.llm.engine import schema_grammar as _schema_grammar
from rlgpt.logging import get_logger

log = get_logger("rlgpt.llm.engine_server")

LOOPBACK = ("127.0.0.1", "localhost", "::1")


class BadRequest(ValueError):
    """A request the endpoint refuses with HTTP 400."""


def _text_of(content: Any) -> str:
    if content is None:  # an assistant turn may carry no text
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    raise BadRequest("message content must be a string or a list of text parts")


def parse_messages(body: dict[str, Any]) -> list[dict[str, str]]:
    """The request's messages as role/content pairs (system, user and assistant only)."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("`messages` must be a non-empty list")
    parsed = []
    for message in messages:
        if not isinstance(message, dict):
            raise BadRequest("each message must be an object")
        role = message.get("role")
        if role == "developer":
            role = "system"
        if role not in ("system", "user", "assistant"):
            raise BadRequest(f"unsupported message role {role!r}")
        parsed.append({"role": str(role), "content": _text_of(message.get("content", ""))})
    return parsed


class GrammarCache:
    """GBNF grammars made from JSON schemas, kept by the schema's text."""

    def __init__(self) -> None:
        self._grammars: dict[str, str] = {}
        self._lock = threading.Lock()

    def for_schema(self, schema: dict[str, Any]) -> str:
        key = json.dumps(schema, sort_keys=True)
        with self._lock:
            grammar = self._grammars.get(key)
        if grammar is None:
            try:
                grammar = _schema_grammar(schema)
            except EngineError as exc:
                raise BadRequest(str(exc)) from exc
            with self._lock:
                self._grammars[key] = grammar
        return grammar


def parse_sampling(body: dict[str, Any], grammars: GrammarCache) -> Sampling:
    """Sampling settings and the answer's constraint from the request body."""
    grammar = body.get("grammar")
    fmt = body.get("response_format")
    if grammar is not None and not isinstance(grammar, str):
        raise BadRequest("`grammar` must be a GBNF string")
    if fmt is not None and not isinstance(fmt, dict):
        raise BadRequest("`response_format` must be an object")
    if grammar is None and fmt is not None:
        kind = fmt.get("type")
        schema: Any = None
        if kind == "json_schema":
            spec = fmt.get("json_schema") or {}
            if not isinstance(spec, dict):
                raise BadRequest("`response_format.json_schema` must be an object")
            schema = spec.get("schema")
        elif kind == "json_object":
            schema = fmt.get("schema") or {"type": "object"}
        elif kind not in (None, "text"):
            raise BadRequest(f"unsupported response_format type {kind!r}")
        if schema is not None:
            if not isinstance(schema, dict):
                raise BadRequest("the response_format schema must be an object")
            grammar = grammars.for_schema(schema)
    stop = body.get("stop") or []
    if isinstance(stop, str):
        stop = [stop]
    if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
        raise BadRequest("`stop` must be a string or a list of strings")
    stops = tuple(stop)
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens") or 768
    if isinstance(max_tokens, (int, float)) and max_tokens < 1:
        raise BadRequest("`max_tokens` must be positive")
    try:
        return Sampling(
            max_tokens=int(max_tokens),
            temperature=float(body.get("temperature", 0.0) or 0.0),
            seed=int(body.get("seed", 0) or 0),
            repeat_penalty=float(body.get("repeat_penalty", 1.0) or 1.0),
            top_p=float(body.get("top_p", 0.95) or 0.95),
            top_k=int(body.get("top_k", 40) or 40),
            grammar=grammar,
            stop=stops,
        )
    except (TypeError, ValueError) as exc:
        raise BadRequest(f"bad sampling parameter: {exc}") from exc


def usage_of(done: Completion) -> dict[str, Any]:
    """The OpenAI `usage` object, with the prompt tokens read from the prefix cache."""
    return {
        "prompt_tokens": done.prompt_tokens,
        "completion_tokens": done.completion_tokens,
        "total_tokens": done.prompt_tokens + done.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": done.cached_tokens},
    }


def timings_of(done: Completion) -> dict[str, float]:
    """llama.cpp-style timings, so clients can tell prompt time from generation time."""
    return {
        "prompt_n": done.prompt_tokens - done.cached_tokens,
        "prompt_ms": round(done.prompt_seconds * 1000, 1),
        "predicted_n": done.completion_tokens,
        "predicted_ms": round(done.generate_seconds * 1000, 1),
    }


class EngineHTTPServer(ThreadingHTTPServer):
    """The HTTP server holding the engine; requests queue on the engine's lock."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], engine: LlamaEngine, alias: str) -> None:
        if address[0] not in LOOPBACK:
            raise ValueError("the embedded model endpoint binds the loopback interface only")
        self.engine = engine
        self.alias = alias
        self.grammars = GrammarCache()
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: EngineHTTPServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("http", request=format % args)

    def _send_json(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, message: str, kind: str = "invalid_request_error") -> None:
        self._send_json(status, {"error": {"message": message, "type": kind}})

    def do_GET(self) -> None:
        if self.path.rstrip("/") in ("/v1/models", "/models"):
            model = {"id": self.server.alias, "object": "model", "owned_by": "rlgpt"}
            self._send_json(200, {"object": "list", "data": [model]})
        elif self.path.rstrip("/") == "/health":
            self._send_json(200, {"status": "ok"})
        else:
            self._error(404, f"no route {self.path}")

    def do_POST(self) -> None:
        if self.path.rstrip("/") not in ("/v1/chat/completions", "/chat/completions"):
            self._error(404, f"no route {self.path}")
            return
        try:
            length = int(self.headers.get("Content-Length", "0"))
            body = json.loads(self.rfile.read(length) or b"{}")
            if not isinstance(body, dict):
                raise BadRequest("the request body must be a JSON object")
            messages = parse_messages(body)
            sampling = parse_sampling(body, self.server.grammars)
        except (ValueError, json.JSONDecodeError) as exc:
            self._error(400, str(exc))
            return
        try:
            if body.get("stream"):
                # Checked before the stream starts: a refusal is still an HTTP 400.
                self.server.engine.prompt_tokens(messages, sampling)
                self._stream(body, messages, sampling)
                return
            done = self.server.engine.generate(messages, sampling)
        except EngineError as exc:
            self._error(400, str(exc))
            return
        except Exception as exc:  # the client gets an answer; the server keeps serving
            log.exception("completion_failed")
            self._error(500, f"internal error: {type(exc).__name__}", "server_error")
            return
        log.info("completion", **usage_of(done), **timings_of(done))
        self._send_json(200, self._payload(done, "chat.completion"))

    def _payload(self, done: Completion | None, obj: str, **choice: Any) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "id": f"chatcmpl-{uuid.uuid4().hex[:16]}",
            "object": obj,
            "created": int(time.time()),
            "model": self.server.alias,
        }
        if obj == "chat.completion" and done is not None:
            message = {"role": "assistant", "content": done.text}
            payload["choices"] = [
                {"index": 0, "message": message, "finish_reason": done.finish_reason}
            ]
            payload["usage"] = usage_of(done)
            payload["timings"] = timings_of(done)
        else:
            payload["choices"] = [{"index": 0, **choice}] if choice else []
        return payload

    def _stream(
        self, body: dict[str, Any], messages: list[dict[str, str]], sampling: Sampling
    ) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True

        def event(payload: dict[str, Any] | str) -> None:
            text = payload if isinstance(payload, str) else json.dumps(payload)
            self.wfile.write(f"data: {text}\n\n".encode())
            self.wfile.flush()

        send: Callable[[str], None] = lambda piece: event(  # noqa: E731
            self._payload(None, "chat.completion.chunk", delta={"content": piece})
        )
        try:
            event(self._payload(None, "chat.completion.chunk", delta={"role": "assistant"}))
            done = self.server.engine.generate(messages, sampling, on_text=send)
            event(
                self._payload(
                    None, "chat.completion.chunk", delta={}, finish_reason=done.finish_reason
                )
            )
            if (body.get("stream_options") or {}).get("include_usage"):
                event({**self._payload(None, "chat.completion.chunk"), "usage": usage_of(done)})
            event("[DONE]")
            log.info("completion", stream=True, **usage_of(done), **timings_of(done))
        except EngineError as exc:
            event({"error": {"message": str(exc), "type": "invalid_request_error"}})
        except (BrokenPipeError, ConnectionResetError):
            log.info("client_went_away")
        except Exception as exc:  # headers are sent: the error goes as the last event
            log.exception("completion_failed", stream=True)
            event(
                {
                    "error": {
                        "message": f"internal error: {type(exc).__name__}",
                        "type": "server_error",
                    }
                }
            )


def _watch_parent(parent: int) -> None:
    # Exit when the process that started us is gone, even after a SIGKILL of it.
    while True:
        if os.getppid() != parent:
            os._exit(0)
        time.sleep(1.0)


def main(argv: list[str] | None = None) -> None:
    """Load the model and serve until stopped."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="GGUF file")
    parser.add_argument("--alias", default="", help="model id the endpoint reports")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--n-ctx", type=int, default=EngineConfig.n_ctx)
    parser.add_argument("--threads", type=int, default=EngineConfig.n_threads)
    parser.add_argument("--threads-batch", type=int, default=EngineConfig.n_threads_batch)
    parser.add_argument("--prefix-slots", type=int, default=EngineConfig.prefix_slots)
    parser.add_argument("--parent-pid", type=int, default=0, help="exit when this process ends")
    args = parser.parse_args(argv)
    if args.host not in LOOPBACK:
        parser.error("the embedded model endpoint binds the loopback interface only")
    if args.parent_pid:
        threading.Thread(target=_watch_parent, args=(args.parent_pid,), daemon=True).start()
    config = EngineConfig(
        n_ctx=args.n_ctx,
        n_threads=args.threads,
        n_threads_batch=args.threads_batch,
        prefix_slots=args.prefix_slots,
    )
    engine = LlamaEngine(args.model, config)
    alias = args.alias or os.path.basename(args.model)
    server = EngineHTTPServer((args.host, args.port), engine, alias)
    log.info("engine_server_listening", host=args.host, port=args.port, model=alias)
    try:
        server.serve_forever()
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
