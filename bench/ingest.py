#!/usr/bin/env python
"""Ingestion benchmark: the HTTP API against a real granian server, and raw COPY.

What it does, in order (see bench/README.md for how to run it):

1. Drops and recreates its own PostgreSQL database (``nudge_bench``) and flushes its
   own Redis db (``/13``), runs ``manage.py migrate`` and creates two server sources:
   one for the API, one for the COPY baseline.
2. Starts granian (WSGI, 2 workers by default) on a free port and waits for it.
3. Measures, with all request bodies built before the clock starts:
   - batch: N requests of 100 events to /api/v1/batch, closed loop, c in flight;
   - COPY baseline: the same kind of rows COPYed straight into events_event;
   - single-call floor: /api/v1/track with an unknown key (a 401; no DB, no Redis);
   - single track calls at saturation (closed loop, c in flight);
   - single track calls open loop at a fixed offered rate, latency measured from
     each request's intended send time (no coordinated omission).
4. Checks correctness: every accepted messageId is in the table exactly once, no
   request failed, a re-sent batch is all duplicates, one RQ job per request.
5. Prints a table against the targets in DESIGN.md and writes bench/out/ingest.json.

Exit status: 0 whenever the run completed (a MISS is a measurement, not a failure),
1 if something broke (rows lost or duplicated, unexpected responses), 2 if set-up
failed (the server did not start, migrate failed), 130 on Ctrl-C.
"""

from __future__ import annotations

import sys
from typing import Any

from benchcommon.errors import bench_main
from ingestbench.config import Config, parse_args
from ingestbench.profile import profile
from ingestbench.report import print_table
from ingestbench.run import run


def run_or_profile(cfg: Config) -> dict[str, Any] | None:
    """The benchmark's report, or None after printing a profile (--profile)."""
    if cfg.profile:
        profile(cfg)
        return None
    return run(cfg)


def main(argv: list[str] | None = None) -> int:
    return bench_main(parse_args(argv), run_or_profile, print_table)


if __name__ == "__main__":
    sys.exit(main())
