import hashlib

from django.db import models
from django.db.models.functions import Lower


class ConsentStatus(models.TextChoices):
    SUBSCRIBED = "subscribed", "Subscribed"
    PENDING = "pending", "Pending confirmation"
    UNSUBSCRIBED = "unsubscribed", "Unsubscribed"
    BOUNCED = "bounced", "Bounced"
    COMPLAINED = "complained", "Complained"


# Stricter is higher. Consent only ever moves up by itself (an unsubscribe after a
# bounce leaves it bounced, a merge keeps the stricter side); the ways down are the
# person's own resubscribe or confirmation, and staff lifting it with a reason.
CONSENT_STRICTNESS = {
    ConsentStatus.SUBSCRIBED: 0,
    ConsentStatus.PENDING: 1,
    ConsentStatus.UNSUBSCRIBED: 2,
    ConsentStatus.BOUNCED: 3,
    ConsentStatus.COMPLAINED: 4,
}
# The ways down a person may take themselves: resubscribing after their own
# unsubscribe, confirming a pending opt-in. Bounced and complained are not theirs to
# undo: the address failed, or they called it spam.
PERSON_MAY_LOWER = {
    (ConsentStatus.UNSUBSCRIBED, ConsentStatus.SUBSCRIBED),
    (ConsentStatus.PENDING, ConsentStatus.SUBSCRIBED),
}


def consent_may_change(current: str, new: str, *, lift: bool = False) -> bool:
    """Whether email consent may go from ``current`` to ``new``; ``lift`` is a
    server-side decision with a reason (staff), which may lift anything."""
    if lift or current == new:
        return True
    if CONSENT_STRICTNESS.get(new, 0) > CONSENT_STRICTNESS.get(current, 0):
        return True
    return (current, new) in PERSON_MAY_LOWER


class Contact(models.Model):
    """A person, known (email / user id) or not yet (only anonymous ids)."""

    # Stored lower-cased; the unique index on Lower(email) guards the rest.
    # NULL, not "", when unknown: the unique index must not see two blanks as a clash.
    email = models.EmailField(max_length=254, null=True, blank=True)  # noqa: DJ001
    # Segment's userId: the site's own id for this person.
    external_id = models.CharField(
        "user id", max_length=255, null=True, blank=True, unique=True
    )
    first_name = models.CharField(max_length=150, blank=True)
    last_name = models.CharField(max_length=150, blank=True)
    phone = models.CharField(max_length=50, blank=True)
    timezone = models.CharField(
        max_length=64, blank=True, help_text="IANA name, e.g. Europe/Paris"
    )
    locale = models.CharField(max_length=35, blank=True)
    attributes = models.JSONField(default=dict, blank=True)
    email_consent = models.CharField(
        max_length=20, choices=ConsentStatus.choices, default=ConsentStatus.SUBSCRIBED
    )
    score = models.IntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    first_seen_at = models.DateTimeField(null=True, blank=True)
    last_seen_at = models.DateTimeField(null=True, blank=True)
    # Set when the person was erased (apps/privacy): the row stays as a tombstone
    # with no personal data, so reports still count what it did.
    erased_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                Lower("email"),
                name="contact_email_ci_unique",
                condition=models.Q(email__isnull=False),
            ),
        ]
        indexes = [
            models.Index(fields=["last_seen_at"], name="contact_last_seen_idx"),
            models.Index(fields=["created_at"], name="contact_created_idx"),
        ]

    def __str__(self) -> str:
        if self.erased_at:
            return f"erased #{self.pk}"
        if self.email:
            return self.email
        if self.external_id:
            return f"user {self.external_id}"
        return f"anonymous #{self.pk}"

    @property
    def is_known(self) -> bool:
        return bool(self.email or self.external_id)

    @property
    def full_name(self) -> str:
        return f"{self.first_name} {self.last_name}".strip()


class Identity(models.Model):
    """An anonymous id (cookie, device) seen for a contact. Each maps to one contact."""

    contact = models.ForeignKey(
        Contact, on_delete=models.CASCADE, related_name="identities"
    )
    anonymous_id = models.CharField(max_length=255, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "identities"

    def __str__(self) -> str:
        return self.anonymous_id


class ContactMerge(models.Model):
    """The record of one contact folded into another; the merged one is deleted.

    ``merged_contact_id`` is a plain integer (the row is gone), so jobs that still
    carry it can follow it to the contact that absorbed it.
    """

    merged_contact_id = models.BigIntegerField(db_index=True)
    into = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="merges")
    reason = models.CharField(max_length=200)
    # What the merged contact looked like, so nothing about it is lost.
    snapshot = models.JSONField(default=dict)
    # How many rows of each kind moved over, e.g. {"events": 12, "identities": 2}.
    moved = models.JSONField(default=dict)
    merged_at = models.DateTimeField()

    class Meta:
        ordering = ["-merged_at"]

    def __str__(self) -> str:
        return f"#{self.merged_contact_id} -> #{self.into_id}"


