"""The data: contacts and events in visits, encoded as COPY text by a pool of
processes."""

from __future__ import annotations

import bisect
import datetime as dt
import math
import random
import signal
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

import orjson
from benchcommon.shop import AGENTS, CATEGORIES

# Event names and their share of all events (percent).
from segmentsbench.config import DAYS, NOW

EVENT_MIX = (
    ("page", 50.0),
    ("product_viewed", 30.0),
    ("add_to_cart", 10.0),
    ("order_completed", 3.0),
    ("search", 2.0),
    ("email_opened", 2.0),
    ("checkout_started", 1.5),
    ("identify", 1.0),
    ("email_clicked", 0.5),
)
NAMES = [n for n, _ in EVENT_MIX]
CUM_WEIGHTS = [sum(w for _, w in EVENT_MIX[: i + 1]) for i in range(len(EVENT_MIX))]
TYPES = {"page": "page", "identify": "identify"}  # the rest are "track"

CHUNK_EVENTS = 50_000  # events per generated chunk (one time slice of the 60 days)
SESSION_MEAN = 6.0  # events per visit beyond the first
GAP_MEAN = 45.0  # seconds between two events of a visit
# Who is active: contact rank = N * u ** SKEW, so a few contacts make many visits
# and most make few or none (as on a real shop's list).
SKEW = 2.2


# -- data: contacts --------------------------------------------------------------------

ZONES = (
    ("US", "en-US", "America/New_York"),
    ("US", "en-US", "America/Los_Angeles"),
    ("GB", "en-GB", "Europe/London"),
    ("FR", "fr-FR", "Europe/Paris"),
    ("DE", "de-DE", "Europe/Berlin"),
    ("AU", "en-AU", "Australia/Sydney"),
    ("JP", "ja-JP", "Asia/Tokyo"),
)
FIRST = ("Ada", "Ben", "Chloé", "Dev", "Emma", "Finn", "Grace", "Hugo", "Iris", "Jon")
LAST = ("Smith", "Martin", "Müller", "Tanaka", "Brown", "Dubois", "Jones", "Nguyen")
PLANS = ("free", "pro", "enterprise")
CONSENTS = ("subscribed", "unsubscribed", "pending", "bounced")
NULL = "\\N"


_DAY_TEXT: dict[int, str] = {}


def ts_text(epoch: float) -> str:
    """A UTC timestamp for COPY (to the microsecond, truncated); faster than
    ``datetime.isoformat``, which was a fifth of the encoding time."""
    day, rest = divmod(int(epoch * 1_000_000), 86_400_000_000)
    prefix = _DAY_TEXT.get(day)
    if prefix is None:
        at = dt.datetime.fromtimestamp(day * 86_400, dt.UTC)
        prefix = _DAY_TEXT[day] = at.strftime("%Y-%m-%d ")
    seconds, micros = divmod(rest, 1_000_000)
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    return f"{prefix}{hours:02d}:{minutes:02d}:{seconds:02d}.{micros:06d}+00"


CONTACT_CHUNK = 50_000


def contact_chunk(spec: EventSpec, k: int) -> bytes:
    """COPY text rows for contacts k * CONTACT_CHUNK + 1 ... (ids 1..N overall)."""
    rng = random.Random(spec.seed * 1_000_033 + k)
    now = NOW.timestamp()
    lines: list[str] = []
    first = k * CONTACT_CHUNK + 1
    for cid in range(first, min(first + CONTACT_CHUNK, spec.contacts + 1)):
        country, locale, zone = ZONES[rng.randrange(len(ZONES))]
        known = rng.random() < 0.75
        plan = PLANS[bisect.bisect(CUM_PLANS, rng.random())]
        attrs = f'{{"plan": "{plan}", "country": "{country}"'
        if rng.random() < 0.8:
            born = dt.date(1950, 1, 1) + dt.timedelta(days=rng.randrange(20_000))
            attrs += f', "birthday": "{born.isoformat()}"'
        attrs += "}"
        created = now - rng.uniform(0, 730 * 86400)
        seen = (
            NULL if rng.random() < 0.1 else ts_text(now - rng.uniform(0, DAYS * 86400))
        )
        fields = (
            str(cid),
            f"user{cid}@example.com" if known else NULL,
            f"u{cid}" if known else NULL,
            FIRST[cid % len(FIRST)] if known else "",
            LAST[cid % len(LAST)] if known else "",
            "",
            zone,
            locale,
            attrs,
            CONSENTS[bisect.bisect(CUM_CONSENTS, rng.random())],
            str(int(rng.paretovariate(1.5)) - 1),
            ts_text(created),
            ts_text(created),
            seen,
        )
        lines.append("\t".join(fields))
    return ("\n".join(lines) + "\n").encode()


