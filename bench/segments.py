#!/usr/bin/env python
"""Behavioural segment benchmark: count, full refresh and the incremental path.

What it does, in order (see bench/README.md for how to run it):

1. Drops and recreates its own PostgreSQL database (``nudge_bench_segments``) and
   flushes its own Redis db (``/10``), then runs ``migrate`` in this process (Django is
   set up here: the code measured is Python called in-process, there is no server).
2. Loads N contacts and M events with COPY (psycopg 3 ``cursor.copy``). Secondary
   indexes and foreign keys of the two tables are dropped for the load and rebuilt
   exactly as they were (checked), then the tables are ANALYZEd and a CHECKPOINT is
   taken. Events come in sessions of a skewed population of contacts over the last
   60 days, time-ordered on disk like an append-only table.
3. Measures, with ``now`` fixed, each a few runs (best and median):
   (a) ``count_matching`` of "viewed a product at least 3 times in 7 days and no
       purchase in 24 hours", beside a hand-written SQL query for the same answer
       (the baseline); both counts must agree; EXPLAIN (ANALYZE, BUFFERS) of both;
   (b) ``segment_refresh_full`` of a new segment with that condition, then again with
       nothing changed;
   (c) ``segment_update_for_contacts`` for one incoming event: for each of 200 random
       contacts one product_viewed event is inserted and the call timed; then the
       memberships must equal what the SQL says.
4. Prints a table against the targets in DESIGN.md and writes bench/out/segments.json.

Exit status: 0 whenever the run completed (a MISS is a measurement, not a failure),
1 if something broke (counts disagree, memberships wrong), 2 if set-up failed,
130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import bisect
import datetime as dt
import itertools
import math
import multiprocessing
import os
import random
import resource
import signal
import statistics
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from operator import itemgetter
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import orjson
import psycopg
import redis
from psycopg import sql

ROOT = Path(__file__).resolve().parent.parent
OUT_DIR = ROOT / "bench" / "out"

# The fixed "now" of every measurement; events span the DAYS before it.
NOW = dt.datetime(2026, 1, 15, 12, 0, tzinfo=dt.UTC)
DAYS = 60

CONDITION = {
    "all": [
        {
            "event": "product_viewed",
            "count": {"op": "gte", "value": 3},
            "window": {"last": 7, "unit": "days"},
        },
        {
            "event": "order_completed",
            "count": {"op": "eq", "value": 0},
            "window": {"last": 24, "unit": "hours"},
        },
    ]
}

# The same question in plain SQL: the viewers (one grouped scan), less the buyers.
HAND_SQL = """
SELECT count(*) FROM (
    SELECT e.contact_id
    FROM events_event e
    WHERE e.name = 'product_viewed' AND e.timestamp >= %(week)s
    GROUP BY e.contact_id
    HAVING count(*) >= 3
) viewers
WHERE NOT EXISTS (
    SELECT FROM events_event o
    WHERE o.contact_id = viewers.contact_id
      AND o.name = 'order_completed' AND o.timestamp >= %(day)s
)
"""

TARGETS = {"count_s": 2.0, "incremental_ms": 5.0}
# The sizes the targets are stated for.
TARGET_CONTACTS, TARGET_EVENTS = 1_000_000, 10_000_000

# Event names and their share of all events (percent).
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

CLK_TCK = os.sysconf("SC_CLK_TCK")
NOISY_CORES = 0.2


class BenchBroken(Exception):
    """Something went wrong that makes the figures meaningless (exit 1)."""


class SetupFailed(Exception):
    """The environment could not be prepared (exit 2)."""


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# -- configuration ---------------------------------------------------------------------


@dataclass
class Config:
    small: bool
    database_url: str
    redis_url: str
    contacts: int
    events: int
    runs: int
    incremental: int
    generators: int
    seed: int
    wait_quiet: float
    reuse_data: bool
    explain_lines: int
    json_out: Path
    force: bool


def parse_args(argv: list[str] | None = None) -> Config:
    p = argparse.ArgumentParser(
        description="Benchmark behavioural segments: count_matching against "
        "hand-written SQL, segment_refresh_full and the incremental update per "
        "event. Defaults are the full run (1M contacts, 10M events); --small is the "
        "CI run.",
    )
    add = p.add_argument
    add("--small", action="store_true", help="the CI mode: 20k contacts, 200k events")
    add(
        "--database-url",
        default=os.environ.get(
            "BENCH_DATABASE_URL",
            "postgres://postgres@127.0.0.1:5432/nudge_bench_segments",
        ),
        help="the benchmark's own database: DROPPED and recreated at the start",
    )
    add(
        "--redis-url",
        default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/10"),
        help="the benchmark's own Redis db: FLUSHED at the start",
    )
    add("--contacts", type=int, help="contacts (full 1,000,000, small 20,000)")
    add("--events", type=int, help="events (full 10,000,000, small 200,000)")
    add("--runs", type=int, default=5, help="timed runs of each count query (5)")
    add(
        "--incremental",
        type=int,
        default=200,
        help="incoming events for the incremental path, per contact pick (200)",
    )
    add(
        "--generators",
        type=int,
        default=2,
        help="processes encoding the rows that the COPY takes in (2)",
    )
    add("--seed", type=int, default=42)
    add(
        "--wait-quiet",
        type=float,
        default=0.0,
        help="before measuring, wait up to this many seconds for other processes to "
        f"use less than {NOISY_CORES} cores (0: do not wait, only report)",
    )
    add(
        "--reuse-data",
        action="store_true",
        help="keep the database of an earlier run of the same size (no reload): "
        "what earlier measurements added is deleted first",
    )
    add(
        "--explain-lines",
        type=int,
        help="plan lines to print (full 40, small 20; all go to the JSON)",
    )
    add("--json-out", type=Path, default=OUT_DIR / "segments.json")
    add(
        "--force",
        action="store_true",
        help="allow a database name without 'bench' in it, or Redis db 0",
    )
    a = p.parse_args(argv)
    small = a.small
    return Config(
        small=small,
        database_url=a.database_url,
        redis_url=a.redis_url,
        contacts=a.contacts or (20_000 if small else TARGET_CONTACTS),
        events=a.events or (200_000 if small else TARGET_EVENTS),
        runs=max(1, a.runs),
        incremental=max(1, a.incremental),
        generators=max(1, a.generators),
        seed=a.seed,
        wait_quiet=max(0.0, a.wait_quiet),
        reuse_data=a.reuse_data,
        explain_lines=a.explain_lines or (20 if small else 40),
        json_out=a.json_out,
        force=a.force,
    )


# -- set-up: database, redis, Django ---------------------------------------------------


def _db_name(url: str) -> str:
    return urlsplit(url).path.lstrip("/")


def _with_db(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path="/" + name))


def prepare_database(cfg: Config) -> bool:
    """Recreate the database; with --reuse-data keep it if it holds a load of this
    size. True if the data is already there."""
    name = _db_name(cfg.database_url)
    if not name:
        raise SetupFailed("--database-url has no database name")
    if "bench" not in name and not cfg.force:
        raise SetupFailed(
            f"refusing to drop database {name!r}: its name has no 'bench' (use --force)"
        )
    if cfg.reuse_data:
        loaded = _loaded_meta(cfg)
        if loaded and (loaded["contacts"], loaded["events"], loaded["seed"]) == (
            cfg.contacts,
            cfg.events,
            cfg.seed,
        ):
            return True
        log("--reuse-data: no load of this size and seed; loading afresh")
    try:
        with psycopg.connect(
            _with_db(cfg.database_url, "postgres"), autocommit=True
        ) as c:
            ident = sql.Identifier(name)
            c.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(ident))
            c.execute(sql.SQL("CREATE DATABASE {}").format(ident))
    except psycopg.Error as exc:
        raise SetupFailed(f"could not recreate database {name!r}: {exc}") from exc
    return False


def _loaded_meta(cfg: Config) -> dict[str, int] | None:
    try:
        with psycopg.connect(cfg.database_url) as c:
            row = c.execute("SELECT meta FROM bench_segments_load").fetchone()
    except psycopg.Error:
        return None
    return row[0] if row else None


def flush_redis(cfg: Config) -> None:
    client = redis.Redis.from_url(cfg.redis_url)
    db = client.connection_pool.connection_kwargs.get("db", 0)
    if int(db) == 0 and not cfg.force:
        raise SetupFailed("refusing to flush Redis db 0 (give another db or --force)")
    try:
        client.flushdb()
    except redis.RedisError as exc:
        raise SetupFailed(f"could not flush Redis at {cfg.redis_url}: {exc}") from exc


def setup_django(cfg: Config) -> None:
    """Django in this process: settings read the environment at import."""
    os.environ.update(
        DJANGO_SETTINGS_MODULE="config.settings",
        DATABASE_URL=cfg.database_url,
        REDIS_URL=cfg.redis_url,
        DEBUG="0",
        LOG_LEVEL=os.environ.get("BENCH_LOG_LEVEL", "WARNING"),
    )
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    os.chdir(ROOT)
    import django
    from django.core.management import call_command

    django.setup()
    try:
        call_command("migrate", interactive=False, verbosity=0)
    except Exception as exc:
        raise SetupFailed(f"migrate failed: {exc}") from exc


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

CATEGORIES = ("shoes", "shirts", "bags", "watches", "jackets", "hats", "socks", "belts")
AGENTS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_7) AppleWebKit/605.1.15 (KHTML, like "
    "Gecko) Version/18.1 Safari/605.1.15",
)
EVENT_COLUMNS = (
    "id, contact_id, source_id, type, name, properties, context, timestamp, "
    "received_at, message_id, processed_at"
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
        rng = random.Random(seed + 7)
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
        misc = {
            "search": [
                _json({"query": q}) for q in ("boots", "red bag", "sale", "hat")
            ],
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
        return cls(products, prices, carts, pages, contexts, misc)


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
            f"{ctx}\t{stamp}\t{stamp}\tm{eid}\t{stamp}\n"
        )
    return "".join(out).encode()


_POOLS: Pools | None = None


def _init_generator(seed: int) -> None:
    global _POOLS
    # Pool workers inherit the parent's SIGTERM handler; the pool's own shutdown
    # (terminate) must just end them, not raise KeyboardInterrupt in each.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _POOLS = Pools.make(seed)


def _generate(table: str, spec: EventSpec, k: int) -> bytes:
    if table == "contacts_contact":
        return contact_chunk(spec, k)
    assert _POOLS is not None
    return event_chunk(spec, _POOLS, k)


def copy_table(
    url: str, table: str, columns: str, chunks: int, spec: EventSpec, pool: Any
) -> int:
    """TRUNCATE and one COPY ... FREEZE in the same transaction (rows go in frozen
    and all-visible, as VACUUM would leave them), fed in order by the ``pool`` of
    processes that encode the chunks. Returns the bytes sent."""
    size = 0
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        cur.execute("SET synchronous_commit = off")
        # CASCADE: the empty tables that point at contacts (the FKs are dropped).
        cur.execute(sql.SQL("TRUNCATE {} CASCADE").format(sql.Identifier(table)))
        todo = iter(range(chunks))
        # A few chunks in flight: the pool keeps encoding while COPY takes one in.
        pending = deque(
            pool.apply_async(_generate, (table, spec, k))
            for k in itertools.islice(todo, 4)
        )
        copy_sql = f"COPY {table} ({columns}) FROM STDIN WITH (FREEZE)"
        with cur.copy(copy_sql) as cp:
            while pending:
                block = pending.popleft().get()
                for k in itertools.islice(todo, 1):
                    pending.append(pool.apply_async(_generate, (table, spec, k)))
                size += len(block)
                cp.write(block)
        conn.commit()
    return size


# -- the load --------------------------------------------------------------------------

LOADED_TABLES = ("contacts_contact", "events_event")


def schema_of(conn: psycopg.Connection) -> dict[str, Any]:
    """Secondary indexes and constraints (not the primary keys) of LOADED_TABLES."""
    indexes = conn.execute(
        "SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid),"
        " i.indrelid::regclass::text, c.conname IS NOT NULL, c.condeferrable,"
        " c.condeferred"
        " FROM pg_index i LEFT JOIN pg_constraint c ON c.conindid = i.indexrelid"
        " AND c.contype = 'u'"
        " WHERE i.indrelid::regclass::text = ANY(%s) AND NOT i.indisprimary"
        " ORDER BY 1",
        (list(LOADED_TABLES),),
    ).fetchall()
    fks = conn.execute(
        "SELECT conname, conrelid::regclass::text, pg_get_constraintdef(oid)"
        " FROM pg_constraint WHERE contype = 'f'"
        " AND conrelid::regclass::text = ANY(%s) ORDER BY 1",
        (list(LOADED_TABLES),),
    ).fetchall()
    return {"indexes": [list(r) for r in indexes], "fks": [list(r) for r in fks]}


def drop_secondary(conn: psycopg.Connection, schema: dict[str, Any]) -> None:
    for name, table, _definition in schema["fks"]:
        conn.execute(
            sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(
                sql.Identifier(table), sql.Identifier(name)
            )
        )
    for name, _definition, table, is_constraint, *_ in schema["indexes"]:
        if is_constraint:
            conn.execute(
                sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(
                    sql.Identifier(table), sql.Identifier(name)
                )
            )
        else:
            conn.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(name)))
    conn.commit()


def restore_secondary(url: str, schema: dict[str, Any], parallel: int) -> float:
    """Rebuild the indexes (``parallel`` at a time), then constraints and FKs."""
    began = time.perf_counter()
    todo = [r[1] for r in schema["indexes"]]
    # Events' indexes first: they are the big ones.
    todo.sort(key=lambda d: "events_event" not in d)
    lock = threading.Lock()
    errors: list[str] = []

    def builder() -> None:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("SET maintenance_work_mem = '1GB'")
            conn.execute("SET max_parallel_maintenance_workers = 0")
            while True:
                with lock:
                    if not todo or errors:
                        return
                    definition = todo.pop(0)
                try:
                    conn.execute(definition)
                except psycopg.Error as exc:
                    with lock:
                        errors.append(f"{definition}: {exc}")

    threads = [threading.Thread(target=builder) for _ in range(max(1, parallel))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise SetupFailed("rebuilding indexes failed: " + "; ".join(errors))
    with psycopg.connect(url, autocommit=True) as conn:
        for name, _definition, table, is_constraint, deferrable, deferred in schema[
            "indexes"
        ]:
            if is_constraint:
                when = " DEFERRABLE" if deferrable else ""
                when += " INITIALLY DEFERRED" if deferred else ""
                conn.execute(
                    sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} UNIQUE USING INDEX {}")
                    .format(
                        sql.Identifier(table),
                        sql.Identifier(name),
                        sql.Identifier(name),
                    )
                    .as_string(conn)
                    + when
                )
        for name, table, definition in schema["fks"]:
            conn.execute(
                sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} ")
                .format(sql.Identifier(table), sql.Identifier(name))
                .as_string(conn)
                + definition
            )
    return time.perf_counter() - began


def load(cfg: Config) -> dict[str, Any]:
    """COPY contacts and events; returns what was loaded and how long it took."""
    from apps.events.models import Source

    source = Source.objects.create(name="bench-site", kind=Source.Kind.SERVER)
    spec = EventSpec(cfg.contacts, cfg.events, cfg.seed, source.pk)
    url = cfg.database_url
    out: dict[str, Any] = {}
    with psycopg.connect(url) as conn:
        schema = schema_of(conn)
        drop_secondary(conn, schema)

    from django.db import connections

    connections.close_all()  # no Django connection crosses the fork
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(cfg.generators, _init_generator, (cfg.seed,)) as pool:
        began = time.perf_counter()
        log(f"COPY {cfg.contacts:,} contacts")
        chunks = math.ceil(cfg.contacts / CONTACT_CHUNK)
        copy_table(url, "contacts_contact", CONTACT_COLUMNS, chunks, spec, pool)
        out["contacts_seconds"] = round(time.perf_counter() - began, 2)

        began = time.perf_counter()
        log(
            f"COPY {cfg.events:,} events ({spec.chunks} chunks, one stream, "
            f"{cfg.generators} processes encoding)"
        )
        size = copy_table(url, "events_event", EVENT_COLUMNS, spec.chunks, spec, pool)
    seconds = time.perf_counter() - began
    out["events_seconds"] = round(seconds, 2)
    out["events_per_s"] = round(cfg.events / seconds)
    out["events_mb"] = round(size / 1e6)

    log("rebuilding indexes and constraints")
    out["index_seconds"] = round(restore_secondary(url, schema, parallel=2), 2)
    began = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        for table in LOADED_TABLES:
            conn.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'),"
                f" (SELECT max(id) FROM {table}))"
            )
        log("ANALYZE")
        conn.execute("ANALYZE contacts_contact, events_event")
        if schema_of(conn) != schema:
            raise SetupFailed("the rebuilt indexes differ from the app's schema")
        conn.execute("CHECKPOINT")
        meta = {
            "contacts": cfg.contacts,
            "events": cfg.events,
            "seed": cfg.seed,
            "max_event_id": cfg.events,  # ids 1..M
        }
        conn.execute("CREATE TABLE bench_segments_load (meta jsonb)")
        conn.execute(
            "INSERT INTO bench_segments_load VALUES (%s)",
            (orjson.dumps(meta).decode(),),
        )
    out["analyze_seconds"] = round(time.perf_counter() - began, 2)
    return out


def reset_measurements(cfg: Config) -> None:
    """--reuse-data: remove what an earlier run's measurements added."""
    meta = _loaded_meta(cfg) or {}
    with psycopg.connect(cfg.database_url, autocommit=True) as conn:
        conn.execute("DELETE FROM segments_segmentmembership")
        conn.execute("DELETE FROM segments_segmentrefresh")
        conn.execute("DELETE FROM segments_segment")
        conn.execute("DELETE FROM events_event WHERE id > %s", (meta["max_event_id"],))
        conn.execute("VACUUM (ANALYZE) events_event, segments_segmentmembership")


