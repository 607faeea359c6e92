import hashlib
import secrets

from django.conf import settings
from django.db import models

from apps.contacts.models import Contact

PUBLIC_KEY_PREFIX = "pk_"
SECRET_KEY_PREFIX = "sk_"  # noqa: S105 - a prefix, not a secret


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class Source(models.Model):
    """A site (browser, public key) or a server (secret key) that sends events."""

    class Kind(models.TextChoices):
        BROWSER = "browser", "Browser (public key)"
        SERVER = "server", "Server (secret key)"

    class WhenConsentMissing(models.TextChoices):
        KEEP = "keep", "Keep the call"
        DROP = "drop", "Drop the call"

    name = models.CharField(max_length=100, unique=True)
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.BROWSER)
    # A browser key is public by nature: it sits in the page. It is stored as is.
    public_key = models.CharField(max_length=64, unique=True, null=True, blank=True)
    # A server key is shown once and stored only as its SHA-256.
    secret_key_hash = models.CharField(
        max_length=64, unique=True, null=True, blank=True
    )
    secret_key_hint = models.CharField(max_length=16, blank=True)
    allowed_origins = models.JSONField(
        default=list,
        blank=True,
        help_text="Origins browsers may send from, e.g. https://shop.example.com",
    )
    rate_limit_per_second = models.PositiveIntegerField(
        null=True, blank=True, help_text="Requests per second; empty = the default."
    )
    # Consent-gated tracking (docs/privacy.md): browser-key calls whose
    # context.consent.categoryPreferences does not set this category to true are
    # not stored. Server-key calls are never gated: the server decided.
    consent_category = models.CharField(
        max_length=100,
        blank=True,
        help_text="Browser calls are stored only if their consent context "
        "(context.consent.categoryPreferences, as Segment's consent management and "
        "nudge.js's consentCategory send it) sets this category to true, e.g. "
        "Marketing or analytics (compared ignoring case). Empty: no gating. "
        "Calls with a server key are never gated.",
    )
    consent_when_missing = models.CharField(
        max_length=4,
        choices=WhenConsentMissing.choices,
        default=WhenConsentMissing.KEEP,
        help_text="What to do with a browser call that carries no consent context "
        "at all, when a consent category is set: keep it (the site asks for "
        "consent itself, or not for every page) or drop it (only calls that show "
        "consent are stored).",
    )
    enabled = models.BooleanField(default=True)
    double_opt_in = models.BooleanField(
        "double opt-in",
        default=False,
        help_text="People this source adds stay “pending” until they click the link "
        "in a confirmation email; they get no marketing email before (GDPR proof "
        "of consent). NUDGE_DOUBLE_OPT_IN turns it on for every source.",
    )
    privacy_requests = models.BooleanField(
        "privacy requests",
        default=False,
        help_text="Its secret key may export and erase a person's data (the "
        "privacy API). Only for the system your data protection requests come "
        "from: every other key gets 403 there.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    key_rotated_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return self.name

    @property
    def is_server(self) -> bool:
        return self.kind == self.Kind.SERVER

    @property
    def key_display(self) -> str:
        if self.is_server:
            return (
                f"{SECRET_KEY_PREFIX}…{self.secret_key_hint}"
                if self.secret_key_hint
                else ""
            )
        return self.public_key or ""

    @property
    def gates_consent(self) -> bool:
        """Whether this source's calls are stored only with consent."""
        return bool(self.consent_category) and not self.is_server

    @property
    def effective_rate_limit(self) -> int:
        return self.rate_limit_per_second or settings.NUDGE_RATE_LIMIT_PER_SECOND

    def new_key(self) -> str:
        """Give the source a fresh key (the old one stops working); returns it."""
        if self.is_server:
            key = SECRET_KEY_PREFIX + secrets.token_urlsafe(32)
            self.secret_key_hash = hash_key(key)
            self.secret_key_hint = key[-4:]
            self.public_key = None
        else:
            key = PUBLIC_KEY_PREFIX + secrets.token_urlsafe(18)
            self.public_key = key
            self.secret_key_hash = None
            self.secret_key_hint = ""
        return key


class Event(models.Model):
    """One thing a contact did (or that happened to them), as received.

    Nothing points at Event rows by foreign key, so the table can be partitioned by
    month and old partitions dropped without touching anything else.
    """

    class Type(models.TextChoices):
        TRACK = "track"
        IDENTIFY = "identify"
        PAGE = "page"
        SCREEN = "screen"
        GROUP = "group"
        ALIAS = "alias"

    # No single-column indexes on these two: (contact, name, timestamp) and
    # EventKey serve their lookups, and every index costs inserts.
    contact = models.ForeignKey(
        Contact, on_delete=models.CASCADE, related_name="events", db_index=False
    )
    # No database constraint on the source: every row checks it at commit, about 5 us
    # of PostgreSQL CPU an event (bench/ingest.py), for a key that ingestion has just
    # authenticated. Deleting a source through Django still sets its events' source
    # to NULL (Django does that, not the database). The contact keeps its constraint: the lock-free ingestion path relies on it to see
    # a contact merged away meanwhile.
    source = models.ForeignKey(
        Source,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        db_index=False,
        db_constraint=False,
    )
    type = models.CharField(max_length=10, choices=Type.choices, default=Type.TRACK)
    # For track calls the event name; page / screen / identify / ... use their type.
    name = models.CharField(max_length=200)
    properties = models.JSONField(default=dict, blank=True)
    context = models.JSONField(default=dict, blank=True)
    # When it happened, corrected for the sender's clock skew (see services.py).
    timestamp = models.DateTimeField()
    received_at = models.DateTimeField()
    # Deduped within NUDGE_EVENT_DEDUPE_DAYS by EventKey, not by an index here.
    message_id = models.CharField(max_length=100)
    # Not processed yet: a PendingEvent row says so (not a column here, so that
    # processing an event never rewrites its row and every index of this table).

    class Meta:
        # On PostgreSQL the table is partitioned by month of received_at and its
        # primary key is (id, received_at) (partitions.py, migration 0010); ids
        # still come from one sequence, so `id` alone stays unique.
        indexes = [
            # "this contact's events of this name since T"
            models.Index(
                fields=["contact", "name", "timestamp"], name="event_contact_name_ts"
            ),
            # "events of this name since T"
            models.Index(fields=["name", "timestamp"], name="event_name_ts"),
            # the contact timeline, newest first
            models.Index(fields=["contact", "-timestamp"], name="event_contact_ts"),
        ]

    def __str__(self) -> str:
        return f"{self.name} @ {self.timestamp:%Y-%m-%d %H:%M:%S}"


class EventKey(models.Model):
    """A (source, messageId) seen in the last NUDGE_EVENT_DEDUPE_DAYS: a repeat
    inside that window is a duplicate and changes nothing.

    Written in the same statement as its event (storage.py). Narrow and bounded
    by the window (the tick prunes older keys, storage.py), where a unique index on
    the events table grew with all history and, its messageIds random, made every
    insert touch a random page of it. A replay after the window is stored again:
    the Segment spec's senders retry within hours, not weeks.
    """

    pk = models.CompositePrimaryKey("source_id", "message_id")
    # No foreign key: a deleted source's keys age out of the window like any.
    source_id = models.BigIntegerField()
    message_id = models.CharField(max_length=100)
    # The event's; a key older than the window is expired even before it is pruned.
    received_at = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["received_at"], name="eventkey_received")]

    def __str__(self) -> str:
        return f"{self.source_id}:{self.message_id}"