CUM_PLANS = (0.70, 0.95)  # free 70%, pro 25%, enterprise 5%
CUM_CONSENTS = (0.85, 0.93, 0.97)  # subscribed, unsubscribed, pending, bounced

CONTACT_COLUMNS = (
    "id, email, external_id, first_name, last_name, phone, timezone, locale, "
    "attributes, email_consent, score, created_at, first_seen_at, last_seen_at"
)

# -- data: events ----------------------------------------------------------------------

EVENT_COLUMNS = (
    "id, contact_id, source_id, type, name, properties, context, timestamp, "
    "received_at, message_id"
)


def _json(value: Any) -> str:
    text = orjson.dumps(value).decode()
    assert "\\" not in text and "\t" not in text  # safe for COPY's text format
    return text


@dataclass
class Pools:
    """Pre-encoded JSON, so that a row costs a few string joins."""

    products: list[str]
    prices: list[float]
    carts: list[str]  # product JSON without its closing brace
    pages: list[str]
    contexts: list[str]
    misc: dict[str, list[str]]

    @classmethod
    def make(cls, seed: int) -> Pools:
        rng = random.Random(seed + 7)  # one stream, drawn in this order
        products, prices, carts = _product_pool(rng)
        pages = _page_pool(rng)
        contexts = _context_pool(rng)
        return cls(products, prices, carts, pages, contexts, _misc_pool())


def _product_pool(rng: random.Random) -> tuple[list[str], list[float], list[str]]:
    """5,000 products: their JSON, prices, and JSON for cart lines."""
    products, prices, carts = [], [], []
    for i in range(5_000):
        category = CATEGORIES[i % len(CATEGORIES)]
        price = round(rng.uniform(5, 300), 2)
        text = _json(
            {
                "product_id": f"P{i:05d}",
                "name": f"{category.title()} model {i}",
                "category": category,
                "price": price,
                "currency": "EUR",
            }
        )
        products.append(text)
        prices.append(price)
        carts.append(text[:-1])
    return products, prices, carts


def _page_pool(rng: random.Random) -> list[str]:
    """2,000 page views' properties."""
    pages = []
    for i in range(2_000):
        category = CATEGORIES[i % len(CATEGORIES)]
        path = rng.choice(
            ["/", "/collections/new", "/collections/sale", "/cart", "/about"]
            + [f"/products/{category}/{i}"] * 5
        )
        pages.append(
            _json(
                {
                    "path": path,
                    "url": f"https://shop.example.com{path}",
                    "title": path.strip("/").split("/")[0].title() or "Home",
                    "referrer": rng.choice(["", "https://www.google.com/"]),
                }
            )
        )
    return pages


def _context_pool(rng: random.Random) -> list[str]:
    """500 browser contexts."""
    contexts = []
    for i in range(500):
        _country, locale, zone = ZONES[i % len(ZONES)]
        contexts.append(
            _json(
                {
                    "library": {"name": "nudge.js", "version": "1.0.0"},
                    "ip": f"203.0.{rng.randrange(256)}.{rng.randrange(1, 255)}",
                    "userAgent": AGENTS[i % len(AGENTS)],
                    "locale": locale,
                    "timezone": zone,
                }
            )
        )
    return contexts


def _misc_pool() -> dict[str, list[str]]:
    """The other events' properties, by event name."""
    return {
        "search": [_json({"query": q}) for q in ("boots", "red bag", "sale", "hat")],
        "email_opened": [
            _json({"campaign_id": c, "message_id": f"msg-{c}"}) for c in range(20)
        ],
        "email_clicked": [
            _json({"campaign_id": c, "url": "https://shop.example.com/sale"})
            for c in range(20)
        ],
        "checkout_started": [_json({"step": 1}), _json({"step": 2})],
        "identify": [_json({})],
    }