def data_stats() -> dict[str, Any]:
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("SELECT count(*) FROM contacts_contact")
        contacts = cur.fetchone()[0]
        cur.execute(
            "SELECT name, count(*) FROM events_event GROUP BY name ORDER BY 2 DESC"
        )
        names = dict(cur.fetchall())
        cur.execute(
            "SELECT count(DISTINCT contact_id), min(timestamp), max(timestamp)"
            " FROM events_event"
        )
        active, first, last = cur.fetchone()
        cur.execute(
            "SELECT pg_size_pretty(pg_table_size('events_event')),"
            " pg_size_pretty(pg_indexes_size('events_event')),"
            " pg_size_pretty(pg_total_relation_size('contacts_contact'))"
        )
        table, indexes, contacts_size = cur.fetchone()
        cur.execute(
            "SELECT name, setting FROM pg_settings WHERE name IN ('shared_buffers',"
            " 'work_mem', 'jit', 'max_parallel_workers_per_gather',"
            " 'effective_cache_size', 'random_page_cost', 'server_version',"
            " 'autovacuum')"
        )
        settings = dict(cur.fetchall())
    return {
        "contacts": contacts,
        "contacts_with_events": active,
        "events": sum(names.values()),
        "events_by_name": names,
        "first_event": first.isoformat(),
        "last_event": last.isoformat(),
        "events_table": table,
        "events_indexes": indexes,
        "contacts_table_with_indexes": contacts_size,
        "pg_settings": settings,
    }


