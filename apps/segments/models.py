from django.db import models

from apps.contacts.models import Contact


class Segment(models.Model):
    """A group of contacts: dynamic (a condition, kept fresh) or a static list."""

    class Kind(models.TextChoices):
        DYNAMIC = "dynamic", "Dynamic (condition)"
        STATIC = "static", "Static list"

    name = models.CharField(max_length=150, unique=True)
    description = models.TextField(blank=True)
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.DYNAMIC)
    condition = models.JSONField(default=dict, blank=True)
    # How often the scheduled full refresh re-checks time-based conditions.
    refresh_minutes = models.PositiveIntegerField(default=15)
    member_count = models.PositiveIntegerField(default=0)
    last_refreshed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def is_dynamic(self) -> bool:
        return self.kind == self.Kind.DYNAMIC


class SegmentMembership(models.Model):
    """A contact's time in a segment. Leaving closes the row; coming back opens a new
    one, so "entered" and "exited" are facts with times."""

    segment = models.ForeignKey(
        Segment, on_delete=models.CASCADE, related_name="memberships"
    )
    contact = models.ForeignKey(
        Contact, on_delete=models.CASCADE, related_name="memberships"
    )
    entered_at = models.DateTimeField()
    exited_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["segment", "contact"],
                condition=models.Q(exited_at__isnull=True),
                name="one_open_membership",
            )
        ]
        indexes = [
            models.Index(
                fields=["contact", "segment"],
                condition=models.Q(exited_at__isnull=True),
                name="membership_open_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.contact} in {self.segment}"


class SegmentRefresh(models.Model):
    """One recomputation of a segment: how long it took and what it changed."""

    class Kind(models.TextChoices):
        FULL = "full"
        INCREMENTAL = "incremental"

    segment = models.ForeignKey(
        Segment, on_delete=models.CASCADE, related_name="refreshes"
    )
    kind = models.CharField(max_length=12, choices=Kind.choices)
    started_at = models.DateTimeField()
    duration_ms = models.PositiveIntegerField()
    entered = models.PositiveIntegerField(default=0)
    exited = models.PositiveIntegerField(default=0)
    members = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-started_at"]

    def __str__(self) -> str:
        return f"{self.segment} {self.kind} refresh at {self.started_at:%Y-%m-%d %H:%M}"


class ScoringRule(models.Model):
    """Lead scoring: an event (with property filters) is worth points, maybe capped."""

    name = models.CharField(max_length=150)
    event_name = models.CharField(max_length=200, db_index=True)
    filters = models.JSONField(
        default=list,
        blank=True,
        help_text='Property filters: [{"property", "op", "value"}]',
    )
    points = models.IntegerField()
    cap_points = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="At most this many points per contact per period.",
    )
    cap_period_days = models.PositiveIntegerField(null=True, blank=True)
    active = models.BooleanField(default=True)

    def __str__(self) -> str:
        return self.name


class ScoreAward(models.Model):
    """The ledger behind contact.score: which rule gave which points for which event."""

    contact = models.ForeignKey(
        Contact, on_delete=models.CASCADE, related_name="score_awards"
    )
    rule = models.ForeignKey(
        ScoringRule, on_delete=models.CASCADE, related_name="awards"
    )
    points = models.IntegerField()
    # Plain id: nothing points at Event rows by foreign key (partitioning).
    event_id = models.BigIntegerField()
    awarded_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["rule", "event_id"], name="award_once_per_event"
            )
        ]
        indexes = [
            models.Index(fields=["contact", "rule", "awarded_at"], name="award_cap_idx")
        ]

    def __str__(self) -> str:
        return f"{self.points:+d} {self.contact} ({self.rule})"
