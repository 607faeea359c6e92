"""Broadcast campaigns: one email to a segment's people, at a time, throttled.

A campaign's audience is fixed when it starts: one CampaignRecipient row per person
(unique per campaign), in a group (the A/B test, the rest, or the holdout) with the
time it is due in their own time zone. The dispatcher turns due recipients into
Messages, which go out on the same claimed path as every workflow email
(apps/campaigns/delivery.py). PostgreSQL holds all of it: the tick picks a sending
campaign up again wherever its workers stopped.
"""

from django.core.validators import MaxValueValidator
from django.db import models

from apps.contacts.models import Contact
from apps.segments.models import Segment

from .email import EmailTemplate, Topic

# The longest window, decision time or cap period a campaign may name (90 days):
# longer ones mean nothing for an email and overflow date arithmetic.
MAX_HOURS = 90 * 24


class Campaign(models.Model):
    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        SCHEDULED = "scheduled", "Scheduled"
        SENDING = "sending", "Sending"
        PAUSED = "paused", "Paused"
        CANCELLED = "cancelled", "Cancelled"
        SENT = "sent", "Sent"

    class When(models.TextChoices):
        NOW = "now", "As soon as it is confirmed"
        AT = "at", "At a time"
        LOCAL = "local", "At a local time in each contact's time zone"

    class Metric(models.TextChoices):
        OPENS = "opens", "Opens"
        CLICKS = "clicks", "Clicks"
        CONVERSIONS = "conversions", "Conversions (an event within a window)"

    class NoWinner(models.TextChoices):
        LEADER = "leader", "Send the leader anyway"
        DEFAULT = "default", "Send the first variant"

    name = models.CharField(max_length=150, unique=True)
    status = models.CharField(
        max_length=10, choices=Status.choices, default=Status.DRAFT, db_index=True
    )
    topic = models.ForeignKey(
        Topic,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="campaigns",
        help_text="What it is about: only the topic's subscribers get it, and its "
        "one-click unsubscribe leaves the topic.",
    )
    segments = models.ManyToManyField(
        Segment,
        related_name="campaigns",
        help_text="Who gets it: the people in any of these segments.",
    )
    exclude_segments = models.ManyToManyField(
        Segment,
        blank=True,
        related_name="excluded_from_campaigns",
        help_text="Minus the people in any of these.",
    )
    from_name = models.CharField(
        max_length=100, blank=True, help_text="Empty = the template's."
    )
    from_email = models.EmailField(blank=True, help_text="Empty = the template's.")
    reply_to = models.EmailField(blank=True, help_text="Empty = the template's.")

    send_when = models.CharField(
        "when", max_length=5, choices=When.choices, default=When.NOW
    )
    send_at = models.DateTimeField(
        null=True, blank=True, help_text="For 'at a time': when it goes (UTC)."
    )
    local_date = models.DateField(null=True, blank=True)
    local_time = models.TimeField(
        null=True,
        blank=True,
        help_text="For 'at a local time': each contact gets it at this time on the "
        "local date, in their own time zone.",
    )
    default_timezone = models.CharField(
        max_length=64,
        default="UTC",
        help_text="IANA name used for contacts with no (or an unknown) time zone.",
    )
    window_start = models.TimeField(
        null=True,
        blank=True,
        help_text="Optional send window, in each contact's local time: nothing goes "
        "out before this...",
    )
    window_end = models.TimeField(
        null=True, blank=True, help_text="...or after this; it waits for the next day."
    )
    rate_per_minute = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="At most this many emails a minute for this campaign; empty = as "
        "fast as the sending lane allows.",
    )
    frequency_cap_max = models.PositiveSmallIntegerField(
        null=True,
        blank=True,
        default=3,
        help_text="Skip people who already got this many marketing emails "
        "(workflows and campaigns) in the hours below; empty = no cap.",
    )
    frequency_cap_hours = models.PositiveSmallIntegerField(
        default=24, validators=[MaxValueValidator(MAX_HOURS)]
    )
    ignore_frequency_cap = models.BooleanField(
        "must-send (ignores the frequency cap)",
        default=False,
        help_text="For announcements everyone must get (a policy change): sent "
        "whatever the frequency cap says. Consent and topics still apply.",
    )

    # A/B test and holdout.
    test_percent = models.PositiveSmallIntegerField(
        default=0,
        help_text="With two or more variants: the share of the audience that gets "
        "the test; the winner goes to the rest.",
    )
    winning_metric = models.CharField(
        max_length=12, choices=Metric.choices, default=Metric.OPENS
    )
    conversion_event = models.CharField(
        max_length=200, blank=True, help_text="For conversions: the event's name."
    )
    conversion_window_hours = models.PositiveIntegerField(
        default=72, validators=[MaxValueValidator(MAX_HOURS)]
    )
    revenue_property = models.CharField(
        max_length=100,
        default="revenue",
        help_text="The conversion event's property that holds its value.",
    )
    decide_after_hours = models.PositiveIntegerField(
        validators=[MaxValueValidator(MAX_HOURS)],
        default=4,
        help_text="How long after the test sends the winner is chosen.",
    )
    no_winner = models.CharField(
        "if there is no clear winner",
        max_length=8,
        choices=NoWinner.choices,
        default=NoWinner.LEADER,
    )
    holdout_percent = models.PositiveSmallIntegerField(
        default=0,
        help_text="A share of the audience that gets nothing, to measure the lift.",
    )
    winner = models.ForeignKey(
        "CampaignVariant",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    verdict = models.TextField(blank=True)

    # What happened, for the page and for the tick.
    audience_count = models.PositiveIntegerField(null=True, blank=True)
    audience_detail = models.JSONField(default=dict, blank=True)
    scheduled_by = models.CharField(max_length=150, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    test_sent_at = models.DateTimeField(null=True, blank=True)
    decided_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # The earliest time the next throttled batch may go (rate_per_minute).
    next_slot_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        permissions = [
            ("send_campaign", "Can schedule, pause, resume and cancel campaigns"),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def is_ab_test(self) -> bool:
        return self.test_percent > 0 and self.variants.count() > 1


class CampaignVariant(models.Model):
    """One version of the email; a campaign without an A/B test has one."""

    campaign = models.ForeignKey(
        Campaign, on_delete=models.CASCADE, related_name="variants"
    )
    label = models.CharField(max_length=20, default="A")
    template = models.ForeignKey(
        EmailTemplate, on_delete=models.PROTECT, related_name="campaign_variants"
    )

    class Meta:
        ordering = ["label", "pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["campaign", "label"], name="campaign_variant_label_once"
            )
        ]

    def __str__(self) -> str:
        return f"{self.label}: {self.template}"


class CampaignRecipient(models.Model):
    """One person in a started campaign's audience: the snapshot."""

    class Group(models.TextChoices):
        TEST = "test", "A/B test"
        REST = "rest", "Rest (the winner, or the only variant)"
        HOLDOUT = "holdout", "Holdout (gets nothing)"

    campaign = models.ForeignKey(
        Campaign, on_delete=models.CASCADE, related_name="recipients"
    )
    contact = models.ForeignKey(
        Contact, on_delete=models.CASCADE, related_name="campaign_receipts"
    )
    group = models.CharField(max_length=8, choices=Group.choices, default=Group.REST)
    # Empty for the rest of an A/B test until the winner is chosen.
    # RESTRICT: a variant someone got is kept, but deleting the whole campaign
    # (which deletes both) is allowed.
    variant = models.ForeignKey(
        CampaignVariant, on_delete=models.RESTRICT, null=True, blank=True
    )
    # Its place in the campaign's shuffled order (groups are cut from it).
    rank = models.PositiveIntegerField(default=0)
    due_at = models.DateTimeField()
    message_id = models.BigIntegerField(null=True, blank=True)
    # Why it was not given a message (the frequency cap, say).
    skipped = models.CharField(max_length=200, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["campaign", "contact"], name="campaign_recipient_once"
            )
        ]
        indexes = [
            # The dispatcher's scan: who is due and has no message yet.
            models.Index(
                fields=["campaign", "due_at"],
                name="campaign_recipient_due_idx",
                condition=models.Q(message_id__isnull=True, skipped=""),
            )
        ]

    def __str__(self) -> str:
        return f"{self.contact_id} in {self.campaign_id} ({self.group})"


class SendingLane(models.Model):
    """A shared limit for everything sent through one backend or domain: every
    dispatcher reserves its slots here, in one conditional UPDATE, so the limit
    holds across all workers."""

    name = models.CharField(max_length=100, unique=True)
    per_minute = models.PositiveIntegerField(
        help_text="At most this many emails a minute through this lane."
    )
    next_slot_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.name} ({self.per_minute}/min)"