# -- measuring -------------------------------------------------------------------------


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def summary(seconds: list[float]) -> dict[str, Any]:
    return {
        "best_s": round(min(seconds), 4),
        "median_s": round(statistics.median(seconds), 4),
        "runs_s": [round(s, 4) for s in seconds],
    }


def _proc_cpu(pid: int) -> tuple[str, float] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()
    return raw[raw.index("(") + 1 : raw.rindex(")")], (
        int(fields[11]) + int(fields[12])
    ) / CLK_TCK


def _machine_jiffies() -> tuple[int, int]:
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    idle = values[3] + values[4]
    return sum(values[:8]) - idle, sum(values[:8])


PG_AUX = (
    "checkpointer",
    "background writer",
    "walwriter",
    "autovacuum launcher",
    "logical replication launcher",
    "archiver",
)


class CpuWatch:
    """Who used the CPU during a phase, in cores: this process, PostgreSQL for this
    database (its backends, their parallel workers and the server's own processes),
    and everything else ("other": someone's tests, another database), which should be
    near 0 for comparable figures."""

    def __init__(self, database: str) -> None:
        self.database = database

    def __enter__(self) -> CpuWatch:
        self.at = time.perf_counter()
        self.own = self._own()
        self.pg = self._postgres()
        self.busy, self.total = _machine_jiffies()
        return self

    def __exit__(self, *exc: object) -> None:
        wall = max(time.perf_counter() - self.at, 1e-9)
        busy, total = _machine_jiffies()
        ncpu = os.cpu_count() or 1
        machine = (busy - self.busy) / max(total - self.total, 1) * ncpu
        own = (self._own() - self.own) / wall
        pg_now = self._postgres()
        postgres = (
            sum(max(0.0, c - self.pg.get(pid, 0.0)) for pid, c in pg_now.items()) / wall
        )
        self.report = {
            "bench": round(own, 2),
            "postgres": round(postgres, 2),
            "other": round(max(0.0, machine - own - postgres), 2),
            "machine": round(machine, 2),
            "cores": ncpu,
            "seconds": round(wall, 3),
            # CPU seconds of the bench and of this database's PostgreSQL: less
            # sensitive than wall time to other processes on the machine.
            "cpu_s": round((own + postgres) * wall, 3),
        }

    @staticmethod
    def _own() -> float:
        r = resource.getrusage(resource.RUSAGE_SELF)
        return r.ru_utime + r.ru_stime

    def _postgres(self) -> dict[int, float]:
        """CPU seconds of this database's PostgreSQL processes, by pid."""
        ours: dict[int, float] = {}
        workers: dict[int, tuple[int, float]] = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            stat = _proc_cpu(int(entry))
            if not stat or not stat[0].startswith("postgres"):
                continue
            try:
                cmd = (
                    Path(f"/proc/{entry}/cmdline").read_bytes().decode(errors="replace")
                )
            except OSError:
                continue
            title = cmd.replace("\0", " ").split(": ", 2)[-1].strip()
            if title.startswith("parallel worker for PID "):
                leader = title.removeprefix("parallel worker for PID ").split()[0]
                workers[int(entry)] = (int(leader) if leader.isdigit() else 0, stat[1])
            elif f" {self.database} " in f" {title} " or title.startswith(PG_AUX):
                ours[int(entry)] = stat[1]
        for pid, (leader, cpu) in workers.items():
            if leader in ours:
                ours[pid] = cpu
        return ours


