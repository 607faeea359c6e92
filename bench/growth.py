#!/usr/bin/env python
"""Growth benchmark: the same measures at two sizes of the events table, one run.

What it does, in order (see bench/README.md for how to run it):

1. Drops and recreates its own PostgreSQL database (``nudge_bench_growth``) and
   flushes its own Redis db (``/11``), runs ``migrate`` in this process, creates
   contacts, a server source and a behavioural segment, and the month partitions
   the data covers (13 months before a fixed "now" and two after).
2. Loads the events table to the base size (1,000,000; --small 100,000) with
   ``INSERT ... SELECT generate_series`` a million rows a statement, spread over
   the 13 months, then ANALYZE (autovacuum is off on the test machines).
3. Measures at that size, with the app's clock fixed at "now":
   (a) batch ingestion: threads calling ``events_ingest`` with 100 track events of
       known contacts each, events/s;
   (b) one contact's incremental segment update: one event ingested, then
       ``segment_update_for_contacts`` timed, p50 / p99 over many contacts;
   (c) the behavioural segment's ``count_matching``, best of three.
4. Loads on to the big size (50,000,000; --small 1,000,000), ANALYZE, and measures
   the same again.
5. Drops the oldest month's partition while (a) runs: how long the drop took, and
   the slowest ingestion call during it beside the p99 before it.
6. Prints the figures beside the base size's and writes bench/out/growth.json.

Exit status: 0 whenever the run completed (a MISS is a measurement), 1 if something
broke, 2 if set-up failed, 130 on Ctrl-C.
"""

from __future__ import annotations

import sys

from benchcommon.errors import bench_main
from growthbench.config import parse_args
from growthbench.report import print_table
from growthbench.run import run


def main(argv: list[str] | None = None) -> int:
    return bench_main(parse_args(argv), run, print_table)


if __name__ == "__main__":
    sys.exit(main())
