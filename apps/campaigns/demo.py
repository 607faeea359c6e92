"""Demo data for email: a cart reminder template and one sent email to read in admin."""

from apps.contacts.models import Contact

from .models import EmailTemplate, Message
from .services import message_create

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


def demo_templates() -> EmailTemplate:
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
