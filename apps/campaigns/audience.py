"""Who a campaign reaches: its segments, minus exclusions, within its topic, with
the reasons people are left out (reads only)."""

import datetime as dt
import zoneinfo
from dataclasses import dataclass, field

from django.db.models import Count, Exists, OuterRef, Q, QuerySet

from apps.contacts.models import Contact, SuppressedAddress, email_hash
from apps.segments.models import SegmentMembership

from .models import Campaign, Message
from .topics import topic_subscribers

# Message statuses that count as "sent" for the frequency cap: what went or may go.
CAP_COUNTED = [Message.Status.QUEUED, Message.Status.SENDING, Message.Status.SENT]
# Hashing addresses for the suppression list, this many at a time.
HASH_CHUNK = 5_000


def in_segments(segment_ids) -> Exists:
    return Exists(
        SegmentMembership.objects.filter(
            contact=OuterRef("pk"), segment_id__in=segment_ids, exited_at__isnull=True
        )
    )


def audience_base(campaign: Campaign) -> QuerySet[Contact]:
    """Everyone in any of its segments, minus anyone in an exclusion segment."""
    segment_ids = list(campaign.segments.values_list("pk", flat=True))
    excluded = list(campaign.exclude_segments.values_list("pk", flat=True))
    people = Contact.objects.filter(in_segments(segment_ids))
    if excluded:
        people = people.exclude(in_segments(excluded))
    return people


def audience(campaign: Campaign) -> QuerySet[Contact]:
    """Who the snapshot takes: with an address, consenting to marketing email and
    subscribed to the topic. The address list and the frequency cap are applied
    later (the list by hash, at send time; the cap when each message is made)."""
    from .services import SUPPRESSED_CONSENT

    people = (
        audience_base(campaign)
        .exclude(Q(email__isnull=True) | Q(email=""))
        .exclude(email_consent__in=SUPPRESSED_CONSENT)
    )
    if campaign.topic_id:
        people = people.filter(pk__in=topic_subscribers(campaign.topic).values("pk"))
    return people


@dataclass
class AudienceReport:
    """The pre-send figures: who is in, and each reason people are out."""

    in_segments: int = 0
    excluded_by_segment: list[tuple[str, int]] = field(default_factory=list)
    no_address: int = 0
    no_consent: int = 0
    not_in_topic: int = 0
    on_suppression_list: int = 0
    over_frequency_cap: int = 0
    recipients: int = 0
    holdout: int = 0
    sample: list[Contact] = field(default_factory=list)

    @property
    def will_receive(self) -> int:
        return self.recipients - self.holdout


def audience_report(
    campaign: Campaign, *, now: dt.datetime, sample_size: int = 10
) -> AudienceReport:
    from .services import SUPPRESSED_CONSENT

    report = AudienceReport()
    segment_ids = list(campaign.segments.values_list("pk", flat=True))
    everyone = Contact.objects.filter(in_segments(segment_ids))
    report.in_segments = everyone.count()
    for segment in campaign.exclude_segments.all():
        report.excluded_by_segment.append(
            (segment.name, everyone.filter(in_segments([segment.pk])).count())
        )
    base = audience_base(campaign)
    report.no_address = base.filter(Q(email__isnull=True) | Q(email="")).count()
    with_address = base.exclude(Q(email__isnull=True) | Q(email=""))
    report.no_consent = with_address.filter(
        email_consent__in=SUPPRESSED_CONSENT
    ).count()
    consenting = with_address.exclude(email_consent__in=SUPPRESSED_CONSENT)
    if campaign.topic_id:
        in_topic = consenting.filter(
            pk__in=topic_subscribers(campaign.topic).values("pk")
        )
        report.not_in_topic = consenting.count() - in_topic.count()
        consenting = in_topic
    ids_emails = list(consenting.values_list("pk", "email"))
    listed = suppressed_ids(ids_emails)
    report.on_suppression_list = len(listed)
    mailable = [pk for pk, _ in ids_emails if pk not in listed]
    capped = over_cap(campaign, mailable, now=now)
    report.over_frequency_cap = len(capped)
    report.recipients = len(mailable) - len(capped)
    report.holdout = round(report.recipients * campaign.holdout_percent / 100)
    # The same sample on every look (the oldest contacts first), in that order.
    chosen = sorted(pk for pk in mailable if pk not in capped)[:sample_size]
    report.sample = list(Contact.objects.filter(pk__in=chosen).order_by("pk"))
    return report


def suppressed_ids(ids_emails: list[tuple[int, str]]) -> set[int]:
    """The contacts whose address is on the suppression list (kept as hashes)."""
    listed: set[int] = set()
    for start in range(0, len(ids_emails), HASH_CHUNK):
        chunk = ids_emails[start : start + HASH_CHUNK]
        by_hash: dict[str, list[int]] = {}
        for pk, email in chunk:
            by_hash.setdefault(email_hash(email), []).append(pk)
        for key in SuppressedAddress.objects.filter(
            email_hash__in=list(by_hash)
        ).values_list("email_hash", flat=True):
            listed.update(by_hash[key])
    return listed


def over_cap(campaign: Campaign, contact_ids, *, now: dt.datetime) -> set[int]:
    """Who already got as many marketing emails as the campaign's cap allows."""
    if campaign.ignore_frequency_cap or not campaign.frequency_cap_max:
        return set()
    since = now - dt.timedelta(hours=campaign.frequency_cap_hours)
    capped: set[int] = set()
    ids = list(contact_ids)
    for start in range(0, len(ids), HASH_CHUNK):
        rows = (
            Message.objects.filter(
                contact_id__in=ids[start : start + HASH_CHUNK],
                kind=Message.Kind.MARKETING,
                is_test=False,
                created_at__gte=since,
                status__in=CAP_COUNTED,
            )
            .exclude(campaign_id=campaign.pk)
            .values("contact_id")
            .annotate(sent=Count("pk"))
            .filter(sent__gte=campaign.frequency_cap_max)
            .values_list("contact_id", flat=True)
        )
        capped.update(rows)
    return capped


def zone(name: str, default: str) -> zoneinfo.ZoneInfo:
    """The contact's time zone, else the campaign's default, else UTC (a contact's
    timezone is whatever a site sent: it may name no zone at all)."""
    for candidate in (name, default):
        if candidate:
            try:
                return zoneinfo.ZoneInfo(candidate)
            except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
                continue
    return zoneinfo.ZoneInfo("UTC")
