"""What the engine and broadcast benchmarks (bench/engine.py, bench/broadcast.py)
run inside the app's processes.

- ``EmailBackend``: a Django email backend that sends nothing and records, for each
  message handed to it, when that happened. The benchmark points ``EMAIL_BACKEND`` at
  it (``bench._backend.EmailBackend``) in the RQ workers' environment.
- ``RecordingBackend``: the same, without building the MIME message (the broadcast
  benchmark measures Nudge's side of the hand-off, as with an ESP's HTTP API; an
  SMTP backend's MIME costs what bench/README.md says), with a fingerprint of what
  it got (the sizes of the subject, text and HTML) in the last field.
- ``job_done``: a no-op RQ job that records when a worker ran it (the baseline: a
  bare RQ round trip through the same workers, under the same load).

Both append one tab-separated line per record to the file named by
``BENCH_RECORD_PATH``, with ``O_APPEND`` (a single ``write`` of a short line, so lines
from several worker processes never interleave)::

    mail <TAB> nudge message id <TAB> recipient <TAB> unix time <TAB> pid
    mail <TAB> nudge message id <TAB> recipient <TAB> unix time <TAB> fingerprint
    job  <TAB> token            <TAB> -         <TAB> unix time <TAB> pid

The time is ``time.time()`` when the backend got the message (or the job started):
the benchmark compares it with the wall-clock time it sent the HTTP call, on the
same machine.
"""

from __future__ import annotations

import os
import time

from django.core.mail.backends.base import BaseEmailBackend

_fd: int | None = None


def _record(lines: list[str]) -> None:
    global _fd
    if _fd is None:
        path = os.environ.get("BENCH_RECORD_PATH")
        if not path:
            raise RuntimeError("BENCH_RECORD_PATH is not set")
        _fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.write(_fd, "".join(lines).encode())


class EmailBackend(BaseEmailBackend):
    """Records each message handed over; sends nothing."""

    def send_messages(self, email_messages) -> int:
        handed_over = time.time()
        lines = []
        for message in email_messages:
            # Build the MIME message (and validate its headers), as a real backend
            # does before it talks to anyone: that cost belongs to sending.
            message.message()
            metadata = getattr(message, "metadata", None) or {}
            lines.append(
                f"mail\t{metadata.get('nudge_message_id', '')}\t"
                f"{','.join(message.to)}\t{handed_over:.6f}\t{os.getpid()}\n"
            )
        if lines:
            _record(lines)
        return len(lines)


class RecordingBackend(BaseEmailBackend):
    """Records each message handed over and a fingerprint of it; sends nothing."""

    def send_messages(self, email_messages) -> int:
        handed_over = time.time()
        lines = []
        for message in email_messages:
            metadata = getattr(message, "metadata", None) or {}
            html = "".join(
                content for content, _mime in getattr(message, "alternatives", [])
            )
            lines.append(
                f"mail\t{metadata.get('nudge_message_id', '')}\t"
                f"{','.join(message.to)}\t{handed_over:.6f}\t"
                f"{len(message.subject)}/{len(message.body)}/{len(html)}\n"
            )
        if lines:
            _record(lines)
        return len(lines)


def job_done(token: str) -> None:
    """The baseline's no-op job: record that a worker ran it, and when."""
    _record([f"job\t{token}\t-\t{time.time():.6f}\t{os.getpid()}\n"])