class PendingEvent(models.Model):
    """An event not processed yet: the processing queue, off the events table.

    Inserted with its event (same statement), deleted when the event is processed
    or dead-lettered, inserted again when someone retries a dead-lettered one.
    Processing claims these rows (select_for_update(skip_locked=True)), so the
    event row itself is only ever read; the tick sweeps what stays here too long.
    """

    event_id = models.BigIntegerField(primary_key=True)
    # The event's: the sweep takes the oldest first, and processing narrows its
    # read of the (partitioned) events table to these times.
    received_at = models.DateTimeField()

    class Meta:
        indexes = [
            models.Index(fields=["received_at", "event_id"], name="pending_received")
        ]

    def __str__(self) -> str:
        return f"event #{self.event_id} (pending)"


class EventFailure(models.Model):
    """An event whose processing failed, or that is being tried alone: how many
    attempts it has had, the last error, and whether it waits for another try or is
    set aside (dead-lettered) until someone retries it.

    Off the events table and keyed by the event's id without a foreign key (nothing
    points at Event rows, see Event), so that table stays as it is; a row lives
    only until its event is processed, so this one stays small.

    An attempt is counted before it starts (status STARTED, processing.py): an
    attempt that never finishes, because it killed its worker or its job timed out,
    still counts.
    """

    class Status(models.TextChoices):
        FAILING = "failing", "Failing (tried again later)"
        STARTED = "started", "Attempt started (running, or its worker died)"
        DEAD = "dead", "Dead-lettered"

    event_id = models.BigIntegerField(primary_key=True)
    status = models.CharField(
        max_length=10, choices=Status.choices, default=Status.FAILING
    )
    attempts = models.PositiveIntegerField(default=0)
    # The last failure's traceback (or why the last attempt did not finish).
    error = models.TextField(blank=True)
    first_failed_at = models.DateTimeField()
    # The last failure, or the start of the last attempt.
    last_failed_at = models.DateTimeField()
    # A failing event is not handed to the workers again before this; while an
    # attempt runs, when the next may start if this one never finishes.
    retry_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "failed event"
        permissions = [("retry_eventfailure", "Can retry failed events")]

    def __str__(self) -> str:
        return f"event #{self.event_id} ({self.get_status_display()})"


class EventBatch(models.Model):
    """Events that the tick handed out again, taken together by one job.

    The job writes this row (committed) before it starts and deletes it with its
    work, holding it locked meanwhile. A row that nobody holds is a job that died
    (killed, out of memory) or timed out on these events: the tick then has them
    tried one at a time, each attempt counted, so that the one that kills its worker
    is found and set aside. One row a job, not one an event: events that never fail
    pay next to nothing for it.
    """

    event_ids = models.JSONField()
    started_at = models.DateTimeField()

    class Meta:
        verbose_name_plural = "event batches"

    def __str__(self) -> str:
        return f"{len(self.event_ids)} events since {self.started_at:%H:%M:%S}"
