"""Demo data for events: the demo shop's sources and a few contacts with history."""

import datetime as dt
import uuid

from apps.contacts.models import Contact
from apps.core import clock

from .ingestion import events_ingest
from .models import Source
from .schemas import Identify, Page, Track

DEMO_SHOP_KEY = "pk_demo_shop"
DEMO_SOURCE_NAME = "Demo shop"
# The shop's newsletter box posts to its own source, with double opt-in on: sign-ups
# confirm by email; shoppers identified at checkout (the shop's source) do not.
DEMO_NEWSLETTER_KEY = "pk_demo_newsletter"
DEMO_NEWSLETTER_NAME = "Demo shop newsletter form"
# The demo shop's catalogue (/demo/shop/), also used for the demo history below.
DEMO_PRODUCTS = [
    {
        "product_id": "sku-boots",
        "name": "Trail boots",
        "price": 129.0,
        "category": "shoes",
    },
    {
        "product_id": "sku-jacket",
        "name": "Rain jacket",
        "price": 89.0,
        "category": "outerwear",
    },
    {
        "product_id": "sku-socks",
        "name": "Wool socks",
        "price": 15.0,
        "category": "accessories",
    },
    {
        "product_id": "sku-beanie",
        "name": "Merino beanie",
        "price": 25.0,
        "category": "accessories",
    },
]


# The category the demo's consent page (/demo/consent/) asks for; the demo source is
# gated on it, keeping calls without a consent context (the shop's pages).
DEMO_CONSENT_CATEGORY = "Marketing"


def demo_source() -> Source:
    source, _created = Source.objects.get_or_create(
        name=DEMO_SOURCE_NAME,
        defaults={
            "kind": Source.Kind.BROWSER,
            "public_key": DEMO_SHOP_KEY,
            "consent_category": DEMO_CONSENT_CATEGORY,
        },
    )
    return source


def demo_newsletter_source() -> Source:
    source, _created = Source.objects.get_or_create(
        name=DEMO_NEWSLETTER_NAME,
        defaults={
            "kind": Source.Kind.BROWSER,
            "public_key": DEMO_NEWSLETTER_KEY,
            "double_opt_in": True,
        },
    )
    return source


def demo_history() -> int:
    """Three shoppers with a week of browsing; the events created (0 if done)."""
    source = demo_source()
    if Contact.objects.filter(email="ada@example.com").exists():
        return 0
    now = clock.now()
    shoppers = [
        ("ada@example.com", "Ada", "Lovelace", "Europe/London"),
        ("grace@example.com", "Grace", "Hopper", "America/New_York"),
        ("linus@example.com", "Linus", "Torvalds", "Europe/Helsinki"),
    ]
    products = DEMO_PRODUCTS
    messages = []
    for index, (email, first, last, tz) in enumerate(shoppers):
        anonymous_id = str(uuid.uuid5(uuid.NAMESPACE_URL, email))
        start = now - dt.timedelta(days=7 - index)
        context = {"timezone": tz, "locale": "en-GB"}
        messages.append(
            Page(
                anonymousId=anonymous_id,
                name="Home",
                timestamp=start,
                context=context,
                properties={"url": "http://127.0.0.1:8000/demo/shop/"},
            )
        )
        for offset, product in enumerate(products[: 3 - index]):
            messages.append(
                Track(
                    anonymousId=anonymous_id,
                    event="product_viewed",
                    timestamp=start + dt.timedelta(minutes=2 + offset),
                    properties=product,
                )
            )
        messages.append(
            Identify(
                anonymousId=anonymous_id,
                timestamp=start + dt.timedelta(minutes=10),
                traits={
                    "email": email,
                    "firstName": first,
                    "lastName": last,
                    "plan": "free",
                },
            )
        )
        messages.append(
            Track(
                anonymousId=anonymous_id,
                event="add_to_cart",
                timestamp=start + dt.timedelta(minutes=11),
                properties={**products[0], "cart_id": f"cart-{index}", "quantity": 1},
            )
        )
    result = events_ingest(source=source, messages=messages)
    return result.accepted
