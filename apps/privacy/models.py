from django.db import models


class Erasure(models.Model):
    """The record that a person was erased: what, when, by whom; no PII.

    ``contact_id`` is a plain integer (the contact is gone). ``removed`` counts the
    rows deleted or scrubbed per table, e.g. {"events_event": 12}."""

    class Status(models.TextChoices):
        WAITING = "waiting", "Waiting for sends in flight"
        DONE = "done", "Done"

    contact_id = models.BigIntegerField(db_index=True)
    status = models.CharField(
        max_length=10, choices=Status.choices, default=Status.WAITING
    )
    requested_by = models.CharField(
        max_length=200, help_text="A staff username or an API key's source."
    )
    reason = models.CharField(max_length=300, blank=True)
    removed = models.JSONField(default=dict, blank=True)
    # The SHA-256 (contacts.email_hash) of each of the person's addresses while the
    # file mail backend's files may still hold messages to them: the files are
    # scrubbed after the erasure commits, and again by the tick until that worked.
    mail_files_pending = models.JSONField(default=list, blank=True)
    # When a scrub last failed (a file it could not read or rewrite): the tick
    # tries again a while after (apps/privacy/mailfiles.py).
    mail_files_failed_at = models.DateTimeField(null=True, blank=True)
    requested_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-requested_at"]

    def __str__(self) -> str:
        return f"erasure of contact #{self.contact_id} ({self.status})"


class DataExport(models.Model):
    """One person's data, gathered in the background into a downloadable archive."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        BUILDING = "building", "Building"
        READY = "ready", "Ready"
        FAILED = "failed", "Failed"
        EXPIRED = "expired", "Expired"

    contact = models.ForeignKey(
        "contacts.Contact", on_delete=models.CASCADE, related_name="exports"
    )
    status = models.CharField(
        max_length=10, choices=Status.choices, default=Status.QUEUED
    )
    requested_by = models.CharField(max_length=200)
    # Progress while building: sections done out of all, rows written so far.
    sections_done = models.PositiveIntegerField(default=0)
    sections_total = models.PositiveIntegerField(default=0)
    rows = models.PositiveIntegerField(default=0)
    # Relative to NUDGE_EXPORT_DIR; blank until ready, and again once expired.
    file_name = models.CharField(max_length=200, blank=True)
    size_bytes = models.PositiveBigIntegerField(default=0)
    error = models.TextField(blank=True)
    requested_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-requested_at"]
        permissions = [("download_dataexport", "Can download a person's data export")]

    def __str__(self) -> str:
        return f"export of contact #{self.contact_id} ({self.status})"


class RetentionRun(models.Model):
    """One run of the retention job: what it deleted, per kind of data.

    A run that ran out of time stops between two batches as PARTIAL, and the next
    scheduler tick starts another at once; a FAILED one (an error in one kind, or a
    worker that died) leaves the rest to the next day's run."""

    class Status(models.TextChoices):
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        PARTIAL = "partial", "Out of time, continued by the next run"
        FAILED = "failed", "Failed"

    status = models.CharField(
        max_length=10, choices=Status.choices, default=Status.RUNNING
    )
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    # {"events": 1200, "anonymous_contacts": 3, ...}
    deleted = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-started_at"]

    def __str__(self) -> str:
        return f"retention run at {self.started_at:%Y-%m-%d %H:%M}"