def wait_quiet(cfg: Config) -> dict[str, Any]:
    """How busy the machine is before measuring; with --wait-quiet, wait (up to that
    many seconds) for other processes to use less than NOISY_CORES."""
    deadline = time.monotonic() + cfg.wait_quiet
    while True:
        with CpuWatch(_db_name(cfg.database_url)) as watch:
            time.sleep(1.0)
        other = watch.report["other"]
        if other < NOISY_CORES or time.monotonic() >= deadline:
            break
        log(f"waiting for a quiet machine: other processes use {other:.2f} cores")
        time.sleep(4.0)
    if other >= NOISY_CORES:
        log(f"the machine is busy: other processes use {other:.2f} cores")
    return watch.report


def fmt_cpu(c: dict[str, Any]) -> str:
    text = (
        f"cpu (cores of {c['cores']}): bench {c['bench']:.2f}, postgres "
        f"{c['postgres']:.2f}, other {c['other']:.2f}; machine {c['machine']:.2f}"
    )
    if c["other"] >= NOISY_CORES:
        text += f"  NOT QUIET: other processes used {c['other']:.2f} cores"
    return text


def explain(query: str, params: Any) -> list[str]:
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute(f"EXPLAIN (ANALYZE, BUFFERS) {query}", params)
        return [r[0] for r in cur.fetchall()]


