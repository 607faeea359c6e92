"""The load generators: keep-alive connections on plain sockets, closed and open
loop."""

from __future__ import annotations

import http.client
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
from benchcommon.report import percentile

# Set on Ctrl-C: the client threads stop sending.
STOP = threading.Event()


# -- the load generators ---------------------------------------------------------------


@dataclass
class Request:
    path: str
    body: bytes
    message_ids: list[str] = field(default_factory=list)


@dataclass
class Result:
    """One request's outcome: status, response JSON (or text) and timings."""

    status: int
    accepted: int
    duplicates: int
    latency: float  # seconds, from the (intended) send time to the full response
    error: str = ""


def _parse(status: int, raw: bytes) -> tuple[int, int, str]:
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return 0, 0, raw[:200].decode(errors="replace")
    if status == 200 and isinstance(data, dict):
        return int(data.get("accepted", 0)), int(data.get("duplicates", 0)), ""
    return 0, 0, str(data)[:200]


class Connection:
    """A keep-alive HTTP/1.1 connection on a plain socket, reopened if the server
    closes it.

    Not http.client: it parses each response's headers with the email package, ~300 us
    of CPU a request, which on this machine's two cores is CPU the server does not
    get (at 1,500 req/s, a fifth of the machine). This sends prebuilt request bytes
    and reads just the status line, Content-Length (or chunks) and Connection: ~30 us.
    """

    def __init__(self, port: int, headers: dict[str, str]) -> None:
        self.port = port
        self.head = "".join(f"{k}: {v}\r\n" for k, v in headers.items()).encode()
        self.sock: socket.socket | None = None
        self.buf = b""

    def _open(self) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=60)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock, self.buf = sock, b""
        return sock

    def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        request = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n".encode()
            + self.head
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        for attempt in (1, 2):
            fresh = self.sock is None
            try:
                sock = self.sock or self._open()
                sock.sendall(request)
                return self._response(sock)
            except (OSError, http.client.HTTPException):
                # A keep-alive connection the server closed: reopen it, once.
                self.close()
                if attempt == 2 or fresh or STOP.is_set():
                    raise
        raise AssertionError("unreachable")

    def _read_until(self, sock: socket.socket, marker: bytes) -> int:
        while (i := self.buf.find(marker)) < 0:
            self._fill(sock)
        return i

    def _fill(self, sock: socket.socket) -> None:
        chunk = sock.recv(65536)
        if not chunk:
            raise http.client.RemoteDisconnected("server closed the connection")
        self.buf += chunk

    def _take(self, sock: socket.socket, n: int) -> bytes:
        while len(self.buf) < n:
            self._fill(sock)
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def _response(self, sock: socket.socket) -> tuple[int, bytes]:
        end = self._read_until(sock, b"\r\n\r\n")
        head = self.buf[:end].decode("latin-1").split("\r\n")
        self.buf = self.buf[end + 4 :]
        try:
            status = int(head[0].split(" ", 2)[1])
        except (IndexError, ValueError):
            raise http.client.BadStatusLine(head[0]) from None
        headers = {}
        for line in head[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if "content-length" in headers:
            body = self._take(sock, int(headers["content-length"]))
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            parts = []
            while True:
                i = self._read_until(sock, b"\r\n")
                size = int(self.buf[:i].split(b";")[0], 16)
                self.buf = self.buf[i + 2 :]
                parts.append(self._take(sock, size))
                self._take(sock, 2)
                if size == 0:
                    break
            body = b"".join(parts)
        else:  # the body runs to the end of the connection
            while True:
                try:
                    self._fill(sock)
                except http.client.RemoteDisconnected:
                    break
            body, self.buf = self.buf, b""
            self.close()
        if headers.get("connection", "").lower() == "close":
            self.close()
        return status, body

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


def _sender(
    port: int,
    headers: dict[str, str],
    requests: list[Request],
    results: list[Result | None],
    claim: Any,
    start_gate: threading.Barrier,
    when: Any = None,
) -> None:
    """One client thread on its own keep-alive connection.

    ``claim()`` hands out request indexes (None: stop). With ``when(i)`` the request
    is sent at that perf_counter time and its latency counts from then.
    """
    conn = Connection(port, headers)
    start_gate.wait()
    try:
        while not STOP.is_set() and (i := claim()) is not None:
            if when is not None:
                t0 = when(i)
                delay = t0 - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
            else:
                t0 = time.perf_counter()
            req = requests[i]
            try:
                status, raw = conn.post(req.path, req.body)
            except (OSError, http.client.HTTPException) as exc:
                results[i] = Result(0, 0, 0, time.perf_counter() - t0, repr(exc))
                continue
            accepted, dups, err = _parse(status, raw)
            results[i] = Result(status, accepted, dups, time.perf_counter() - t0, err)
    finally:
        conn.close()


def _run_senders(threads: int, target: Any, start: Any) -> None:
    # Every sender opens its connection, then waits here; when all have, start()
    # runs once and they all go.
    start_gate = threading.Barrier(threads + 1, action=start)
    pool = [
        threading.Thread(target=target, args=(start_gate,), daemon=True)
        for _ in range(threads)
    ]
    for t in pool:
        t.start()
    start_gate.wait(timeout=60)
    try:
        for t in pool:
            while t.is_alive():  # a timed join, so that Ctrl-C gets through
                t.join(0.5)
    except BaseException:
        STOP.set()  # the senders finish the request in hand and quit
        raise


def closed_loop(
    port: int,
    headers: dict[str, str],
    requests: list[Request],
    concurrency: int,
    max_seconds: float | None = None,
) -> tuple[list[Result], float]:
    """Send requests with ``concurrency`` in flight, each thread waiting for its answer.

    Stops taking new requests after ``max_seconds``. Returns the results of the
    requests sent (a prefix of ``requests``) and the seconds it took.
    """
    results: list[Result | None] = [None] * len(requests)
    lock = threading.Lock()
    state = {"next": 0, "began": 0.0}

    def claim() -> int | None:
        with lock:
            i = state["next"]
            if i >= len(requests):
                return None
            if max_seconds and time.perf_counter() - state["began"] > max_seconds:
                return None
            state["next"] = i + 1
            return i

    def start() -> None:
        state["began"] = time.perf_counter()

    _run_senders(
        concurrency,
        lambda gate: _sender(port, headers, requests, results, claim, gate),
        start,
    )
    seconds = time.perf_counter() - state["began"]
    sent = results[: state["next"]]
    return [r or Result(0, 0, 0, 0.0, "no result") for r in sent], seconds


@dataclass
class OpenLoopRun:
    results: list[Result]
    seconds: float  # from the first intended send to the last answer
    gave_up: bool  # fell more than max_lag behind the schedule and stopped
    worst_lag: float  # the most a send started behind its intended time


def open_loop(
    port: int,
    headers: dict[str, str],
    requests: list[Request],
    rate: float,
    threads: int,
    max_lag: float = 5.0,
) -> OpenLoopRun:
    """Send request i at start + i/rate, whatever happened to the earlier ones.

    Latency counts from the intended send time, so a stalled server is charged for
    every request it delayed (no coordinated omission). ``threads`` must exceed the
    requests in flight at once (rate x latency), or sends start late: the worst
    lag is reported. If a send would start ``max_lag`` seconds late the server
    cannot keep up; the run stops there rather than queue for minutes.
    """
    results: list[Result | None] = [None] * len(requests)
    lock = threading.Lock()
    state: dict[str, Any] = {"next": 0, "t0": 0.0, "lag": 0.0, "gave_up": False}

    def when(i: int) -> float:
        return state["t0"] + i / rate

    def claim() -> int | None:
        with lock:
            i = state["next"]
            if i >= len(requests) or state["gave_up"]:
                return None
            lag = time.perf_counter() - when(i)
            if lag > max_lag:
                state["gave_up"] = True
                return None
            state["lag"] = max(state["lag"], lag)
            state["next"] = i + 1
            return i

    def start() -> None:
        state["t0"] = time.perf_counter() + 0.05

    _run_senders(
        threads,
        lambda gate: _sender(port, headers, requests, results, claim, gate, when),
        start,
    )
    seconds = time.perf_counter() - state["t0"]
    sent = results[: state["next"]]
    return OpenLoopRun(
        results=[r or Result(0, 0, 0, 0.0, "no result") for r in sent],
        seconds=seconds,
        gave_up=state["gave_up"],
        worst_lag=state["lag"],
    )


def latency_ms(results: list[Result]) -> dict[str, float]:
    lat = sorted(r.latency * 1000 for r in results)
    return {
        "p50": round(percentile(lat, 50), 2),
        "p90": round(percentile(lat, 90), 2),
        "p99": round(percentile(lat, 99), 2),
        "max": round(lat[-1], 2) if lat else float("nan"),
    }
