import logging
import signal
import threading

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import close_old_connections

from apps.core.scheduler import tick

logger = logging.getLogger("nudge.scheduler")


class Command(BaseCommand):
    help = (
        "Run the scheduler tick every few seconds: re-enqueue due work Redis lost. "
        "Run one or more per cluster; only one ticks at a time."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--interval",
            type=float,
            default=None,
            help="seconds between ticks (default NUDGE_TICK_SECONDS)",
        )
        parser.add_argument("--once", action="store_true", help="tick once and exit")

    def handle(self, *args, **options):
        interval = options["interval"] or settings.NUDGE_TICK_SECONDS
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        self.stdout.write(f"nudge scheduler: ticking every {interval:g}s")
        while not stop.is_set():
            close_old_connections()
            try:
                results = tick()
            except Exception:
                logger.exception("scheduler tick failed")
                results = None
            if results and any(results.values()):
                logger.info("tick %s", results)
            if options["once"]:
                break
            # Waiting on the stop event, not sleeping: SIGTERM ends the wait at once.
            stop.wait(interval)
