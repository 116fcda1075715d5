"""A fault-injecting HTTP reverse proxy for S3 integration tests (a helper, not a test module).

``FaultProxy`` listens on 127.0.0.1 and forwards every request (any method, headers, bodies,
``Range``) to an upstream S3-compatible server on the loopback interface (moto's server in the
suite). With seeded probabilities, or a queue of scheduled faults, it replaces a request's
response with a fault: an S3-style ``503 SlowDown``, a connection reset (RST, no response), or
a truncated ``GET`` body (the full ``Content-Length`` announced, part of the body sent, then the
connection closed). Bodies are streamed in chunks both ways, so large objects never sit whole
in memory. The trade-off: it uses a new upstream connection per request and a thread per client
connection, which is plenty for tests and far from a production proxy.

It is loaded by ``tests/conftest.py`` through ``importlib`` (the suite runs with
``--import-mode=importlib`` and ``tests/`` is not a package), and the ``fault_proxy`` fixture
yields a started instance.
"""

from __future__ import annotations

import contextlib
import http.client
import http.server
import ipaddress
import logging
import random
import socket
import struct
import sys
import threading
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

logger = logging.getLogger(__name__)

#: The fault kinds, as used by ``set_faults``, ``inject_next`` and ``counts``.
FAULT_KINDS = ("fail_503", "reset", "truncate")

# Hop-by-hop headers (RFC 9110 7.6.1) are never forwarded; Expect is answered by the proxy
# itself (http.server sends "100 Continue"), and botocore does not sign it.
_HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization",
                         "proxy-connection", "te", "trailer", "trailers", "transfer-encoding",
                         "upgrade", "expect"})


def _slow_down_body(request_id: str) -> bytes:
    """The XML error document S3 sends with a 503 SlowDown."""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        "<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message>"
        f"<RequestId>{request_id}</RequestId><HostId>fault-proxy</HostId></Error>"
    ).encode()


def _is_object_get(method: str, path: str) -> bool:
    """True for a path-style GetObject: ``GET /bucket/key`` (a key, not a listing or bucket op)."""
    if method != "GET":
        return False
    parts = urlsplit(path)
    bucket, _, key = parts.path.lstrip("/").partition("/")
    return bool(bucket) and bool(key) and bucket != "moto-api"