def phase_count(cfg: Config) -> dict[str, Any]:
    """(a) count_matching vs the hand-written SQL, interleaved, each cfg.runs times."""
    from django.db import connection

    from apps.segments.conditions import count_matching, matching_sql

    params = {"week": NOW - dt.timedelta(days=7), "day": NOW - dt.timedelta(hours=24)}

    def hand() -> int:
        with connection.cursor() as cur:
            cur.execute(HAND_SQL, params)
            return cur.fetchone()[0]

    def orm() -> int:
        return count_matching(CONDITION, now=NOW)

    timings: dict[str, list[float]] = {"count_matching": [], "hand_sql": []}
    counts: dict[str, set[int]] = {"count_matching": set(), "hand_sql": set()}
    fns: dict[str, Callable[[], int]] = {"count_matching": orm, "hand_sql": hand}
    with CpuWatch(_db_name(cfg.database_url)) as watch:
        for _ in range(cfg.runs):
            for key, fn in fns.items():
                began = time.perf_counter()
                counts[key].add(fn())
                timings[key].append(time.perf_counter() - began)
    if len(counts["count_matching"] | counts["hand_sql"]) != 1:
        raise BenchBroken(
            f"counts disagree: count_matching {sorted(counts['count_matching'])}, "
            f"hand-written SQL {sorted(counts['hand_sql'])}"
        )
    match_sql, match_params = matching_sql(CONDITION, now=NOW)
    count_sql = f"SELECT COUNT(*) FROM ({match_sql}) matching"
    shown = connection.ops.compose_sql(count_sql, match_params)
    return {
        "count": counts["hand_sql"].pop(),
        "count_matching": summary(timings["count_matching"]),
        "hand_sql": summary(timings["hand_sql"]),
        "cpu": watch.report,
        "sql": shown,
        "plan": explain(count_sql, match_params),
        "hand_sql_text": " ".join(HAND_SQL.split()),
        "hand_plan": explain(HAND_SQL, params),
    }