class ConsentRecord(models.Model):
    """Proof of consent: one change of a contact's email consent or of one topic
    choice, with where it came from. Written by consent.consent_record only, and only
    when something changed; never edited. Deleted with the contact (erasure).

    ``topic`` is the topic's slug (fixed once a topic is made; contacts cannot point
    at campaigns' Topic), blank for the email consent. ``previous`` is blank when
    there was nothing before (a contact created with a consent)."""

    class Source(models.TextChoices):
        API_SERVER = "api_server", "API (server key)"
        API_BROWSER = "api_browser", "API (browser key)"
        FORM = "form", "Form (identify)"
        PREFERENCES = "preferences", "Preference page"
        ONE_CLICK = "one_click", "One-click unsubscribe"
        CONFIRMATION = "confirmation", "Confirmation link (double opt-in)"
        ESP = "esp", "ESP webhook"
        STAFF = "staff", "Admin user"
        IMPORT = "import", "Import"
        MERGE = "merge", "Merge"
        SYSTEM = "system", "System"

    contact = models.ForeignKey(
        Contact, on_delete=models.CASCADE, related_name="consent_records"
    )
    topic = models.CharField(
        max_length=60, blank=True, help_text="A topic's slug; blank: email consent."
    )
    previous = models.CharField(max_length=20, blank=True)
    value = models.CharField(max_length=20)
    source = models.CharField(max_length=12, choices=Source.choices)
    who = models.CharField(
        max_length=200,
        blank=True,
        help_text="The key's source, the staff username, the ESP, the address "
        "a link went to.",
    )
    # Anonymised unless NUDGE_ANONYMISE_IP is off (apps.core.ip.anonymise_ip).
    ip = models.GenericIPAddressField("IP address", null=True, blank=True)
    form = models.CharField(
        max_length=500, blank=True, help_text="The form or page: its id or URL."
    )
    wording = models.TextField(
        blank=True, help_text="What the person was shown, or the reason given."
    )
    at = models.DateTimeField()

    class Meta:
        ordering = ["-at", "-pk"]
        indexes = [
            models.Index(fields=["contact", "-at"], name="consent_record_contact_idx")
        ]

    def __str__(self) -> str:
        return f"{self.subject}: {self.previous or '—'} -> {self.value}"

    @property
    def subject(self) -> str:
        return f"topic “{self.topic}”" if self.topic else "email consent"


def email_hash(email: str) -> str:
    """The SHA-256 of an address, normalised (trimmed, lower-cased)."""
    return hashlib.sha256(email.strip().lower().encode()).hexdigest()


class SuppressedAddress(models.Model):
    """An email address no marketing email may go to, whoever holds it now.

    Kept by address, not by contact, and only as a hash: it outlives the contact's
    deletion, erasure and merges, and a later import or identify of the same address
    does not make it mailable again. Checked at send time on every path.
    """

    class Reason(models.TextChoices):
        # Weakest first: a stronger reason replaces a weaker one, never the reverse.
        UNSUBSCRIBED = "unsubscribed", "Unsubscribed"
        MANUAL = "manual", "Added by hand"
        BOUNCED = "bounced", "Hard bounce"
        COMPLAINED = "complained", "Spam complaint"

    email_hash = models.CharField(max_length=64, unique=True, editable=False)
    # A hint for people reading the list ("a…@example.com"), never the address.
    hint = models.CharField(max_length=100, blank=True, editable=False)
    reason = models.CharField(max_length=12, choices=Reason.choices)
    detail = models.CharField(
        max_length=300, blank=True, help_text="Where it came from: the ESP's answer."
    )
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()

    class Meta:
        verbose_name = "suppressed address"
        verbose_name_plural = "suppressed addresses"
        ordering = ["-updated_at"]

    def __str__(self) -> str:
        return f"{self.hint or self.email_hash[:12]} ({self.get_reason_display()})"


SUPPRESSION_RANK = {
    reason: rank for rank, reason in enumerate(SuppressedAddress.Reason.values)
}
# The address list's reason for each opting-out consent state.
SUPPRESSION_FOR_CONSENT = {
    ConsentStatus.UNSUBSCRIBED: SuppressedAddress.Reason.UNSUBSCRIBED,
    ConsentStatus.BOUNCED: SuppressedAddress.Reason.BOUNCED,
    ConsentStatus.COMPLAINED: SuppressedAddress.Reason.COMPLAINED,
}
