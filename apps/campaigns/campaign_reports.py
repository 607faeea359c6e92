"""What a campaign did: progress while it sends, and per-variant results against
the holdout afterwards (reads only)."""

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

from django.db.models import Count, Q
from django.db.models.fields.json import KeyTextTransform

from apps.core import clock
from apps.events.models import Event

from .models import Campaign, CampaignRecipient, Message

Group = CampaignRecipient.Group


@dataclass
class Progress:
    audience: int = 0
    holdout: int = 0
    waiting: int = 0  # in the audience, no message made yet
    skipped: int = 0  # left out when the message would be made (the list, the cap)
    queued: int = 0
    sent: int = 0
    failed: int = 0
    suppressed: int = 0
    uncertain: int = 0
    cancelled: int = 0
    per_minute: float = 0.0
    seconds_left: int | None = None

    @property
    def done(self) -> int:
        return self.sent + self.failed + self.suppressed + self.uncertain + self.skipped

    @property
    def to_send(self) -> int:
        return self.audience - self.holdout

    @property
    def percent(self) -> int:
        return round(100 * self.done / self.to_send) if self.to_send else 100

    def as_dict(self) -> dict:
        return {
            **self.__dict__,
            "done": self.done,
            "to_send": self.to_send,
            "percent": self.percent,
        }


def campaign_progress(campaign: Campaign) -> Progress:
    """Counts so far, the send rate over the last five minutes, and time left."""
    progress = Progress()
    recipients = CampaignRecipient.objects.filter(campaign=campaign).aggregate(
        audience=Count("pk"),
        holdout=Count("pk", filter=Q(group=Group.HOLDOUT)),
        waiting=Count(
            "pk",
            filter=Q(message_id__isnull=True, skipped="") & ~Q(group=Group.HOLDOUT),
        ),
        skipped=Count("pk", filter=~Q(skipped="")),
    )
    for key, value in recipients.items():
        setattr(progress, key, value)
    messages = Message.objects.filter(campaign_id=campaign.pk, is_test=False)
    for status, count in messages.values_list("status").annotate(n=Count("pk")):
        if status == Message.Status.SENDING:
            status = "queued"
        setattr(progress, status, getattr(progress, status) + count)
    now = clock.now()
    recent = messages.filter(
        sent_at__gte=now - dt.timedelta(minutes=5), sent_at__lte=now
    ).count()
    started = campaign.started_at
    minutes = min(5.0, (now - started).total_seconds() / 60) if started else 0
    progress.per_minute = round(recent / minutes, 1) if minutes > 0 else 0.0
    left = progress.waiting + progress.queued
    if left and progress.per_minute:
        progress.seconds_left = round(60 * left / progress.per_minute)
    return progress


@dataclass
class VariantResult:
    name: str
    recipients: int = 0
    sent: int = 0
    delivered: int = 0
    opened: int = 0
    clicked: int = 0
    bounced: int = 0
    unsubscribed: int = 0
    complained: int = 0
    conversions: int = 0
    revenue: Decimal = Decimal(0)

    def rate(self, part: int) -> float | None:
        return round(100 * part / self.sent, 1) if self.sent else None

    @property
    def open_rate(self) -> float | None:
        return self.rate(self.opened)

    @property
    def click_rate(self) -> float | None:
        return self.rate(self.clicked)

    @property
    def conversion_rate(self) -> float | None:
        base = self.sent or self.recipients
        return round(100 * self.conversions / base, 2) if base else None


@dataclass
class CampaignReport:
    variants: list[VariantResult] = field(default_factory=list)
    total: VariantResult | None = None
    holdout: VariantResult | None = None

    @property
    def lift_points(self) -> float | None:
        """Conversion rate of those who got it minus the holdout's, in points."""
        if not self.holdout or not self.holdout.recipients or not self.total:
            return None
        if self.total.conversion_rate is None:
            return None
        return round(self.total.conversion_rate - self.holdout.conversion_rate, 2)


