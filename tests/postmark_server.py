"""A local stand-in for Postmark's email API, for tests: a real HTTP server that
django-anymail's own Postmark backend talks to (its ``api_url`` pointed here).

It answers ``POST /email`` as Postmark's API reference documents ("Send a single
email": 200 with ``MessageID`` / ``ErrorCode`` 0, 422 with an ``ErrorCode``), and
misbehaves on demand, by the recipient's address:

- ``drop@...``    reads the whole request, then closes the connection unanswered
- ``hang@...``    reads the whole request and answers 200 only when released (so the
                  client times out after the ESP took the message)
- ``fail-503@...`` answers 503 (Postmark's "service unavailable")
- ``bad@...``     answers 422, ErrorCode 300 ("invalid email request")
- ``gateway-502@...``, ``gateway-504@...`` read the whole request, then answer as a
                  load balancer in front of the ESP does when the ESP is slow or
                  failing (the ESP behind it may have the message)
- ``garble@...``  (over TLS) reads the whole request, then writes a broken TLS
                  record instead of an answer (``garble-plain@``: plain-text HTTP)

``start_postmark(tls=...)`` serves HTTPS with a certificate from ``trustme``.

Every whole request that reached it is recorded (``received``: the Message-ID
header of each), answered or not: what a real ESP would have, and could deliver. A
request cut off mid-body (its client killed) is not: an ESP takes nothing from it.
"""

import json
import os
import socket
import ssl
import threading
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TOKEN = "postmark-test-token"


@dataclass
class Received:
    message_id: str
    to: str
    subject: str
    headers: dict[str, str]
    answered: bool


@dataclass
class PostmarkStandIn:
    server: ThreadingHTTPServer
    thread: threading.Thread
    received: list[Received] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    # recipients (or "every Nth") made to hang, besides hang@ addresses
    hang_every: int = 0
    # how long a hanging request waits before it answers 200 after all
    hang_seconds: float = 120

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        scheme = "https" if isinstance(self.server.socket, ssl.SSLSocket) else "http"
        return f"{scheme}://{host}:{port}/"

    def mailer(self, *, timeout: float = 5) -> dict:
        """A MAILERS entry sending through anymail's Postmark backend to here."""
        return {
            "BACKEND": "anymail.backends.postmark.EmailBackend",
            "OPTIONS": {"server_token": TOKEN, "api_url": self.url, "timeout": timeout},
        }

    def message_ids(self) -> list[str]:
        with self.lock:
            return [r.message_id for r in self.received]

    def stop(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


def start_postmark(tls=None, *, prompt: bool = False) -> PostmarkStandIn:
    """The stand-in on a free port; over HTTPS with ``tls``, a trustme CA.
    ``prompt``: answer in a millisecond, as an ESP does, instead of 40 ms late (a
    test of thousands of sends needs it; the workflow chaos test is paced by the
    slow answers)."""
    standin: PostmarkStandIn

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:  # quiet
            pass

        def setup(self) -> None:
            super().setup()
            if prompt:
                # The status line and headers go in one write and the body in
                # another: with Nagle's algorithm the body waits for the client's
                # delayed ACK of the first, 40 ms on Linux, every request.
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            if len(raw) < length:
                # The client went away mid-request (a killed worker): an ESP
                # takes no message from a truncated request, so none is recorded.
                self.close_connection = True
                return None
            try:
                body = json.loads(raw or b"{}")
            except ValueError:
                return self._answer(422, {"ErrorCode": 402, "Message": "Invalid JSON"})
            if self.headers.get("X-Postmark-Server-Token") != TOKEN:
                return self._answer(401, {"ErrorCode": 10, "Message": "Bad token"})
            to = str(body.get("To", ""))
            local = to.split("<")[-1].split("@")[0]
            headers = {h["Name"]: h["Value"] for h in body.get("Headers") or []}
            if local.startswith("fail-503"):
                return self._answer(503, {"Message": "Service unavailable"})
            if local.startswith("bad"):
                return self._answer(
                    422, {"ErrorCode": 300, "Message": "Invalid email request"}
                )
            with standin.lock:
                count = len(standin.received) + 1
            hang = local.startswith("hang") or (
                standin.hang_every and count % standin.hang_every == 0
            )
            unanswered = ("drop", "gateway", "garble")
            record = Received(
                message_id=headers.get("Message-ID", ""),
                to=to,
                subject=str(body.get("Subject", "")),
                headers=headers,
                answered=not (hang or local.startswith(unanswered)),
            )
            with standin.lock:
                standin.received.append(record)
            if local.startswith("drop"):
                # Took the request whole, then the connection goes: no answer.
                self.close_connection = True
                self.connection.shutdown(2)
                return None
            if local.startswith("gateway"):
                status = int(local.removeprefix("gateway-") or 502)
                return self._answer(status, {"message": "upstream timed out"})
            if local.startswith("garble"):
                return self._garble(local)
            if hang:
                standin.release.wait(standin.hang_seconds)  # the client gave up first
            return self._answer(
                200,
                {
                    "To": to,
                    "SubmittedAt": "2026-11-25T12:00:00.0000000-05:00",
                    "MessageID": str(uuid.uuid4()),
                    "ErrorCode": 0,
                    "Message": "OK",
                },
            )

        def _garble(self, local: str) -> None:
            """Past the TLS layer: a record the client cannot decrypt, or (plain@)
            a plain-text answer, as a proxy speaking HTTP on a TLS port would."""
            self.close_connection = True
            with socket.socket(fileno=os.dup(self.connection.fileno())) as raw:
                if local.startswith("garble-plain"):
                    raw.sendall(b"HTTP/1.1 502 Bad Gateway\r\n\r\n")
                else:
                    raw.sendall(b"\x17\x03\x03\x00\x10" + b"not-a-tls-record")

        def _answer(self, status: int, payload: dict) -> None:
            content = json.dumps(payload).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)
            except OSError:
                pass  # the client gave up waiting (hang@): nobody to answer

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    if tls is not None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.configure_cert(context)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    standin = PostmarkStandIn(server=server, thread=thread)
    thread.start()
    return standin
