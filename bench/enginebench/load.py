"""Open-loop HTTP sending, and the background load (its own process: spawn, no
Django)."""

from __future__ import annotations

import datetime as dt
import http.client
import math
import random
import signal
import threading
import time
from dataclasses import dataclass
from typing import Any

import orjson
from benchcommon.report import percentile
from benchcommon.shop import PAGES

# -- open-loop HTTP sending (also run in the load generator's process) -----------------


class Connection:
    """A keep-alive HTTP/1.1 connection, reopened if the server closed it."""

    def __init__(self, port: int, headers: dict[str, str]) -> None:
        self.port = port
        self.headers = headers
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        for attempt in (1, 2):
            try:
                self.conn.request("POST", path, body, self.headers)
                resp = self.conn.getresponse()
                return resp.status, resp.read()
            except (
                http.client.RemoteDisconnected,
                ConnectionResetError,
                BrokenPipeError,
            ):
                self.conn.close()
                self.conn = http.client.HTTPConnection(
                    "127.0.0.1", self.port, timeout=60
                )
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        self.conn.close()


@dataclass
class Sent:
    intended: float  # wall-clock time the request was due to be sent
    latency: float  # seconds from ``intended`` to the full response
    status: int
    error: str = ""


def open_loop(
    port: int,
    headers: dict[str, str],
    requests: list[tuple[str, bytes]],
    rate: float,
    threads: int,
    start_at: float,
    stop: threading.Event | None = None,
    max_lag: float = 5.0,
) -> tuple[list[Sent], float]:
    """Send request i at wall time start_at + i / rate, whatever happened to the
    earlier ones; latency counts from that time (no coordinated omission). Stops if
    a send would start ``max_lag`` s late. Returns the results and the worst lag."""
    results: list[Sent | None] = [None] * len(requests)
    lock = threading.Lock()
    state = {"next": 0, "lag": 0.0}

    def claim() -> int | None:
        with lock:
            i = state["next"]
            if i >= len(requests) or (stop is not None and stop.is_set()):
                return None
            lag = time.time() - (start_at + i / rate)
            if lag > max_lag:
                return None
            state["lag"] = max(state["lag"], lag)
            state["next"] = i + 1
            return i

    def sender() -> None:
        conn = Connection(port, headers)
        try:
            while (i := claim()) is not None:
                due = start_at + i / rate
                delay = due - time.time()
                if delay > 0:
                    time.sleep(delay)
                path, body = requests[i]
                try:
                    status, raw = conn.post(path, body)
                    error = "" if status == 200 else raw[:200].decode(errors="replace")
                except OSError as exc:
                    status, error = 0, repr(exc)
                results[i] = Sent(due, time.time() - due, status, error)
        finally:
            conn.close()

    pool = [threading.Thread(target=sender, daemon=True) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        while t.is_alive():  # a timed join, so that Ctrl-C gets through
            t.join(0.5)
    sent = [r for r in results[: state["next"]] if r is not None]
    return sent, state["lag"]


def dist_ms(seconds: list[float]) -> dict[str, float]:
    values = sorted(s * 1000 for s in seconds)
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "p50": round(percentile(values, 50), 1),
        "p90": round(percentile(values, 90), 1),
        "p99": round(percentile(values, 99), 1),
        "max": round(values[-1], 1),
    }


def iso(t: float) -> str:
    return (
        dt.datetime.fromtimestamp(t, dt.UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


# -- the background load (its own process: spawn, no Django) ---------------------------


def load_requests(
    rate: float, batch: int, seconds: float, contacts: int, seed: int, run: str
) -> list[tuple[str, bytes]]:
    """page events, ``batch`` per request (one visitor's), as many as ``seconds``
    at ``rate`` events/s need."""
    rng = random.Random(seed)
    count = max(1, math.ceil(rate * seconds / batch))
    now = time.time()
    out = []
    n = 0
    for _ in range(count):
        who = rng.randrange(contacts)
        events = []
        for k in range(batch):
            n += 1
            path = rng.choice(PAGES)
            events.append(
                {
                    "type": "page",
                    "name": path.strip("/").split("/")[0].title() or "Home",
                    "messageId": f"{run}-{n:09d}",
                    "userId": f"load-{who}",
                    "anonymousId": f"anon-load-{who}",
                    "timestamp": iso(now - 2 + k * 0.2),
                    "properties": {"path": path, "referrer": "https://www.google.com/"},
                    "context": {
                        "ip": f"203.0.{who % 256}.{who % 250 + 1}",
                        "userAgent": "Mozilla/5.0 (X11; Linux x86_64) bench",
                        "locale": "en-US",
                        "page": {"path": path},
                    },
                }
            )
        if batch == 1:
            out.append(("/api/v1/page", orjson.dumps(events[0])))
        else:
            body = {"batch": events, "sentAt": iso(now)}
            out.append(("/api/v1/batch", orjson.dumps(body)))
    return out


def load_main(params: dict[str, Any], results: Any) -> None:
    """The load generator's process: page events at a fixed rate, open loop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops us
    reqs = load_requests(
        params["rate"],
        params["batch"],
        params["seconds"],
        params["contacts"],
        params["seed"],
        params["run"],
    )
    headers = {"Content-Type": "application/json", "Authorization": params["auth"]}
    req_rate = params["rate"] / params["batch"]
    results.put({"ready": True})
    sent, lag = open_loop(
        params["port"],
        headers,
        reqs,
        req_rate,
        params["threads"],
        params["start_at"],
    )
    errors: dict[str, int] = {}
    for s in sent:
        if s.status != 200:
            label = f"HTTP {s.status} {' '.join(s.error.split())[:80]}"
            errors[label] = errors.get(label, 0) + 1
    ok = sum(1 for s in sent if s.status == 200)
    # Over the time the load should have taken, or longer if the answers came late.
    planned = len(reqs) / req_rate
    last = max((s.intended + s.latency for s in sent), default=params["start_at"])
    span = max(planned, last - params["start_at"])
    results.put(
        {
            "offered_events_per_s": params["rate"],
            "events_per_request": params["batch"],
            "requests": len(sent),
            "requests_planned": len(reqs),
            "events_sent": ok * params["batch"],
            "achieved_events_per_s": round(ok * params["batch"] / span, 1),
            "latency_ms": dist_ms([s.latency for s in sent]),
            "errors": errors,
            "worst_send_lag_ms": round(lag * 1000, 1),
            "fell_behind": len(sent) < len(reqs),
        }
    )
