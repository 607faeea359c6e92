"""Demo data for email: a cart reminder template and one sent email to read in
admin, a newsletter topic, a sent newsletter campaign with its report and a draft."""

import datetime as dt

from anymail.signals import AnymailTrackingEvent

from apps.contacts.models import Contact
from apps.core import clock
from apps.events.services import event_record
from apps.segments.models import Segment
from apps.segments.services import segment_add_contacts

from .dispatch import campaign_finish_if_done
from .models import (
    Campaign,
    CampaignRecipient,
    CampaignVariant,
    EmailLayout,
    EmailTemplate,
    Message,
    Topic,
)
from .optin import confirmation_template
from .services import message_create
from .tracking import on_tracking

CART_REMINDER_HTML = """<p>Hi {{ contact.first_name | default: "there" }},</p>
<p>You left something in your cart{% if event.properties.name %}:
<strong>{{ event.properties.name }}</strong>
({{ event.properties.price | money }}){% endif %}.</p>
{% if recent_events.product_viewed %}
<p>You also looked at:</p>
<ul>
{% for item in recent_events.product_viewed limit: 3 %}
  <li>{{ item.name }} — {{ item.price | money }}</li>
{% endfor %}
</ul>
{% endif %}
<p><a class="button" href="/demo/shop/cart/">Back to your cart</a></p>
"""


WELCOME_HTML = """<h1>Welcome to Trailhead Outfitters{% if contact.first_name %},
{{ contact.first_name }}{% endif %}!</h1>
<p>Thanks for confirming. Once a month we write about new gear and the trails we
tested it on; nothing more.</p>
<p><a href="http://127.0.0.1:8000/demo/shop/">See what is new</a></p>"""


def demo_templates() -> EmailTemplate:
    EmailTemplate.objects.get_or_create(
        name="Welcome",
        defaults={
            "subject": "Welcome to Trailhead Outfitters",
            "html_body": WELCOME_HTML,
            "tags": ["welcome", "demo"],
        },
    )
    confirmation_template()
    template, _created = EmailTemplate.objects.get_or_create(
        name="Cart reminder",
        defaults={
            "subject": "{{ contact.first_name | default: 'Hi' }}, your cart is waiting",
            "preheader": "Your items are still there, but not for long.",
            "html_body": CART_REMINDER_HTML,
            "tags": ["cart", "demo"],
        },
    )
    return template


def demo_messages() -> int:
    """One reminder to the first demo shopper, so the mail viewer has something."""
    template = demo_templates()
    contact = Contact.objects.filter(email="ada@example.com").first()
    if contact is None or Message.objects.filter(contact=contact).exists():
        return 0
    message_create(
        contact=contact,
        template=template,
        render_context={
            "event": {
                "name": "add_to_cart",
                "properties": {
                    "name": "Trail boots",
                    "price": 129.0,
                    "cart_id": "cart-0",
                },
            }
        },
    )
    return 1


# -- campaigns ----------------------------------------------------------------------

NEWSLETTER_HTML = """<p>Hi {{ contact.first_name | default: "there" }},</p>
<p>Here is what is new in the shop this month.</p>
<ul>
{% for pick in picks %}
  <li><strong>{{ pick.name }}</strong> — {{ pick.price | money }}</li>
{% endfor %}
</ul>
<p><a class="button" href="/demo/shop/">See them all</a></p>
"""
PICKS = [
    {"name": "Trail boots", "price": 129},
    {"name": "Rain jacket", "price": 89},
    {"name": "Wool socks", "price": 15},
]
READER_ZONES = ["Europe/London", "America/New_York", "Asia/Tokyo", "Europe/Paris", ""]
# How many demo readers, and how the sent newsletter did with them.
READERS = 60


def demo_campaigns() -> int:
    """A newsletter topic and segment, a sent A/B-tested newsletter with its report
    (sent through the real path, a week ago by the clock), and a draft one. How many
    campaigns were created (0 if done)."""
    if Campaign.objects.filter(name__endswith="(demo)").exists():
        return 0
    topic, _created = Topic.objects.get_or_create(
        slug="newsletter",
        defaults={
            "name": "Newsletter",
            "default": Topic.Default.OPT_OUT,
            "description": "What is new in the shop, once a month.",
        },
    )
    readers = _demo_readers()
    layout = EmailLayout.objects.filter(is_default=True).first()
    a, b = (
        EmailTemplate.objects.get_or_create(
            name=name,
            defaults={
                "subject": subject,
                "html_body": NEWSLETTER_HTML,
                "layout": layout,
                "tags": ["newsletter", "demo"],
            },
        )[0]
        for name, subject in (
            ("November newsletter A (demo)", "New in November: our picks for you"),
            (
                "November newsletter B (demo)",
                "{{ contact.first_name | default: 'Hi' }}, 3 picks for colder days",
            ),
        )
    )
    sent = _campaign(
        "November newsletter (demo)",
        topic,
        readers,
        [a, b],
        test_percent=40,
        holdout_percent=10,
        decide_after_hours=4,
        conversion_event="order_completed",
    )
    _send_in_the_past(sent)
    _campaign("December newsletter (demo)", topic, readers, [a])
    return 2


