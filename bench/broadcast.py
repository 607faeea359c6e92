#!/usr/bin/env python
"""Broadcast benchmark: one campaign to 100,000 people, sent by two RQ workers.

What it does, in order (see bench/README.md for how to run it):

1. Drops and recreates its own PostgreSQL database (``nudge_bench_broadcast``) and
   flushes its own Redis db (``/9``), runs ``migrate`` in this process and creates N
   contacts (100,000; --small 5,000) in a static segment, an opt-out topic, a
   template with personalisation and a loop on the default layout, and a draft
   campaign to the segment.
2. The baseline: a bare loop, in as many processes as there are workers, renders
   the same template and builds the same messages for some of the contacts and
   hands them to the same recording backend, with no bookkeeping at all.
3. Starts 2 RQ ``SimpleWorker``s and one ``nudge_scheduler``, each in its own
   process group, all stopped at the end; the workers' email backend is
   ``bench._backend.EmailBackend`` (records each message, sends nothing).
4. Schedules the campaign ("send") and times it until the backend got the last
   message; the workers' memory at 10,000 messages and at the end.
5. Prints the figures beside the bare loop's and writes bench/out/broadcast.json.

Exit status: 0 whenever the run completed (a slower figure is a measurement, not a
failure), 1 if something broke (a message handed over twice or not at all, not
recorded sent, failed RQ jobs, the send did not finish in time), 2 if set-up
failed, 130 on Ctrl-C.
"""

from __future__ import annotations

import sys

from benchcommon.errors import bench_main
from broadcastbench.config import parse_args
from broadcastbench.report import print_table
from broadcastbench.run import run


def main(argv: list[str] | None = None) -> int:
    return bench_main(parse_args(argv), run, print_table)


if __name__ == "__main__":
    sys.exit(main())
