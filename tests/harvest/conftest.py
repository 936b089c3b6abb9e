"""A real HTTP server on 127.0.0.1 for the harvest tests (no test ever reaches the internet).

Tests register routes on the session server and get absolute URLs back:

    def test_x(web):
        url = web.route("/img/a.jpg", body=jpeg_bytes, headers={"Content-Type": "image/jpeg"})
        web.route("/flaky", responses=[Reply(503, headers={"Retry-After": "1"}), Reply(200, body=b"...")])
        web.route("/slow", handler=lambda req: time.sleep(2) or Reply(200, body=b"..."))

Each route answers with a fixed ``Reply``, a sequence of replies (the last one repeats), or a handler
``(request) -> Reply``. ``web.hits(path)`` counts the requests a path received; ``web.requests`` keeps every
request's path and headers. Routes are cleared after each test.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    chunk_delay: float = 0.0  # seconds between 64 KiB chunks, to simulate a slow body


@dataclass
class SeenRequest:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes


class _Route:
    def __init__(self, replies: Sequence[Reply] | None, handler: Callable[[SeenRequest], Reply] | None):
        self.replies = list(replies or [])
        self.handler = handler
        self.calls = 0
        self.lock = threading.Lock()

    def answer(self, request: SeenRequest) -> Reply:
        with self.lock:
            index = self.calls
            self.calls += 1
        if self.handler is not None:
            return self.handler(request)
        return self.replies[min(index, len(self.replies) - 1)]


class LoopbackWeb:
    """The route table behind the server; see the module docstring."""

    def __init__(self) -> None:
        self.base_url = ""
        self.routes: dict[str, _Route] = {}
        self.requests: list[SeenRequest] = []
        self.lock = threading.Lock()

    def route(
        self,
        path: str,
        body: bytes | str = b"",
        status: int = 200,
        headers: dict[str, str] | None = None,
        responses: Sequence[Reply] | None = None,
        handler: Callable[[SeenRequest], Reply] | None = None,
    ) -> str:
        """Register ``path`` (without query string) and return its absolute URL."""
        if responses is None and handler is None:
            data = body.encode() if isinstance(body, str) else body
            responses = [Reply(status, data, dict(headers or {}))]
        with self.lock:
            self.routes[path] = _Route(responses, handler)
        return self.url(path)

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    def hits(self, path: str) -> int:
        with self.lock:
            return sum(1 for r in self.requests if r.path == path)

    def reset(self) -> None:
        with self.lock:
            self.routes.clear()
            self.requests.clear()


def _make_handler(web: LoopbackWeb) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
            pass

        def _serve(self) -> None:
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            seen = SeenRequest(self.command, parts.path, parts.query, dict(self.headers), self.rfile.read(length))
            with web.lock:
                web.requests.append(seen)
                route = web.routes.get(parts.path)
            reply = route.answer(seen) if route else Reply(404, b"not found", {"Content-Type": "text/plain"})
            try:
                self.send_response(reply.status)
                headers = {k.lower(): v for k, v in reply.headers.items()}
                for key, value in reply.headers.items():
                    self.send_header(key, value)
                if "content-length" not in headers:
                    self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                if self.command == "HEAD":
                    return
                if reply.chunk_delay:
                    import time

                    for start in range(0, len(reply.body), 65536):
                        time.sleep(reply.chunk_delay)
                        self.wfile.write(reply.body[start : start + 65536])
                        self.wfile.flush()
                else:
                    self.wfile.write(reply.body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (size cap, timeout): that is what some tests want

        do_GET = do_POST = do_HEAD = _serve

    return Handler


class _QuietServer(ThreadingHTTPServer):
    """Clients that hang up early (size cap, timeout) are expected here, so their resets are not printed."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        import sys

        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


@pytest.fixture(scope="session")
def _loopback_server() -> Iterator[LoopbackWeb]:
    web = LoopbackWeb()
    server = _QuietServer(("127.0.0.1", 0), _make_handler(web))
    server.daemon_threads = True
    web.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, name="loopback-web", daemon=True)
    thread.start()
    yield web
    server.shutdown()
    server.server_close()


@pytest.fixture
def web(_loopback_server: LoopbackWeb) -> Iterator[LoopbackWeb]:
    """The loopback web server with an empty route table (unknown paths answer 404)."""
    _loopback_server.reset()
    yield _loopback_server
    _loopback_server.reset()