def phase_refresh(cfg: Config, expected: int) -> tuple[dict[str, Any], Any]:
    """(b) segment_refresh_full on a new segment, then again with nothing changed."""
    from apps.segments.models import Segment, SegmentMembership
    from apps.segments.services import segment_refresh_full

    segment = Segment.objects.create(
        name="bench: viewed 3x, no purchase", condition=CONDITION
    )
    with CpuWatch(_db_name(cfg.database_url)) as watch:
        began = time.perf_counter()
        first = segment_refresh_full(segment=segment, now=NOW)
        first_s = time.perf_counter() - began
    again: list[float] = []
    changed = 0
    for _ in range(max(1, min(cfg.runs, 3))):
        began = time.perf_counter()
        refresh = segment_refresh_full(segment=segment, now=NOW)
        again.append(time.perf_counter() - began)
        changed += refresh.entered + refresh.exited
    members = SegmentMembership.objects.filter(
        segment=segment, exited_at__isnull=True
    ).count()
    if members != expected or first.members != expected or changed:
        raise BenchBroken(
            f"segment_refresh_full: {members} open memberships ({first.members} "
            f"reported, {changed} changes on the repeat), the count says {expected}"
        )
    return {
        "first_s": round(first_s, 3),
        "first_duration_ms": first.duration_ms,
        "entered": first.entered,
        "members": members,
        "unchanged": summary(again),
        "cpu": watch.report,
    }, segment


def _incoming(cursor: Any, contact_id: int, n: int, source_id: int) -> None:
    stamp = NOW - dt.timedelta(seconds=1)
    cursor.execute(
        f"INSERT INTO events_event ({EVENT_COLUMNS}) VALUES"
        " (DEFAULT, %s, %s, 'track', 'product_viewed', %s, %s, %s, %s, %s, NULL)",
        [
            contact_id,
            source_id,
            '{"product_id": "P00042", "category": "shoes", "price": 59.9}',
            '{"library": {"name": "nudge.js"}}',
            stamp,
            stamp,
            f"bench-incoming-{n}",
        ],
    )


