#!/usr/bin/env python
"""Workflow engine benchmark: event -> email latency under load, and steps/s.

What it does, in order (see bench/README.md for how to run it):

1. Drops and recreates its own PostgreSQL database (``nudge_bench_engine``) and
   flushes its own Redis db (``/11``), runs ``migrate`` in this process (Django is set
   up here to create the data and enrollments) and creates a server source, an email
   template, the workflows and the contacts.
2. Starts the real processes, each in its own process group, all stopped at the end
   (also on Ctrl-C / SIGTERM): granian (WSGI, 2 workers), N RQ ``SimpleWorker``s on
   ``events workflows email default`` and one ``nudge_scheduler``. The workers send
   email through ``bench._backend.EmailBackend``, which records when each message was
   handed over.
3. (a) latency: a workflow triggered by ``bench_signup`` whose first step sends an
   email. Probe ``track`` calls (5/s, each for its own contact) are sent open loop
   while another process ingests a background load of ``page`` events (200 events/s,
   over many contacts). Each probe's latency runs from the moment its HTTP call was
   sent to the moment its email reached the backend. Baseline, in the same run: a
   no-op RQ job enqueued from here at the same rate (between the probes), run by the
   same workers under the same load, enqueue -> run. Per-hop timings come from the
   rows' timestamps (event received / processed, step run, message claimed).
4. (b) steps/s: K enrollments (``enrollment_start(advance=False)``) in a workflow of
   four instant steps (branch -> update_contact -> split -> exit), then
   ``enqueue_advance(ids)`` (200 ids per job) and the clock runs until none is
   active or waiting; steps/s = StepRun rows / elapsed. Baseline: the same rows
   written with plain SQL (psycopg), one transaction per enrollment, two processes.
   Then, in this process: queries per enrollment and steps/s of one process without
   RQ (and with ``--profile``, a cProfile of ``advance_enrollments``).
5. Prints a table against the targets in DESIGN.md and writes bench/out/engine.json.

``--only latency`` / ``--only engine`` runs one part; ``--wait-quiet S`` waits up to S
seconds before each phase for other processes to go quiet (on a shared machine the
figures are otherwise not comparable; each phase reports who used the CPU).

Exit status: 0 whenever the run completed (a MISS is a measurement, not a failure),
1 if something broke (emails missing or sent twice, enrollments stuck or failed, RQ
jobs failed, HTTP errors), 2 if set-up failed (migrate, the server or the workers did
not start), 130 on Ctrl-C.
"""

from __future__ import annotations

import sys

from benchcommon.errors import bench_main
from enginebench.config import parse_args
from enginebench.report import print_table
from enginebench.run import run


def main(argv: list[str] | None = None) -> int:
    return bench_main(parse_args(argv), run, print_table)


if __name__ == "__main__":
    sys.exit(main())