def _demo_readers() -> Segment:
    segment, _created = Segment.objects.get_or_create(
        name="Newsletter readers (demo)",
        defaults={
            "kind": Segment.Kind.STATIC,
            "description": "The demo shoppers and some readers of the newsletter.",
        },
    )
    people = list(Contact.objects.filter(email__endswith="@example.com"))
    for n in range(READERS - len(people)):
        people.append(
            Contact.objects.get_or_create(
                email=f"reader{n + 1}@example.com",
                defaults={
                    "first_name": f"Reader {n + 1}",
                    "timezone": READER_ZONES[n % len(READER_ZONES)],
                    "attributes": {"source": "newsletter signup"},
                },
            )[0]
        )
    segment_add_contacts(segment=segment, contact_ids=[p.pk for p in people])
    return segment


def _campaign(name, topic, segment, templates, **fields) -> Campaign:
    campaign = Campaign.objects.create(name=name, topic=topic, **fields)
    campaign.segments.set([segment])
    for label, template in zip("AB", templates, strict=False):
        CampaignVariant.objects.create(
            campaign=campaign, label=label, template=template
        )
    return campaign


def _send_in_the_past(campaign: Campaign) -> None:
    """Send it through the real path with the clock a week back, report opens,
    clicks and orders through the ESP-tracking and event paths, then let the A/B
    decision send the winner to the rest."""
    from .broadcasts import campaign_schedule, campaign_start
    from .delivery import messages_send_batch
    from .dispatch import campaign_dispatch
    from .experiments import campaign_decide_if_due

    week_ago = clock.now() - dt.timedelta(days=7)

    def send_due() -> None:
        campaign_dispatch(campaign_id=campaign.pk)
        due = Message.objects.filter(campaign_id=campaign.pk, status="queued")
        messages_send_batch(message_ids=list(due.values_list("pk", flat=True)))

    with clock.frozen(week_ago):
        campaign_schedule(campaign=campaign, by="demo")
        campaign_start(campaign_id=campaign.pk)
        send_due()
    with clock.frozen(week_ago + dt.timedelta(hours=1)):
        _engagement(campaign, {"A": (0.5, 0.1), "B": (0.8, 0.3)})
        campaign.refresh_from_db()
        campaign_decide_if_due(campaign=campaign, now=clock.now())  # test is out
    with clock.frozen(week_ago + dt.timedelta(hours=5)):
        campaign.refresh_from_db()
        campaign_decide_if_due(campaign=campaign, now=clock.now())
        send_due()
    with clock.frozen(week_ago + dt.timedelta(hours=8)):
        _engagement(campaign, {"B": (0.6, 0.2)}, group="rest")
        _orders(campaign)
        campaign.refresh_from_db()
        campaign_finish_if_done(campaign=campaign, now=clock.now())


def _engagement(campaign, shares: dict, group: str = "test") -> None:
    """Opens and clicks for a share of each variant, as the ESP would report them."""
    for label, (opened, clicked) in shares.items():
        messages = list(
            Message.objects.filter(
                campaign_id=campaign.pk,
                status=Message.Status.SENT,
                pk__in=CampaignRecipient.objects.filter(
                    campaign=campaign, group=group, variant__label=label
                ).values("message_id"),
            ).order_by("pk")
        )
        for index, message in enumerate(messages):
            share = (index + 0.5) / len(messages)
            for event_type, wanted in (
                ("delivered", 1.0),
                ("opened", opened),
                ("clicked", clicked),
            ):
                if share < wanted:
                    on_tracking(
                        None,
                        AnymailTrackingEvent(
                            event_type=event_type,
                            timestamp=clock.now(),
                            event_id=f"demo-{message.pk}-{event_type}",
                            message_id=message.esp_message_id,
                            recipient=message.to_email,
                            metadata={"nudge_message_id": str(message.pk)},
                        ),
                        esp_name="demo",
                    )


def _orders(campaign) -> None:
    """Every fifth person who got it orders, and one in ten of the holdout."""
    rows = CampaignRecipient.objects.filter(campaign=campaign).order_by("rank")
    for row in rows.values("contact_id", "group", "rank"):
        every = 10 if row["group"] == CampaignRecipient.Group.HOLDOUT else 5
        if row["rank"] % every == 0:
            event_record(
                contact_id=row["contact_id"],
                name="order_completed",
                properties={"revenue": 64.0, "campaign": campaign.name},
                dedupe_key=f"demo-order-{campaign.pk}-{row['contact_id']}",
                process_now=False,
            )