def phase_incremental(cfg: Config, segment: Any) -> dict[str, Any]:
    """(c) one product_viewed event per contact, then the incremental update, timed.

    Two picks of contacts: uniform over all contacts (most have no recent events, so
    nothing changes), and the contacts of random events of the last 7 days (activity-
    weighted: the contacts events really come from; some cross the threshold).
    """
    from django.db import connection

    from apps.events.models import Source
    from apps.segments.conditions import matching_contacts
    from apps.segments.models import SegmentMembership
    from apps.segments.services import segment_update_for_contacts

    rng = random.Random(cfg.seed + 99)
    source_id = Source.objects.get(name="bench-site").pk
    with connection.cursor() as cur:
        cur.execute("SELECT max(id) FROM contacts_contact")
        max_contact = cur.fetchone()[0]
        cur.execute(
            "SELECT min(id), max(id) FROM events_event WHERE timestamp >= %s"
            " AND source_id = %s",
            [NOW - dt.timedelta(days=7), source_id],
        )
        lo, hi = cur.fetchone()
        cur.execute(
            "SELECT contact_id FROM events_event WHERE id = ANY(%s)",
            [[rng.randint(lo, hi) for _ in range(cfg.incremental)]],
        )
        active = [r[0] for r in cur.fetchall()]
    picks = {
        "uniform": [rng.randint(1, max_contact) for _ in range(cfg.incremental)],
        "active": active,
    }
    out: dict[str, Any] = {}
    n = 0
    touched: set[int] = set()

    def one(contact_id: int) -> tuple[float, int]:
        """Insert an event for the contact, time the update: (ms, changes)."""
        nonlocal n
        n += 1
        with connection.cursor() as cur:
            _incoming(cur, contact_id, n, source_id)
        began = time.perf_counter()
        changes = segment_update_for_contacts(
            segment=segment, contact_ids=[contact_id], now=NOW
        )
        took = (time.perf_counter() - began) * 1000
        touched.add(contact_id)
        return took, len(changes.entered) + len(changes.exited)

    for _ in range(5):  # warm-up (a worker's first job), not counted
        one(rng.randint(1, max_contact))
    for label, contacts in picks.items():
        with CpuWatch(_db_name(cfg.database_url)) as watch:
            calls = [one(contact_id) for contact_id in contacts]
        took = [ms for ms, _ in calls]
        changed = [ms for ms, moved in calls if moved]
        same = [ms for ms, moved in calls if not moved]
        out[label] = {
            "calls": len(took),
            "p50_ms": round(percentile(took, 50), 2),
            "p99_ms": round(percentile(took, 99), 2),
            "max_ms": round(max(took), 2),
            "mean_ms": round(statistics.fmean(took), 2),
            "changed": len(changed),
            "changed_p50_ms": round(percentile(changed, 50), 2) if changed else None,
            "unchanged_p50_ms": round(percentile(same, 50), 2) if same else None,
            "cpu": watch.report,
        }
    # The incremental path must leave the memberships the SQL gives.
    should = set(
        matching_contacts(CONDITION, now=NOW)
        .filter(pk__in=touched)
        .values_list("pk", flat=True)
    )
    are = set(
        SegmentMembership.objects.filter(
            segment=segment, contact_id__in=touched, exited_at__isnull=True
        ).values_list("contact_id", flat=True)
    )
    if should != are:
        raise BenchBroken(
            f"incremental memberships differ from SQL for {len(should ^ are)} of "
            f"{len(touched)} contacts (e.g. {sorted(should ^ are)[:5]})"
        )
    out["checked_contacts"] = len(touched)
    return out


# -- reporting -------------------------------------------------------------------------


def verdicts(report: dict[str, Any]) -> list[tuple[str, str, str, str, str]]:
    a, b, c = report["count"], report["refresh"], report["incremental"]
    at_size = (
        report["config"]["contacts"] >= TARGET_CONTACTS
        and report["config"]["events"] >= TARGET_EVENTS
    )

    def status(ok: bool, applies: bool = True) -> str:
        return ("PASS" if ok else "MISS") if applies else "n/a"

    hand, cm = a["hand_sql"], a["count_matching"]
    rows = [
        (
            "(a) count_matching best / median",
            f"{cm['best_s']:.3f} / {cm['median_s']:.3f} s",
            f"<= {TARGETS['count_s']:g} s at 1M/10M",
            f"SQL {hand['best_s']:.3f} / {hand['median_s']:.3f} s",
            status(cm["median_s"] <= TARGETS["count_s"], at_size),
        ),
        ("    members", f"{a['count']:,}", "-", "same count", ""),
        (
            "(b) refresh_full, new segment",
            f"{b['first_s']:.3f} s",
            "-",
            f"{b['entered']:,} entered",
            "",
        ),
        (
            "    refresh_full, no change (median)",
            f"{b['unchanged']['median_s']:.3f} s",
            "-",
            f"count {a['count_matching']['median_s']:.3f} s",
            "",
        ),
    ]
    for label in ("uniform", "active"):
        r = c[label]
        rows.append(
            (
                f"(c) incremental p50 / p99, {label}",
                f"{r['p50_ms']:.2f} / {r['p99_ms']:.2f} ms",
                f"<= {TARGETS['incremental_ms']:g} ms",
                f"{r['changed']} changed: p50 {r['changed_p50_ms']} ms",
                status(r["p99_ms"] <= TARGETS["incremental_ms"]),
            )
        )
    return rows


def print_table(report: dict[str, Any], cfg: Config) -> None:
    rows = verdicts(report)
    report["verdicts"] = {r[0].strip(): r[4] for r in rows if r[4]}
    head = ("figure", "measured", "target", "baseline", "")
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(5)]
    line = "  ".join("-" * w for w in widths)
    d = report["data"]
    print()
    print(
        f"Segment benchmark, {report['mode']} mode: {d['contacts']:,} contacts, "
        f"{d['events']:,} events, now = {NOW.isoformat()}"
    )
    print(line)
    print("  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)).rstrip())
    print(line)
    for r in rows:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())
    print(line)
    print(
        "(a) target on the median; (c) target on the p99 of one call per event "
        f"({report['incremental']['uniform']['calls']} per pick)"
    )
    for phase in ("count", "refresh"):
        print(f"{phase} {fmt_cpu(report[phase]['cpu'])}")
    for label in ("uniform", "active"):
        r = report["incremental"][label]
        per_call = r["cpu"]["cpu_s"] / r["calls"] * 1000
        print(
            f"incremental {label} {fmt_cpu(r['cpu'])}\n  CPU per event (bench + "
            f"PostgreSQL, with the event's insert): {per_call:.2f} ms"
        )
    for warning in report["warnings"]:
        print(f"warning: {warning}")
    if report["mode"] == "small":
        print("small mode: far below the target size, the figures are indicative only")
    print(f"total {report['seconds_total']} s; JSON in {cfg.json_out}")


