import datetime as dt

import pytest

from apps.campaigns.models import Campaign, CampaignVariant, EmailTemplate
from apps.contacts.models import Contact
from apps.core import clock
from apps.segments.models import Segment
from apps.segments.services import segment_add_contacts

# A Monday, 06:00 UTC: 15:00 in Tokyo, 07:00 in Paris, 01:00 in New York.
START = dt.datetime(2026, 12, 7, 6, 0, tzinfo=dt.UTC)


def sent_to(outbox) -> list[str]:
    """Every address the outbox's emails went to, sorted."""
    return sorted(address for email in outbox for address in email.to)


@pytest.fixture
def frozen_clock():
    with clock.frozen(START):
        yield START


@pytest.fixture
def newsletter_template(layout):
    return EmailTemplate.objects.create(
        name="December newsletter",
        subject="{{ contact.first_name | default: 'Hello' }}, what's new in December",
        html_body="<p>Hi {{ contact.first_name }}</p><ul>{% for item in "
        "contact.attributes.picks %}<li>{{ item }}</li>{% endfor %}</ul>",
        layout=layout,
    )


@pytest.fixture
def people(db):
    """Contacts by name, and a static segment holding them all."""

    def make(*names: str, segment_name: str = "Everyone", **fields):
        contacts = [
            Contact.objects.create(
                email=f"{name.lower()}@example.com", first_name=name, **fields
            )
            for name in names
        ]
        segment, _ = Segment.objects.get_or_create(
            name=segment_name, defaults={"kind": Segment.Kind.STATIC}
        )
        segment_add_contacts(segment=segment, contact_ids=[c.pk for c in contacts])
        return contacts, segment

    return make


@pytest.fixture
def make_campaign(newsletter_template):
    def make(*, segments, templates=None, **fields) -> Campaign:
        campaign = Campaign.objects.create(
            name=fields.pop("name", "December newsletter"), **fields
        )
        campaign.segments.set(segments)
        for label, template in zip(
            "ABCDE", templates or [newsletter_template], strict=False
        ):
            CampaignVariant.objects.create(
                campaign=campaign, label=label, template=template
            )
        return campaign

    return make
