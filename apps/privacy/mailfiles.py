"""An erased person's messages dropped from the file mail backend's files (the
demo's and development's outbox).

The files are rewritten after the erasure commits (a file is not rolled back with
a transaction), so the erasure keeps the SHA-256 of each of the person's addresses
(``Erasure.mail_files_pending``, no address) until a scrub of every file worked. A
scrub that could not read or rewrite a file notes when it tried; the scheduler's
tick tries again RETRY_AFTER later, for as long as it takes.

Scrubs run one at a time per folder (an exclusive ``flock`` on a lock file in it,
across processes): two at once would each write back what the other removed. The
lock does not hold off the file backend itself: a message it appends to a file
while that file is rewritten is lost (the development and demo outbox only).

A message goes when the person's address is anywhere in it: its headers, its text
parts decoded (quoted-printable and base64 split or hide an address as written),
and URL-encoded (``ada%40example.com`` in a link's query).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import email
import email.policy
import fcntl
import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote

from django.conf import settings
from django.db import transaction
from django.db.models import Q, QuerySet

from apps.contacts.models import email_hash
from apps.core import clock

from .models import Erasure

logger = logging.getLogger(__name__)

# Separator Django's file mail backend writes after each message.
SEPARATOR = "-" * 79 + "\n"
# What may be an address in a message. The local part is taken greedily, so what
# stands before an address ("?email=", "'", "=3D") is tried off again after each of
# SEPARATORS (and never a plain letter: erasing bob@ must not drop jimbob@'s mail).
ADDRESS = re.compile(r"([\w.!#$%&'*+/=?^`{|}~-]+)@([\w-]+(?:\.[\w-]+)+)")
SEPARATORS = frozenset("=?'*|{}/&#!$%^`~")
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
            if path.name.endswith(TEMPORARY_SUFFIX):
                # a rewrite that died before its rename (the lock: none is under
                # way): other people's messages, and maybe this person's
                path.unlink(missing_ok=True)
                continue
            if path.name.startswith("."):
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


def mail_files_due(now: dt.datetime) -> QuerySet[Erasure]:
    """The erasures whose mail files the tick should scrub again."""
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
    try:
        temporary.write_text(SEPARATOR.join(kept))
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return len(blocks) - len(kept)


def _mentions(block: str, hashes: set[str]) -> bool:
    for text in _readings(block):
        for local, domain in ADDRESS.findall(text):
            for candidate in _local_parts(local[-LOCAL_PART_MAX:]):
                if email_hash(f"{candidate}@{domain}") in hashes:
                    return True
    return False


def _readings(block: str) -> list[str]:
    """The message as written, each of its text parts decoded, and each of those
    URL-decoded."""
    texts = [block]
    message = email.message_from_string(block, policy=email.policy.default)
    for part in message.walk():
        if part.get_content_maintype() != "text":
            continue
        try:
            texts.append(part.get_content())
        except (LookupError, ValueError, UnicodeError):  # an unknown charset, say
            continue
    return texts + [unquote(text) for text in texts if "%40" in text]


def _local_parts(local: str) -> Iterator[str]:
    yield local
    for position, character in enumerate(local):
        if character in SEPARATORS:
            rest = local[position + 1 :]
            yield rest
            if rest.startswith("3D"):  # quoted-printable's "=" as written
                yield rest[2:]


@contextlib.contextmanager
def _folders_locked() -> Iterator[tuple[list[Path], list[str]]]:
    """The mail folders, each locked against other scrubs (in one order, so two
    scrubs never wait on each other crosswise), and what failed: a folder whose
    lock cannot be taken (not writable) is not scrubbed this time."""
    locked, failures = [], []
    with contextlib.ExitStack() as stack:
        for folder in _mail_dirs():
            try:
                # read-only: a lock file another user made is still ours to lock
                lock = os.open(folder / LOCK_NAME, os.O_RDONLY | os.O_CREAT, 0o644)
                stack.callback(os.close, lock)
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
    # (resolved before they are told apart: one folder named two ways is locked
    # once, not twice by the same process, which would wait for ever)
    return sorted({f.resolve() for f in folders if f.is_dir()})
