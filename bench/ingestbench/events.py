"""Realistic events (page, product_viewed, add_to_cart) from a pool of returning
visitors, and the request bodies built from them before the clock starts."""

from __future__ import annotations

import datetime as dt
import random
import uuid
from dataclasses import dataclass
from typing import Any

import orjson
from benchcommon.shop import AGENTS, CATEGORIES, PAGES

from ingestbench.client import Request
from ingestbench.config import Config

# -- realistic events ------------------------------------------------------------------


ZONES = [
    ("en-US", "America/New_York"),
    ("en-GB", "Europe/London"),
    ("fr-FR", "Europe/Paris"),
]


def iso(t: dt.datetime) -> str:
    return t.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class User:
    anonymous_id: str
    ip: str
    agent: str
    locale: str
    timezone: str


def make_users(rng: random.Random, n: int) -> list[User]:
    users = []
    for _ in range(n):
        locale, tz = rng.choice(ZONES)
        users.append(
            User(
                anonymous_id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                ip=f"203.0.{rng.randrange(256)}.{rng.randrange(1, 255)}",
                agent=rng.choice(AGENTS),
                locale=locale,
                timezone=tz,
            )
        )
    return users


KINDS = ("page", "product_viewed", "add_to_cart")
MIX = (40, 45, 15)


def make_event(
    rng: random.Random,
    user: User,
    at: dt.datetime,
    run: str,
    n: int,
    *,
    track_only: bool,
) -> dict:
    """One Segment message: a page view, product_viewed or add_to_cart."""
    product = rng.randrange(1, 5000)
    category = rng.choice(CATEGORIES)
    kind = rng.choices(
        KINDS[1:] if track_only else KINDS, weights=MIX[1:] if track_only else MIX
    )[0]
    path = f"/products/{category}/{product}" if kind != "page" else rng.choice(PAGES)
    context = {
        "library": {"name": "analytics.js", "version": "5.2.0"},
        "ip": user.ip,
        "userAgent": user.agent,
        "locale": user.locale,
        "timezone": user.timezone,
        "page": {"path": path},
    }
    message: dict[str, Any] = {
        "type": "page" if kind == "page" else "track",
        "messageId": f"{run}-{n:08d}",
        "anonymousId": user.anonymous_id,
        "timestamp": iso(at),
        "context": context,
    }
    if kind == "page":
        message["name"] = path.strip("/").split("/")[0].title() or "Home"
        message["properties"] = {"path": path, "referrer": "https://www.google.com/"}
    else:
        message["event"] = kind
        message["properties"] = {
            "product_id": f"P{product:05d}",
            "name": f"{category.title()} model {product}",
            "category": category,
            "price": round(rng.uniform(5, 300), 2),
            "currency": "USD",
        }
        if kind == "add_to_cart":
            message["properties"]["quantity"] = rng.randint(1, 3)
            message["properties"]["cart_id"] = f"cart-{user.anonymous_id[:8]}"
    return message


class EventFactory:
    """Batches of realistic events from a pool of returning visitors."""

    def __init__(self, seed: int, users: int, run: str) -> None:
        self.rng = random.Random(seed)
        self.users = make_users(self.rng, users)
        self.run = run
        self.n = 0
        self.now = dt.datetime.now(dt.UTC)

    def events(
        self, count: int, distinct_users: int, *, track_only: bool = False
    ) -> list[dict]:
        people = self.rng.sample(self.users, min(distinct_users, len(self.users)))
        start = self.now - dt.timedelta(seconds=30)
        out = []
        for i in range(count):
            self.n += 1
            at = start + dt.timedelta(milliseconds=150 * i + self.rng.randrange(100))
            person = people[i % len(people)]
            out.append(
                make_event(
                    self.rng, person, at, self.run, self.n, track_only=track_only
                )
            )
        return out


def build_batches(cfg: Config, factory: EventFactory, count: int) -> list[Request]:
    out = []
    for _ in range(count):
        events = factory.events(cfg.batch_size, cfg.users_per_batch)
        body = orjson.dumps({"batch": events, "sentAt": iso(dt.datetime.now(dt.UTC))})
        out.append(Request("/api/v1/batch", body, [e["messageId"] for e in events]))
    return out


def build_tracks(factory: EventFactory, count: int) -> list[Request]:
    out = []
    for event in factory.events(count, len(factory.users), track_only=True):
        event = {**event, "sentAt": event["timestamp"]}
        out.append(Request("/api/v1/track", orjson.dumps(event), [event["messageId"]]))
    # ``events`` takes people in turn; shuffle so that neighbours differ.
    factory.rng.shuffle(out)
    return out