@dataclass
class RawReply:
    """Bytes written to the socket exactly as given, each part after its delay in seconds; then the socket closes.

    For what ``Reply`` cannot send: a header line repeated, a body that trickles in byte by byte.
    """

    parts: Sequence[tuple[float, bytes]]


class _SocketServer:
    """A listening socket on 127.0.0.1 that answers each connection in a thread of its own (``_answer``)."""

    scheme = "http"

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.base_url = f"{self.scheme}://127.0.0.1:{self.server.getsockname()[1]}"
        self.connections = 0
        self.closed = False

    def serve_forever(self) -> None:
        while not self.closed:
            try:
                connection, _ = self.server.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._answer, args=(connection,), daemon=True).start()

    def _answer(self, connection: socket.socket) -> None:
        raise NotImplementedError


@contextlib.contextmanager
def _serving(web: _SocketServer, name: str) -> Iterator[None]:
    thread = threading.Thread(target=web.serve_forever, name=name, daemon=True)
    thread.start()
    try:
        yield
    finally:
        web.closed = True
        with contextlib.suppress(OSError):
            web.server.shutdown(socket.SHUT_RDWR)  # wakes the accept() that close() alone may leave blocked
        web.server.close()


class RawWeb(_SocketServer):
    """A bare socket server on 127.0.0.1, one request per connection; unknown paths answer 404 (robots.txt too)."""

    def __init__(self) -> None:
        super().__init__()
        self.routes: dict[str, RawReply] = {}
        self.paths: list[str] = []
        self.lock = threading.Lock()

    def route(self, path: str, parts: Sequence[tuple[float, bytes]]) -> str:
        with self.lock:
            self.routes[path] = RawReply(list(parts))
        return self.base_url + path

    def hits(self, path: str) -> int:
        with self.lock:
            return self.paths.count(path)

    def _answer(self, connection: socket.socket) -> None:
        with connection:
            request = b""
            while b"\r\n\r\n" not in request:
                data = connection.recv(65536)
                if not data:
                    return
                request += data
            path = urlsplit(request.split(b" ", 2)[1].decode("latin-1")).path
            with self.lock:
                self.paths.append(path)
                reply = self.routes.get(path)
            parts = reply.parts if reply else [(0.0, b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")]
            try:
                for delay, data in parts:
                    time.sleep(delay)
                    connection.sendall(data)
            except OSError:
                pass  # the client hung up (deadline, size cap): what these tests provoke


@pytest.fixture
def raw_web() -> Iterator[RawWeb]:
    """A :class:`RawWeb` server for one test."""
    web = RawWeb()
    with _serving(web, "raw-web"):
        yield web


# A self-signed certificate for 127.0.0.1 (test-only key, valid until 2126): no client trusts it.
SELF_SIGNED_PEM = Path(__file__).parent / "data" / "selfsigned-127.0.0.1.pem"


class TlsWeb(_SocketServer):
    """An HTTPS server on 127.0.0.1 whose certificate does not verify; ``connections`` counts those it accepted.

    With ``hang_up`` set, it closes each connection before the TLS handshake instead: a TLS failure that is
    not about the certificate.
    """

    scheme = "https"

    def __init__(self) -> None:
        super().__init__()
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(SELF_SIGNED_PEM)
        self.hang_up = False

    def _answer(self, connection: socket.socket) -> None:
        with connection:
            if self.hang_up:
                return
            # The client refuses the certificate: the handshake fails (an OSError) and nothing is answered.
            with contextlib.suppress(OSError), self.context.wrap_socket(connection, server_side=True) as tls:
                tls.recv(65536)
                tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")


@pytest.fixture
def tls_web() -> Iterator[TlsWeb]:
    """A :class:`TlsWeb` server for one test."""
    web = TlsWeb()
    with _serving(web, "tls-web"):
        yield web


TINY = "crowdrank-test-tiny"  # the tiny open_clip model config harvest registers (harvest/model_configs)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised tiny open_clip model saved as a local checkpoint file (what --checkpoint takes)."""
    import open_clip
    import torch

    from harvest.embed import register_model_configs

    register_model_configs()
    torch.manual_seed(0)
    model = open_clip.create_model(TINY, pretrained=None)
    path = tmp_path_factory.mktemp("weights") / "tiny.pt"
    torch.save({"state_dict": model.state_dict()}, path)
    return path