class FaultProxy:
    """A threaded reverse proxy in front of ``upstream`` that injects HTTP faults.

    Args:
        upstream: The server's base URL, e.g. ``http://127.0.0.1:5000``. Only loopback hosts
            are accepted, so a test can never reach outside the machine through the proxy.
        seed: Seed of the random generator that draws faults (the draws are reproducible for a
            sequential client; concurrent requests interleave in scheduler order).
        fail_503: Probability that an eligible request gets ``503 SlowDown``.
        reset: Probability that an eligible request's connection is reset without a response.
        truncate: Probability that an eligible ``GET`` with a non-empty body is cut short.
        only_get_objects: If True, only object GETs (``GET /bucket/key``) are eligible; bucket,
            listing, HEAD and upload requests always pass through.
        retry_after: The ``Retry-After`` value (seconds) sent with a 503; 0 keeps tests fast.
        chunk_size: Bytes per read/write when streaming bodies.
        timeout: Socket timeout (seconds) for the upstream and for idle client connections.

    Attributes:
        endpoint_url: ``http://127.0.0.1:PORT`` of the proxy (valid after ``start``).
        counts: Injected faults per kind (``fail_503``, ``reset``, ``truncate``) and
            ``forwarded`` for requests passed through untouched.
        log: ``(method, path, outcome)`` per request, outcome being a fault kind or the
            upstream status code as a string.
        errors: Unexpected exceptions raised while handling requests (a test may assert it is
            empty); client disconnects are expected and not recorded.

    Thread-safety: the knobs and counters may be read and changed from any thread.
    """

    def __init__(self, upstream: str, *, seed: int = 0, fail_503: float = 0.0, reset: float = 0.0,
                 truncate: float = 0.0, only_get_objects: bool = True, retry_after: int = 0,
                 chunk_size: int = 64 * 1024, timeout: float = 30.0) -> None:
        parts = urlsplit(upstream)
        if parts.scheme != "http" or parts.hostname is None or parts.port is None:
            msg = f"upstream must be http://HOST:PORT, got {upstream!r}"
            raise ValueError(msg)
        if not ipaddress.ip_address(parts.hostname).is_loopback:
            msg = f"upstream must be a loopback address, got {parts.hostname!r}"
            raise ValueError(msg)
        self.upstream_host: str = parts.hostname
        self.upstream_port: int = parts.port
        self.chunk_size = chunk_size
        self.timeout = timeout
        self.retry_after = retry_after
        self._lock = threading.Lock()
        self._rng = random.Random(seed)
        self._probabilities = {"fail_503": 0.0, "reset": 0.0, "truncate": 0.0}
        self._only_get_objects = only_get_objects
        self._scheduled: list[str] = []
        self.counts: dict[str, int] = {}
        self.log: list[tuple[str, str, str]] = []
        self.errors: list[BaseException] = []
        self._reset_counts()
        self.set_faults(fail_503=fail_503, reset=reset, truncate=truncate)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.endpoint_url = ""

    # -- knobs ------------------------------------------------------------------------------------

    def set_faults(self, *, fail_503: float | None = None, reset: float | None = None,
                   truncate: float | None = None, only_get_objects: bool | None = None,
                   seed: int | None = None) -> None:
        """Changes the fault probabilities (each in [0, 1], sum at most 1); None keeps a value."""
        with self._lock:
            probabilities = dict(self._probabilities)
            for kind, value in (("fail_503", fail_503), ("reset", reset), ("truncate", truncate)):
                if value is not None:
                    if not 0.0 <= value <= 1.0:
                        msg = f"{kind} must be a probability in [0, 1], got {value!r}"
                        raise ValueError(msg)
                    probabilities[kind] = float(value)
            if sum(probabilities.values()) > 1.0 + 1e-9:
                msg = f"fault probabilities sum to more than 1: {probabilities!r}"
                raise ValueError(msg)
            self._probabilities = probabilities
            if only_get_objects is not None:
                self._only_get_objects = only_get_objects
            if seed is not None:
                self._rng.seed(seed)

    def inject_next(self, kind: str, count: int = 1) -> None:
        """Schedules ``count`` faults of ``kind`` for the next eligible requests, in order.

        Scheduled faults take precedence over the probabilities; use them for deterministic
        tests ("the first GET fails with 503, the retry succeeds").
        """
        if kind not in FAULT_KINDS:
            msg = f"unknown fault kind {kind!r}; expected one of {FAULT_KINDS}"
            raise ValueError(msg)
        with self._lock:
            self._scheduled.extend([kind] * count)

    @property
    def faults(self) -> dict[str, float]:
        """The current fault probabilities."""
        with self._lock:
            return dict(self._probabilities)

    def clear(self) -> None:
        """Turns every fault off (probabilities 0, schedule emptied); zeroes counts and log."""
        with self._lock:
            self._probabilities = dict.fromkeys(self._probabilities, 0.0)
            self._scheduled.clear()
            self._reset_counts()

    def _reset_counts(self) -> None:
        self.counts = {"fail_503": 0, "reset": 0, "truncate": 0, "forwarded": 0}
        self.log = []

    def _draw(self, method: str, path: str) -> str | None:
        """The fault for this request, or None; counts nothing yet (see ``_record``)."""
        with self._lock:
            if self._only_get_objects and not _is_object_get(method, path):
                return None
            if path.startswith("/moto-api"):
                return None
            if self._scheduled:
                return self._scheduled.pop(0)
            x = self._rng.random()
            for kind, p in self._probabilities.items():
                if x < p:
                    return kind
                x -= p
            return None

    def _record(self, method: str, path: str, outcome: str) -> None:
        with self._lock:
            key = outcome if outcome in FAULT_KINDS else "forwarded"
            self.counts[key] += 1
            self.log.append((method, path, outcome))

    # -- lifecycle --------------------------------------------------------------------------------

    def start(self) -> FaultProxy:
        """Binds a free port on 127.0.0.1 and serves in a background thread; returns self."""
        if self._server is not None:
            msg = "FaultProxy already started"
            raise RuntimeError(msg)
        handler = type("_BoundHandler", (_Handler,), {"proxy": self, "timeout": self.timeout})
        self._server = _Server(("127.0.0.1", 0), handler)
        host, port = self._server.server_address[:2]
        self.endpoint_url = f"http://{host}:{port}"
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05},
                                        name=f"fault-proxy:{port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stops serving, closes idle keep-alive connections and joins every handler thread."""
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        server.shutdown()
        thread.join()
        server.close_client_connections()
        server.server_close()  # joins the handler threads (block_on_close)
        self._server = self._thread = None

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return (f"FaultProxy({self.endpoint_url or 'stopped'} -> "
                f"http://{self.upstream_host}:{self.upstream_port}, faults={self.faults}, "
                f"counts={self.counts})")


class _Server(http.server.ThreadingHTTPServer):
    """Tracks client sockets, so ``stop`` can wake handlers blocked on idle keep-alive reads."""

    daemon_threads = False
    block_on_close = True

    def __init__(self, address: tuple[str, int],
                 handler: type[http.server.BaseHTTPRequestHandler]) -> None:
        self._clients: set[socket.socket] = set()
        self._clients_lock = threading.Lock()
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._clients_lock:
            self._clients.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._clients_lock:
            self._clients.discard(request)
        super().shutdown_request(request)

    def close_client_connections(self) -> None:
        with self._clients_lock:
            clients = list(self._clients)
        for sock in clients:
            with contextlib.suppress(OSError):  # already closed by its handler
                sock.shutdown(socket.SHUT_RDWR)

    def handle_error(self, _request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError)):
            return  # the client went away (or we reset it): expected in fault tests
        proxy: FaultProxy = self.RequestHandlerClass.proxy  # type: ignore[attr-defined]
        if exc is not None:
            proxy.errors.append(exc)
        logger.exception("fault proxy: error while handling a request from %s", client_address)


