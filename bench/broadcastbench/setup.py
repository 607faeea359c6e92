"""Set-up: the app's environment, Django in this process, and the data: N contacts
with a first name and a few picks each, a static segment holding them all, an
opt-out topic, a template (personalised, with a loop) on the default layout, and a
draft campaign to the segment."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from benchcommon.databases import app_env as common_app_env
from benchcommon.databases import django_migrate
from benchcommon.paths import OUT_DIR, ROOT

from broadcastbench.config import Config

RECORDS = OUT_DIR / "broadcast-records.tsv"
BASELINE_RECORDS = OUT_DIR / "broadcast-baseline-records.tsv"

SUBJECT = "{{ contact.first_name | default: 'Hello' }}, this week's picks for you"
PREHEADER = "{{ contact.picks | size }} things we think you'll like"
# Personalisation and a loop, as a weekly newsletter has them.
HTML_BODY = """<h1>Hi {{ contact.first_name }},</h1>
<p>Here is what's new in {{ contact.city }} this week.</p>
<table class="picks">
{% for pick in contact.picks %}
  <tr><td class="name"><a href="https://shop.example/p/{{ pick.sku }}">{{ pick.name }}</a></td>
      <td class="price">{{ pick.price | money: 'EUR' }}</td></tr>
{% endfor %}
</table>
<p><a class="button" href="https://shop.example/new">See everything new</a></p>
"""

CITIES = ("Paris", "Lyon", "Berlin", "Madrid", "Rome", "Lisbon", "Vienna", "Prague")


def app_env(cfg: Config) -> dict[str, str]:
    """The environment of every app process (workers, scheduler) and this one."""
    level = os.environ.get("BENCH_SERVER_LOG_LEVEL", "WARNING")
    env = common_app_env(cfg, level)
    env.update(
        RQ_LOG_LEVEL=level,
        EMAIL_BACKEND="bench._backend.RecordingBackend",
        BENCH_RECORD_PATH=str(RECORDS),
        PYTHONPATH=os.pathsep.join(
            [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
        ),
    )
    return env


def setup_django(cfg: Config) -> None:
    os.environ.update(app_env(cfg))
    os.environ["LOG_LEVEL"] = os.environ.get("BENCH_LOG_LEVEL", "WARNING")
    django_migrate()


@dataclass
class Data:
    campaign_id: int
    template_id: int
    topic_id: int


def reset_records(*paths: Path) -> None:
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")


def create_data(cfg: Config) -> Data:
    from django.db import connection

    from apps.campaigns.models import (
        Campaign,
        CampaignVariant,
        EmailLayout,
        EmailTemplate,
        Topic,
    )
    from apps.segments.models import Segment

    topic = Topic.objects.create(
        name="Newsletter", slug="newsletter", default=Topic.Default.OPT_OUT
    )
    template = EmailTemplate.objects.create(
        name="Weekly picks",
        subject=SUBJECT,
        preheader=PREHEADER,
        html_body=HTML_BODY,
        layout=EmailLayout.objects.get(is_default=True),
        from_name="Bench Shop",
        from_email="news@bench.example",
    )
    segment = Segment.objects.create(name="Everyone", kind=Segment.Kind.STATIC)
    cities = "ARRAY[" + ", ".join(f"'{c}'" for c in CITIES) + "]"
    with connection.cursor() as cursor:
        # One statement each: the set-up is not what is measured.
        cursor.execute(
            "INSERT INTO contacts_contact (email, external_id, first_name, last_name, "
            "phone, timezone, locale, attributes, email_consent, score, created_at) "
            "SELECT 'bench-' || i || '@bench.example', 'bench-' || i, "
            "'Person' || i, '', '', 'Europe/Paris', 'en', "
            "jsonb_build_object('city', (" + cities + ")[1 + i %% 8], "
            "'picks', (SELECT jsonb_agg(jsonb_build_object('sku', 'sku-' || "
            "(i * 7 + k) %% 997, 'name', 'Item ' || (i * 7 + k) %% 997, 'price', "
            "((i + k) %% 90) + 9.99)) FROM generate_series(1, 5) k)), "
            "'subscribed', 0, now() FROM generate_series(1, %s) i",
            [cfg.recipients],
        )
        cursor.execute(
            "INSERT INTO segments_segmentmembership (segment_id, contact_id, "
            "entered_at) SELECT %s, id, now() FROM contacts_contact",
            [segment.pk],
        )
        # Autovacuum may be off here (DESIGN.md): plans must not guess.
        cursor.execute("ANALYZE")
    campaign = Campaign.objects.create(name="Weekly picks", topic=topic)
    campaign.segments.set([segment])
    CampaignVariant.objects.create(campaign=campaign, label="A", template=template)
    return Data(campaign_id=campaign.pk, template_id=template.pk, topic_id=topic.pk)
