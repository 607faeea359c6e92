"""The demo data's campaigns: a sent newsletter with its report, and a draft."""

import pytest
from django.core.management import call_command

from apps.campaigns.campaign_reports import campaign_report
from apps.campaigns.models import Campaign

pytestmark = pytest.mark.django_db


def test_the_demo_has_a_sent_newsletter_with_its_report_and_a_draft(outbox):
    call_command("nudge_demo", verbosity=0)

    sent = Campaign.objects.get(name="November newsletter (demo)")
    assert sent.status == Campaign.Status.SENT
    assert sent.winner.label == "B"
    assert sent.verdict
    report = campaign_report(sent)
    assert report.total.sent == sent.audience_count - report.holdout.recipients
    assert report.total.opened > 0 and report.total.clicked > 0
    assert report.total.conversions > 0 and report.total.revenue > 0
    assert report.holdout.recipients > 0
    assert Campaign.objects.get(name="December newsletter (demo)").status == "draft"

    # and running the demo again adds nothing
    call_command("nudge_demo", verbosity=0)
    assert Campaign.objects.count() == 2
