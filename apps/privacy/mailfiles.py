"""An erased person's messages dropped from the file mail backend's files (the
demo's and development's outbox).

The files are rewritten after the erasure commits (a file is not rolled back with
a transaction), so the erasure keeps the SHA-256 of each of the person's addresses
(``Erasure.mail_files_pending``, no address) until a scrub of every file worked. A
scrub that could not read or rewrite a file notes when it tried; the scheduler's
tick tries again RETRY_AFTER later, for as long as it takes.

Scrubs run one at a time per folder (an exclusive ``flock`` on a lock file in it,
across processes): two at once would each write back what the other removed.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path

from django.conf import settings
from django.db import transaction

from apps.contacts.models import email_hash
from apps.core import clock

from .models import Erasure

logger = logging.getLogger(__name__)

# Separator Django's file mail backend writes after each message.
SEPARATOR = "-" * 79 + "\n"
# What may be an address in a message (headers and body). The local part is taken
# greedily, so what stands before an address ("?email=", "'", "=3D") is tried off
# again one character at a time (_mentions).
ADDRESS = re.compile(r"([\w.!#$%&'*+/=?^`{|}~-]+)@([\w-]+(?:\.[\w-]+)+)")
LOCAL_PART_MAX = 64
LOCK_NAME = ".nudge-erasure.lock"
TEMPORARY_SUFFIX = ".erasing"
RETRY_AFTER = dt.timedelta(minutes=10)


def mail_files_scrub(*, erasure_id: int) -> None:
    """Drop the erased person's messages from every mail file; note the outcome on
    the erasure (what was dropped; nothing pending, or when a file failed)."""
    with _folders_locked() as (folders, failures):
        hashes = set(
            Erasure.objects.values_list("mail_files_pending", flat=True).get(
                pk=erasure_id
            )
        )
        if not hashes:  # another scrub finished it meanwhile
            return
        dropped = 0
        for path in (p for folder in folders for p in sorted(folder.iterdir())):
            if path.name.startswith(".") or path.name.endswith(TEMPORARY_SUFFIX):
                continue
            try:
                dropped += _file_scrub(path, hashes)
            except OSError as exc:
                failures.append(f"{path.name}: {exc}")
        with transaction.atomic():
            erasure = Erasure.objects.select_for_update().get(pk=erasure_id)
            erasure.removed["mail_files"] = (
                erasure.removed.get("mail_files", 0) + dropped
            )
            if failures:
                erasure.mail_files_failed_at = clock.now()
            else:
                erasure.mail_files_pending, erasure.mail_files_failed_at = [], None
            erasure.save(
                update_fields=["removed", "mail_files_pending", "mail_files_failed_at"]
            )
    if failures:
        logger.error(
            "erasure could not scrub %s mail files; the tick tries again: %s",
            len(failures),
            "; ".join(failures[:3]),
            extra={"erasure_id": erasure_id},
        )


def mail_files_due(now: dt.datetime):
    """The erasures whose mail files the tick should scrub again."""
    from django.db.models import Q

    return Erasure.objects.exclude(mail_files_pending=[]).filter(
        Q(mail_files_failed_at__isnull=True)
        | Q(mail_files_failed_at__lte=now - RETRY_AFTER)
    )


def _file_scrub(path: Path, hashes: set[str]) -> int:
    if not path.is_file():
        return 0
    blocks = path.read_text(errors="replace").split(SEPARATOR)
    kept = [block for block in blocks if not _mentions(block, hashes)]
    if len(kept) == len(blocks):
        return 0
    temporary = path.with_name(path.name + TEMPORARY_SUFFIX)
    temporary.write_text(SEPARATOR.join(kept))
    os.replace(temporary, path)
    return len(blocks) - len(kept)


def _mentions(block: str, hashes: set[str]) -> bool:
    for local, domain in ADDRESS.findall(block):
        local = local[-LOCAL_PART_MAX:]
        for start in range(len(local)):
            if email_hash(f"{local[start:]}@{domain}") in hashes:
                return True
    return False


@contextlib.contextmanager
def _folders_locked() -> Iterator[tuple[list[Path], list[str]]]:
    """The mail folders, each locked against other scrubs (in one order, so two
    scrubs never wait on each other crosswise), and what failed: a folder whose
    lock cannot be taken (not writable) is not scrubbed this time."""
    locked, failures = [], []
    with contextlib.ExitStack() as stack:
        for folder in _mail_dirs():
            try:
                lock = stack.enter_context(open(folder / LOCK_NAME, "a"))
                fcntl.flock(lock, fcntl.LOCK_EX)
            except OSError as exc:
                failures.append(f"{folder}: {exc}")
                continue
            locked.append(folder)
        yield locked, failures


def _mail_dirs() -> list[Path]:
    """Where the file mail backend writes: its configured folder, and MAIL_DIR
    (files left from before a change of backend)."""
    folders = {Path(settings.MAIL_DIR)} if getattr(settings, "MAIL_DIR", "") else set()
    mailer = settings.MAILERS.get("default", {})
    if str(mailer.get("BACKEND", "")).endswith("filebased.EmailBackend"):
        path = (mailer.get("OPTIONS") or {}).get("file_path")
        if path:
            folders.add(Path(path))
    return sorted(f.resolve() for f in folders if f.is_dir())
