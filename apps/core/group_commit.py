"""Group commit: threads of one process that arrive together share one round trip.

A web process serves several requests at once on its threads. When each writes a
few rows, most of each write's cost is per statement and per commit (the round trip,
the client library's work, PostgreSQL's parse and WAL flush), not per row. Here the
first thread to arrive becomes the leader and writes what every waiting thread
brought, in one go; those that arrive meanwhile wait, and the first of them leads
the next round. Nobody waits for a timer: a thread alone writes at once, as before.

The leader hands each item its own result (or exception). If the shared write fails,
``flush`` decides what each item gets; typically each is told to go again alone, so
one item's error never becomes another's.
"""

import threading
from collections.abc import Callable


class Item:
    """One thread's share of a round: what it brought, and then its outcome."""

    __slots__ = ("_done", "_lead", "error", "result")

    def __init__(self) -> None:
        self._done = threading.Event()
        self._lead = False
        self.result: object = None
        self.error: BaseException | None = None


class GroupCommit[I: Item]:
    """``flush(items)`` runs on the leader's thread with every item waiting at the
    time; it must set each item's ``result`` or ``error`` and not raise."""

    def __init__(self, flush: Callable[[list[I]], None]) -> None:
        self._flush = flush
        self._lock = threading.Lock()
        self._waiting: list[I] = []
        self._leading = False

    def submit(self, item: I) -> I:
        """Wait until ``item`` has been written with whatever else came along."""
        with self._lock:
            self._waiting.append(item)
            follower = self._leading
            self._leading = True
        if follower:
            item._done.wait()
            if not item._lead:
                return item
        with self._lock:
            round_, self._waiting = self._waiting, []
        try:
            self._flush(round_)
        except BaseException as exc:  # flush must not raise; if it does, nobody hangs
            for each in round_:
                if each.result is None and each.error is None:
                    each.error = exc
        finally:
            with self._lock:
                if self._waiting:
                    # The next round's first item leads it, on its own thread.
                    self._waiting[0]._lead = True
                    self._waiting[0]._done.set()
                else:
                    self._leading = False
            for each in round_:
                if each is not item:
                    each._done.set()
        return item