def print_plans(report: dict[str, Any], cfg: Config) -> None:
    a = report["count"]
    print()
    print(f"EXPLAIN (ANALYZE, BUFFERS) of count_matching (first {cfg.explain_lines}):")
    for row in a["plan"][: cfg.explain_lines]:
        print(f"  {row}")
    if len(a["plan"]) > cfg.explain_lines:
        print(f"  ... {len(a['plan']) - cfg.explain_lines} more lines in the JSON")
    tail = [r for r in a["plan"] if r.startswith(("Planning Time", "Execution Time"))]
    jit = [r.strip() for r in a["plan"] if r.strip().startswith("Timing:")]
    print("  " + "; ".join(tail + jit))
    print()
    print("EXPLAIN (ANALYZE, BUFFERS) of the hand-written SQL (top):")
    for row in a["hand_plan"][: max(10, cfg.explain_lines // 2)]:
        print(f"  {row}")
    tail = [
        r for r in a["hand_plan"] if r.startswith(("Planning Time", "Execution Time"))
    ]
    print("  " + "; ".join(tail))


# -- the run ---------------------------------------------------------------------------


def run(cfg: Config) -> dict[str, Any]:
    started = time.perf_counter()
    report: dict[str, Any] = {
        "mode": "small" if cfg.small else "full",
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "now": NOW.isoformat(),
        "condition": CONDITION,
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "config": {
            k: (str(v) if isinstance(v, Path) else v)
            for k, v in vars(cfg).items()
            if k not in {"database_url", "redis_url"}
        },
        "warnings": [],
    }
    name = _db_name(cfg.database_url)
    log(f"database {name}; Redis {cfg.redis_url}: flushing")
    reused = prepare_database(cfg)
    flush_redis(cfg)
    log("migrating (in-process)")
    setup_django(cfg)
    if reused:
        log("--reuse-data: keeping the loaded data, removing earlier measurements")
        reset_measurements(cfg)
        report["load"] = {"reused": True}
    else:
        report["load"] = load(cfg)
        ld = report["load"]
        log(
            f"loaded: contacts {ld['contacts_seconds']} s, events "
            f"{ld['events_seconds']} s ({ld['events_per_s']:,}/s, {ld['events_mb']} MB"
            f"), indexes {ld['index_seconds']} s, analyze {ld['analyze_seconds']} s"
        )
    report["data"] = data_stats()
    d = report["data"]
    log(
        f"{d['contacts']:,} contacts ({d['contacts_with_events']:,} with events), "
        f"{d['events']:,} events; events table {d['events_table']} + indexes "
        f"{d['events_indexes']}"
    )

    report["quiet_before"] = wait_quiet(cfg)
    log(f"(a) count: count_matching and hand-written SQL, {cfg.runs} runs each")
    report["count"] = phase_count(cfg)
    log("(b) segment_refresh_full")
    report["refresh"], segment = phase_refresh(cfg, report["count"]["count"])
    if d["pg_settings"].get("autovacuum") == "off":
        # On a default server autovacuum would now vacuum and analyze the
        # memberships (tens of thousands of rows inserted into an empty table), but
        # not events_event (far below its 20% threshold). Do what it would do.
        log("autovacuum is off on this server: VACUUM ANALYZE of the memberships")
        with psycopg.connect(cfg.database_url, autocommit=True) as conn:
            conn.execute("VACUUM (ANALYZE) segments_segmentmembership")
        report["warnings"].append(
            "autovacuum is off on this server: the bench vacuums the memberships "
            "after (b) as autovacuum would"
        )
    log(f"(c) incremental: {cfg.incremental} events per pick, one call each")
    report["incremental"] = phase_incremental(cfg, segment)

    phases = {
        "count": report["count"]["cpu"],
        "refresh": report["refresh"]["cpu"],
        "incremental uniform": report["incremental"]["uniform"]["cpu"],
        "incremental active": report["incremental"]["active"]["cpu"],
    }
    for key, cpu in phases.items():
        if cpu["other"] >= NOISY_CORES:
            report["warnings"].append(
                f"{key}: other processes used {cpu['other']} cores; the figures are "
                "not comparable"
            )
    report["seconds_total"] = round(time.perf_counter() - started, 1)
    return report


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    cfg = parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        report = run(cfg)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except SetupFailed as exc:
        print(f"SET-UP FAILED: {exc}", file=sys.stderr)
        return 2
    except BenchBroken as exc:
        print(f"BROKEN: {exc}", file=sys.stderr)
        return 1
    print_plans(report, cfg)
    print_table(report, cfg)
    cfg.json_out.parent.mkdir(parents=True, exist_ok=True)
    cfg.json_out.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
