"""A campaign's A/B test: once the test group has had its email for the decision
time, choose the winner by the campaign's metric (the same two-proportion test as
workflow reports) and send it to the rest."""

import datetime as dt
import logging

from django.db.models import Q

from apps.core import clock
from apps.core.stats import (
    MIN_PER_VARIANT,
    SIGNIFICANCE,
    format_p,
    two_proportion_z_test,
)

from .campaign_reports import VariantResult, campaign_report
from .models import Campaign, CampaignRecipient, Message

logger = logging.getLogger(__name__)

Group = CampaignRecipient.Group


def _successes(campaign: Campaign, result: VariantResult) -> int:
    return {
        Campaign.Metric.OPENS: result.opened,
        Campaign.Metric.CLICKS: result.clicked,
        Campaign.Metric.CONVERSIONS: result.conversions,
    }[campaign.winning_metric]


def test_finished_at(campaign: Campaign, now: dt.datetime) -> dt.datetime | None:
    """When the test group's last email went (None while some are still to go);
    recorded on the campaign the first time it is seen."""
    if campaign.test_sent_at:
        return campaign.test_sent_at
    test = CampaignRecipient.objects.filter(campaign=campaign, group=Group.TEST)
    if test.filter(message_id__isnull=True, skipped="").exists():
        return None
    if Message.objects.filter(
        campaign_id=campaign.pk,
        is_test=False,
        status__in=[Message.Status.QUEUED, Message.Status.SENDING],
        pk__in=test.values("message_id"),
    ).exists():
        return None
    Campaign.objects.filter(pk=campaign.pk, test_sent_at__isnull=True).update(
        test_sent_at=now
    )
    campaign.test_sent_at = now
    return now


def campaign_decide(*, campaign_id: int) -> bool:
    """The decision job: choose the winner if it is time (see campaign_decide_if_due)."""
    campaign = Campaign.objects.filter(pk=campaign_id, status=Campaign.Status.SENDING)
    campaign = campaign.first()
    if campaign is None:
        return False
    return campaign_decide_if_due(campaign=campaign, now=clock.now())


def campaign_decide_if_due(*, campaign: Campaign, now: dt.datetime) -> bool:
    """Choose the winner if the decision time has come; True if it was chosen now."""
    if campaign.winner_id or not campaign.is_ab_test:
        return False
    finished = test_finished_at(campaign, now)
    if finished is None or now < finished + dt.timedelta(
        hours=campaign.decide_after_hours
    ):
        return False
    winner, verdict = choose_winner(campaign)
    chosen = Campaign.objects.filter(pk=campaign.pk, winner__isnull=True).update(
        winner=winner, verdict=verdict, decided_at=now
    )
    if not chosen:
        return False
    CampaignRecipient.objects.filter(
        Q(variant__isnull=True), campaign=campaign, group=Group.REST
    ).update(variant=winner)
    campaign.winner = winner
    logger.info(
        "campaign winner chosen",
        extra={"campaign_id": campaign.pk, "winner": winner.label, "verdict": verdict},
    )
    from .dispatch import enqueue_dispatch

    enqueue_dispatch(campaign.pk, key=f"-winner-{int(now.timestamp() * 1000)}")
    return True


def choose_winner(campaign: Campaign):
    """(variant, verdict): the best by the metric if the test says the difference
    is real; otherwise the campaign's rule for no clear winner."""
    variants = {v.label: v for v in campaign.variants.all()}
    results = [
        r
        for r in campaign_report(campaign, group=Group.TEST).variants
        if r.name in variants
    ]
    metric = campaign.get_winning_metric_display().split(" (")[0].lower()
    ranked = sorted(
        results,
        key=lambda r: (-(_successes(campaign, r) / r.sent if r.sent else 0), r.name),
    )
    if not ranked:
        first = next(iter(variants.values()))
        return first, "Nobody in the test got the email: sending the first variant."
    leader = ranked[0]
    rate = {r.name: _successes(campaign, r) / r.sent if r.sent else 0 for r in ranked}
    if len(ranked) > 1:
        second = ranked[1]
        _, p = two_proportion_z_test(
            _successes(campaign, second),
            second.sent,
            _successes(campaign, leader),
            leader.sent,
        )
        enough = min(leader.sent, second.sent) >= MIN_PER_VARIANT
        if enough and p < SIGNIFICANCE and rate[leader.name] > rate[second.name]:
            return variants[leader.name], (
                f"{leader.name} won on {metric}: {rate[leader.name]:.1%} against "
                f"{rate[second.name]:.1%} for {second.name} ({format_p(p)}), "
                "likely a real difference. Sent to the rest."
            )
        why = (
            f"too few in the test to tell (fewer than {MIN_PER_VARIANT} per variant)"
            if not enough
            else f"the difference could be chance ({format_p(p)})"
        )
    else:
        why = "only one variant was sent"
    if campaign.no_winner == Campaign.NoWinner.DEFAULT:
        first = next(iter(variants.values()))
        return first, (
            f"No clear winner on {metric}: {why}. Sent the first variant, "
            f"{first.label}, as the campaign says."
        )
    return variants[leader.name], (
        f"No clear winner on {metric}: {why}. Sent the leader, {leader.name} "
        f"({rate[leader.name]:.1%})."
    )