class _Handler(http.server.BaseHTTPRequestHandler):
    """Forwards one client connection's requests (HTTP/1.1 keep-alive) to the upstream."""

    protocol_version = "HTTP/1.1"
    proxy: FaultProxy  # set on the per-proxy subclass
    timeout: float  # socket timeout for idle client connections (StreamRequestHandler)

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("fault proxy: " + format, *args)

    def __getattr__(self, name: str) -> Any:
        # BaseHTTPRequestHandler dispatches to do_<METHOD>; every method is proxied alike.
        if name.startswith("do_"):
            return self._proxy
        raise AttributeError(name)

    # -- request body -----------------------------------------------------------------------------

    def _request_body(self) -> Iterator[bytes] | None:
        """The request body as a chunk iterator (streamed, never read whole), or None."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked()
        length = int(self.headers.get("Content-Length") or 0)
        if length == 0:
            return None
        return self._read_exactly(length)

    def _read_exactly(self, length: int) -> Iterator[bytes]:
        remaining = length
        while remaining:
            chunk = self.rfile.read(min(remaining, self.proxy.chunk_size))
            if not chunk:
                msg = f"client sent {length - remaining} of {length} body bytes"
                raise ConnectionError(msg)
            remaining -= len(chunk)
            yield chunk

    def _read_chunked(self) -> Iterator[bytes]:
        while True:
            size = int(self.rfile.readline(1024).split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return
            yield from self._read_exactly(size)
            self.rfile.readline(8)  # CRLF after the chunk

    # -- faults -----------------------------------------------------------------------------------

    def _send_503(self) -> None:
        request_id = uuid.uuid4().hex.upper()[:16]
        body = _slow_down_body(request_id)
        self.send_response(503, "Slow Down")
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(0 if self.command == "HEAD" else len(body)))
        self.send_header("Retry-After", str(self.proxy.retry_after))
        self.send_header("x-amz-request-id", request_id)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _reset(self) -> None:
        """Closes the client socket with SO_LINGER 0, so the kernel sends RST, not FIN."""
        self.close_connection = True
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()

    # -- forwarding -------------------------------------------------------------------------------

    def _proxy(self) -> None:
        proxy = self.proxy
        method, path = self.command, self.path
        fault = proxy._draw(method, path)
        body = self._request_body()
        if fault == "reset":
            proxy._record(method, path, "reset")
            self._reset()
            return
        if fault == "fail_503":
            if body is not None:
                for _ in body:  # drain, so the connection stays usable (keep-alive)
                    pass
            proxy._record(method, path, "fail_503")
            self._send_503()
            return

        upstream = http.client.HTTPConnection(proxy.upstream_host, proxy.upstream_port,
                                              timeout=proxy.timeout)
        try:
            # The Host header goes through unchanged: SigV4 signs it.
            upstream.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
            for name, value in self.headers.items():
                if name.lower() not in _HOP_BY_HOP:
                    upstream.putheader(name, value)
            chunked = body is not None and "Content-Length" not in self.headers
            if chunked:
                upstream.putheader("Transfer-Encoding", "chunked")
            upstream.endheaders()
            if body is not None:
                for chunk in body:
                    upstream.send(b"%x\r\n%b\r\n" % (len(chunk), chunk) if chunked else chunk)
                if chunked:
                    upstream.send(b"0\r\n\r\n")
            response = upstream.getresponse()
            try:
                self._relay(method, path, response, fault)
            finally:
                response.close()
        finally:
            upstream.close()

    def _relay(self, method: str, path: str, response: http.client.HTTPResponse,
               fault: str | None) -> None:
        """Sends the upstream response to the client, streamed, cut short for ``truncate``."""
        proxy = self.proxy
        length_header = response.getheader("Content-Length")
        length = int(length_header) if length_header is not None else None
        has_body = method != "HEAD" and response.status not in (204, 304) and response.status >= 200
        if fault == "truncate" and not (has_body and length):
            fault = None  # nothing to cut: pass it through
        self.send_response_only(response.status, response.reason)
        for name, value in response.getheaders():
            if name.lower() not in _HOP_BY_HOP:
                self.send_header(name, value)
        rechunk = has_body and length is None
        if rechunk:
            self.send_header("Transfer-Encoding", "chunked")
        if fault == "truncate":
            self.send_header("Connection", "close")
        self.end_headers()
        if not has_body:
            proxy._record(method, path, str(response.status))
            return
        if fault == "truncate":
            assert length is not None
            with proxy._lock:
                cut = proxy._rng.randrange(1, length) if length > 1 else 0
            sent = 0
            while sent < cut:
                chunk = response.read(min(proxy.chunk_size, cut - sent))
                if not chunk:
                    break
                self.wfile.write(chunk)
                sent += len(chunk)
            proxy._record(method, path, "truncate")
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)  # FIN after a short body
            return
        while chunk := response.read(proxy.chunk_size):
            self.wfile.write(b"%x\r\n%b\r\n" % (len(chunk), chunk) if rechunk else chunk)
        if rechunk:
            self.wfile.write(b"0\r\n\r\n")
        proxy._record(method, path, str(response.status))
