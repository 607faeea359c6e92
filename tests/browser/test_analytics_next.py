"""Segment's analytics.js (analytics-next, vendored in vendor/analytics-next/) in
headless Chromium, sending to the tracking API as a shop's page would: from another
origin, so every call with its Authorization and X-Retry-Count headers needs a CORS
preflight. It is configured with cdnSettings and apiHost, so it never calls Segment.

Nothing sleeps: the tests watch the page's requests and responses (watching, not
routing: with a route, Playwright would answer the CORS preflights itself) and poll
the database with a deadline.
"""

import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from apps.core.redis import redis_connection
from apps.events import api
from apps.events.models import Event

from .conftest import WAIT_SECONDS

pytestmark = pytest.mark.browser

ANALYTICS_NEXT = Path(__file__).parent / "vendor" / "analytics-next"
SCRIPT = ANALYTICS_NEXT / "analytics-next.umd.js"

PAGE = """<!doctype html>
<html><head><title>Shop</title><script src="/analytics-next.umd.js"></script></head>
<body><h1>Shop</h1>
<script>
  const key = %(key)r;
  AnalyticsNext.AnalyticsBrowser.load(
    {
      writeKey: key,
      cdnSettings: {
        integrations: {"Segment.io": {apiKey: key, apiHost: %(api_host)r, protocol: "http"}},
        metrics: {sampleRate: 0},
      },
    },
    {disableClientPersistence: true},
  ).then(([analytics]) => analytics.track("order_completed", {total: 42}));
</script></body></html>
"""


@dataclass
class Shop:
    # the API's answers as they come: (status, the request's X-Retry-Count)
    answers: list[tuple[int, str | None]] = field(default_factory=list)
    # what the page asked of any other server
    outside: list[str] = field(default_factory=list)


@pytest.fixture
def shop_server():
    """The shop's own web server, on 127.0.0.1 (the API is on localhost: another
    origin): its page, set by the test, and analytics-next. A real server, so that
    Chromium sees the page come from this machine (a page Playwright made up would
    be a public one, which may not call a loopback address)."""
    pages: dict[str, tuple[str, bytes]] = {
        "/analytics-next.umd.js": ("text/javascript", SCRIPT.read_bytes())
    }

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            content_type, body = pages.get(self.path, ("text/plain", b""))
            self.send_response(200 if body else 404)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    server.pages = pages
    server.origin = f"http://127.0.0.1:{server.server_address[1]}"
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


def open_shop(page, live_server, shop_server, source) -> Shop:
    """The shop's page, loading analytics-next with the source's key."""
    source.allowed_origins = [shop_server.origin]
    source.save()
    api_host = live_server.url.removeprefix("http://") + "/api/v1"
    shop_server.pages["/shop"] = (
        "text/html",
        (PAGE % {"key": source.key, "api_host": api_host}).encode(),
    )
    seen = Shop()

    def asked(request):
        if not request.url.startswith((shop_server.origin, live_server.url)):
            seen.outside.append(request.url)

    page.on("request", asked)

    def answered(response):
        if "/api/v1/" in response.url and response.request.method == "POST":
            retry = response.request.headers.get("x-retry-count")
            seen.answers.append((response.status, retry))

    page.on("response", answered)
    page.goto(f"{shop_server.origin}/shop")
    return seen


def retried(shop: Shop) -> bool:
    """Whether a retry (a call with X-Retry-Count) was answered 200: stored, as the
    API answers only once the events are committed."""
    return any(status == 200 and retry for status, retry in shop.answers)


# A retry comes after analytics-next's backoff (half a second to a second, then
# doubling) or the 429's Retry-After: more than a page needs to show something.
RETRY_WAIT_SECONDS = 3 * WAIT_SECONDS


def wait_until(page, condition, *, what: str):
    """Poll ``condition`` (a read) until it is truthy, or fail; page.wait_for_timeout,
    not time.sleep: Playwright keeps serving the page's events meanwhile."""
    deadline = time.monotonic() + RETRY_WAIT_SECONDS
    while not (result := condition()):
        if time.monotonic() > deadline:
            pytest.fail(f"gave up after {RETRY_WAIT_SECONDS}s waiting for {what}")
        page.wait_for_timeout(50)
    return result


def test_an_event_refused_with_429_is_retried_and_stored(
    page, live_server, shop_server, browser_source
):
    # given a source over its rate limit for now (its windows full in Redis, as a
    # burst from other web processes would leave them)
    browser_source.rate_limit_per_second = 1
    now = int(time.time())
    windows = [f"nudge:rate:{browser_source.pk}:{s}" for s in range(now - 1, now + 60)]
    for window in windows:
        redis_connection().set(window, 10**9, ex=120)
    # when the shop's page tracks an order
    shop = open_shop(page, live_server, shop_server, browser_source)
    wait_until(page, lambda: (429, None) in shop.answers, what="the 429")
    # and the burst is over
    redis_connection().delete(*windows)
    # then analytics-next's retry, numbered, passes CORS and is stored once
    wait_until(page, lambda: retried(shop), what="a retry's 200")
    event = Event.objects.get()
    assert (event.name, event.properties) == ("order_completed", {"total": 42})
    assert shop.outside == []


def test_an_event_that_met_a_server_error_is_retried_and_stored(
    page, live_server, shop_server, browser_source, monkeypatch
):
    # given a server whose first answer is a 500 (a crash in ingestion, behind
    # either door)
    events_ingest = api.events_ingest
    crashed: list[bool] = []

    def crash_once(**kwargs):
        if not crashed:
            crashed.append(True)
            raise RuntimeError("a bad moment")
        return events_ingest(**kwargs)

    monkeypatch.setattr(api, "events_ingest", crash_once)
    # when the shop's page tracks an order
    shop = open_shop(page, live_server, shop_server, browser_source)
    # then analytics-next's retry, numbered, passes CORS and is stored once
    wait_until(page, lambda: retried(shop), what="a retry's 200")
    assert shop.answers[0] == (500, None)
    event = Event.objects.get()
    assert (event.name, event.properties) == ("order_completed", {"total": 42})
    assert shop.outside == []