def _multiplier(n: int) -> int:
    """A multiplier coprime to n: rank -> contact id is then a permutation."""
    m = 2_654_435_761 % n if n > 1 else 1
    m = max(m, 1)
    while math.gcd(m, n) != 1:
        m += 1
    return m


@dataclass(frozen=True)
class EventSpec:
    contacts: int
    events: int
    seed: int
    source_id: int

    @property
    def chunks(self) -> int:
        return max(1, math.ceil(self.events / CHUNK_EVENTS))

    def chunk_size(self, k: int) -> int:
        base = self.events // self.chunks
        return base + (1 if k < self.events % self.chunks else 0)

    def first_id(self, k: int) -> int:
        base, extra = divmod(self.events, self.chunks)
        return k * base + min(k, extra) + 1


def event_chunk(spec: EventSpec, pools: Pools, k: int) -> bytes:
    """COPY text rows of chunk k: the visits that start in the k-th time slice,
    sorted by time, with ids in that order (the table is append-only in time)."""
    rng = random.Random(spec.seed * 1_000_003 + k)
    count = spec.chunk_size(k)
    end = NOW.timestamp()
    span = DAYS * 86400 / spec.chunks
    lo = end - DAYS * 86400 + k * span
    n, mult = spec.contacts, _multiplier(spec.contacts)
    n_products, n_pages, n_ctx = (
        len(pools.products),
        len(pools.pages),
        len(pools.contexts),
    )
    rows: list[tuple[float, int, str, str, str]] = []
    visit = 0
    while len(rows) < count:
        visit += 1
        cid = int(n * rng.random() ** SKEW) * mult % n + 1
        ctx = pools.contexts[(cid * 7) % n_ctx]
        length = min(count - len(rows), 1 + int(rng.expovariate(1 / SESSION_MEAN)))
        t = lo + rng.random() * span
        base = rng.randrange(n_products)
        cart = f"cart-{k}-{visit}"
        for name in rng.choices(NAMES, cum_weights=CUM_WEIGHTS, k=length):
            t += rng.expovariate(1 / GAP_MEAN)
            if name == "page":
                props = pools.pages[rng.randrange(n_pages)]
            elif name == "product_viewed":
                props = pools.products[(base + rng.randrange(6)) % n_products]
            elif name == "add_to_cart":
                i = (base + rng.randrange(6)) % n_products
                props = f'{pools.carts[i]},"quantity":1,"cart_id":"{cart}"}}'
            elif name == "order_completed":
                total = pools.prices[base] * (1 + rng.randrange(3))
                props = (
                    f'{{"order_id":"o-{k}-{visit}","cart_id":"{cart}",'
                    f'"total":{total:.2f},"currency":"EUR"}}'
                )
            else:
                options = pools.misc[name]
                props = options[rng.randrange(len(options))]
            rows.append(
                (t if t < end else end - rng.random() * 60, cid, name, props, ctx)
            )
    rows.sort(key=itemgetter(0))
    first = spec.first_id(k)
    source = str(spec.source_id)
    out = []
    for i, (t, cid, name, props, ctx) in enumerate(rows):
        stamp = ts_text(t)
        eid = first + i
        out.append(
            f"{eid}\t{cid}\t{source}\t{TYPES.get(name, 'track')}\t{name}\t{props}\t"
            f"{ctx}\t{stamp}\t{stamp}\tm{eid}\n"
        )
    return "".join(out).encode()


_POOLS: Pools | None = None


def init_generator(seed: int) -> None:
    global _POOLS
    # Pool workers inherit the parent's SIGTERM handler; the pool's own shutdown
    # (terminate) must just end them, not raise KeyboardInterrupt in each.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _POOLS = Pools.make(seed)


def generate(table: str, spec: EventSpec, k: int) -> bytes:
    if table == "contacts_contact":
        return contact_chunk(spec, k)
    assert _POOLS is not None
    return event_chunk(spec, _POOLS, k)
