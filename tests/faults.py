"""A model endpoint that fails on demand: an HTTP proxy in front of the real local model server.

Each request is forwarded to the real server unless the proxy's `mode` says otherwise:
`refuse` (the proxy is stopped: connections are refused), `hang` (no answer), `drop` (the
connection closes without an answer), `status:<code>` (that HTTP error), `truncate` (the real
answer, cut in half), `invalid` (a well-formed completion whose text is not the JSON asked
for). `fail_after` requests are passed first. Only 127.0.0.1 is bound.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

HANG_SECONDS = 60.0


class FaultyEndpoint:
    """The proxy; `url` is its OpenAI-compatible base URL (ending in /v1)."""

    def __init__(self, upstream: str, mode: str = "pass", fail_after: int = 0) -> None:
        self.upstream = upstream.rstrip("/")
        self.mode = mode
        self.fail_after = fail_after
        self.requests = 0
        self.port = 0
        self._server: ThreadingHTTPServer | None = None
        self.start()

    @property
    def url(self) -> str:
        """The proxy's base URL."""
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> None:
        """Listen (again, on the same port once it had one)."""
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def do_GET(self) -> None:
                self._answer(b"")

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                self._answer(self.rfile.read(length))

            def _answer(self, body: bytes) -> None:
                proxy.requests += 1
                mode = proxy.mode if proxy.requests > proxy.fail_after else "pass"
                if mode == "hang":
                    time.sleep(HANG_SECONDS)
                    return
                if mode == "drop":
                    self.close_connection = True
                    self.connection.close()
                    return
                if mode.startswith("status:"):
                    self._send(int(mode.split(":")[1]), b'{"error": {"message": "injected"}}')
                    return
                status, data = proxy.forward(self.command, self.path, body)
                if mode == "invalid" and status == 200 and self.command == "POST":
                    answer = json.loads(data)
                    choice = answer["choices"][0]
                    choice["message"]["content"] = "this is not the JSON you want"
                    choice["finish_reason"] = "stop"
                    data = json.dumps(answer).encode()
                if mode == "truncate" and self.command == "POST":
                    self._send(status, data, cut=len(data) // 2)
                    return
                self._send(status, data)

            def _send(self, status: int, data: bytes, cut: int | None = None) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data if cut is None else data[:cut])
                if cut is not None:
                    self.close_connection = True

        ThreadingHTTPServer.allow_reuse_address = True
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def forward(self, method: str, path: str, body: bytes) -> tuple[int, bytes]:
        """The real server's answer to a request."""
        base = self.upstream.removesuffix("/v1")
        request = urllib.request.Request(
            base + path, data=body or None, method=method,
            headers={"Content-Type": "application/json"},
        )  # fmt: skip
        try:
            with urllib.request.urlopen(request, timeout=600) as answer:
                return answer.status, answer.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def stop(self) -> None:
        """Stop listening: new connections are refused."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