def campaign_report(campaign: Campaign, *, group: str | None = None) -> CampaignReport:
    """Per variant (of ``group``, or everyone who got it), all of them, and the
    holdout: what the ESP reported, and conversions within the window."""
    recipients = CampaignRecipient.objects.filter(campaign=campaign)
    if group:
        recipients = recipients.filter(group=group)
    report = CampaignReport()
    conversions = _conversions(campaign, recipients)
    names = {v.pk: v.label for v in campaign.variants.all()}
    by_variant: dict[int | None, VariantResult] = {}
    rows = (
        recipients.exclude(group=Group.HOLDOUT)
        .values("variant_id", "contact_id", "message_id")
        .order_by()
    )
    # By campaign, not by a list of ids: a list of 100,000 ids is past what SQLite
    # takes in one query.
    facts = {
        m["pk"]: m
        for m in Message.objects.filter(campaign_id=campaign.pk, is_test=False).values(
            "pk",
            "status",
            "delivered_at",
            "opened_at",
            "clicked_at",
            "bounced_at",
            "unsubscribed_at",
            "complained_at",
        )
    }
    total = VariantResult("All")
    for row in rows:
        variant = row["variant_id"]
        result = by_variant.setdefault(
            variant, VariantResult(names.get(variant, "Not chosen yet"))
        )
        for target in (result, total):
            _count(target, facts.get(row["message_id"]), conversions, row)
    report.variants = [
        by_variant[k] for k in sorted(by_variant, key=lambda k: names.get(k, "~"))
    ]
    report.total = total
    held = recipients.filter(group=Group.HOLDOUT).values("contact_id")
    if campaign.holdout_percent:
        holdout = VariantResult("Holdout")
        for row in held:
            holdout.recipients += 1
            found = conversions.get(row["contact_id"])
            if found:
                holdout.conversions += 1
                holdout.revenue += found
        report.holdout = holdout
    return report


def _count(result: VariantResult, message, conversions, row) -> None:
    result.recipients += 1
    if message and message["status"] == Message.Status.SENT:
        result.sent += 1
        for stamp in (
            "delivered",
            "opened",
            "clicked",
            "bounced",
            "unsubscribed",
            "complained",
        ):
            if message[f"{stamp}_at"]:
                setattr(result, stamp, getattr(result, stamp) + 1)
    found = conversions.get(row["contact_id"])
    if found is not None:
        result.conversions += 1
        result.revenue += found


def _conversions(campaign: Campaign, recipients) -> dict[int, Decimal]:
    """{contact id: revenue} of those who did the conversion event within the
    window after they got the email (the holdout: after they were due)."""
    if not campaign.conversion_event or not campaign.started_at:
        return {}
    window = dt.timedelta(hours=campaign.conversion_window_hours)
    starts = {}
    sent_at = dict(
        Message.objects.filter(
            campaign_id=campaign.pk, is_test=False, status=Message.Status.SENT
        ).values_list("contact_id", "sent_at")
    )
    for contact_id, group, due in recipients.values_list(
        "contact_id", "group", "due_at"
    ):
        start = due if group == Group.HOLDOUT else sent_at.get(contact_id)
        if start:
            starts[contact_id] = start
    if not starts:
        return {}
    first, last = min(starts.values()), max(starts.values()) + window
    found: dict[int, Decimal] = {}
    events = Event.objects.filter(
        name=campaign.conversion_event,
        contact_id__in=recipients.values("contact_id"),
        timestamp__gte=first,
        timestamp__lt=last,
    ).values_list(
        "contact_id",
        "timestamp",
        KeyTextTransform(campaign.revenue_property, "properties"),
    )
    for contact_id, at, value in events:
        start = starts.get(contact_id)
        if start is None or not (start <= at < start + window):
            continue
        found[contact_id] = found.get(contact_id, Decimal(0)) + _money(value)
    return found


def _money(value) -> Decimal:
    try:
        amount = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return Decimal(0)
    return amount if amount.is_finite() else Decimal(0)
