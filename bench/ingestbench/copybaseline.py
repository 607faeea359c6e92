"""The COPY baseline: the same kind of rows straight into events_event."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from typing import Any

import orjson
import psycopg
from benchcommon.errors import BenchBroken

from ingestbench.config import Config
from ingestbench.events import EventFactory, iso

# -- the COPY baseline -----------------------------------------------------------------


COPY_SQL = (
    "COPY events_event (contact_id, source_id, type, name, properties, context, "
    "timestamp, received_at, message_id) FROM STDIN"
)


def _copy_text(value: str) -> str:
    """A value for COPY's text format."""
    return (
        value.replace("\\", "\\\\")
        .replace("\t", "\\t")
        .replace("\n", "\\n")
        .replace("\r", "\\r")
    )


def copy_baseline(
    cfg: Config,
    source_id: int,
    factory: EventFactory,
    rows: int,
    measure: Callable[[], Callable[[], dict[str, Any]]],
) -> dict[str, Any]:
    """COPY event rows, shaped as the API stores them, into events_event; rows/s.

    The rows are encoded before the clock starts, so the figure is what PostgreSQL
    takes in (one COPY, one commit, same table and indexes), not Python's speed.
    ``measure()`` starts a CPU measurement and returns the function that ends it
    (called while the COPY's connection, hence its backend process, still exists).
    """
    contact_of = _make_contacts(cfg, factory)

    # The same kind of messages the API gets, as rows the way the API stores them.
    messages: list[dict] = []
    while len(messages) < rows:
        messages.extend(factory.events(cfg.batch_size, cfg.users_per_batch))
    received = iso(dt.datetime.now(dt.UTC))
    encode_began = time.perf_counter()
    payload = _copy_payload(messages[:rows], contact_of, source_id, received)
    encode_seconds = time.perf_counter() - encode_began

    seconds, cpu, stored = _timed_copy(cfg, source_id, payload, measure)
    if stored != rows:
        raise BenchBroken(f"COPY baseline: {stored} rows stored, {rows} written")
    return {
        "rows": rows,
        "seconds": round(seconds, 3),
        "rows_per_s": round(rows / seconds),
        "encode_seconds": round(encode_seconds, 3),
        "rows_per_s_with_encoding": round(rows / (seconds + encode_seconds)),
        "cpu": cpu,
    }


def _make_contacts(cfg: Config, factory: EventFactory) -> dict[str, int]:
    """The contacts the rows belong to: one per visitor of the pool, made for this.
    Returns contact id by anonymous id."""
    with psycopg.connect(cfg.database_url) as conn:
        ids = conn.execute(
            "INSERT INTO contacts_contact (first_name, last_name, phone, timezone,"
            " locale, attributes, email_consent, score, created_at, first_seen_at)"
            " SELECT '', '', '', '', '', '{}', 'subscribed', 0, now(), now()"
            " FROM generate_series(1, %s) RETURNING id",
            (len(factory.users),),
        ).fetchall()
    return {u.anonymous_id: row[0] for u, row in zip(factory.users, ids, strict=True)}


def _copy_payload(
    messages: list[dict], contact_of: dict[str, int], source_id: int, received: str
) -> bytes:
    """The messages as COPY text rows, in COPY_SQL's columns."""
    lines = []
    for m in messages:
        props = dict(m["properties"])
        if m["type"] == "page" and m.get("name"):
            props["name"] = m["name"]
        fields = (
            str(contact_of[m["anonymousId"]]),
            str(source_id),
            m["type"],
            m.get("event") or m["type"],
            orjson.dumps(props).decode(),
            orjson.dumps(m["context"]).decode(),
            m["timestamp"],
            received,
            m["messageId"],
        )
        lines.append("\t".join(_copy_text(f) for f in fields))
    return ("\n".join(lines) + "\n").encode()


def _timed_copy(
    cfg: Config,
    source_id: int,
    payload: bytes,
    measure: Callable[[], Callable[[], dict[str, Any]]],
) -> tuple[float, dict[str, Any], int]:
    """One COPY and its commit, timed and CPU-measured; returns the seconds, the
    CPU and the rows the source now has."""
    with psycopg.connect(cfg.database_url) as conn:
        conn.execute("SELECT 1")
        done = measure()
        began = time.perf_counter()
        with conn.cursor() as cur, cur.copy(COPY_SQL) as copy:
            for start in range(0, len(payload), 1 << 20):
                copy.write(payload[start : start + (1 << 20)])
        conn.commit()
        seconds = time.perf_counter() - began
        cpu = done()
        stored = conn.execute(
            "SELECT count(*) FROM events_event WHERE source_id = %s", (source_id,)
        ).fetchone()[0]
    return seconds, cpu, stored
