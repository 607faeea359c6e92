"""Marketer templates: personalised, and unable to do harm."""

import datetime as dt

import pytest

from apps.campaigns.context import build_context
from apps.campaigns.rendering import RenderError, render_email, render_string
from apps.contacts.models import Contact
from apps.events.models import Event

pytestmark = pytest.mark.django_db


def _render(html, contact, *, subject="s", extra=None, layout=None, preheader=""):
    context = build_context(contact=contact, message_id=1, extra=extra)
    return render_email(
        subject=subject,
        preheader=preheader,
        html_body=html,
        text_body="",
        layout_html=layout,
        context=context,
    )


def test_personalisation_uses_contact_fields_traits_and_the_trigger_event(contact):
    contact.attributes = {"plan": "pro"}
    rendered = _render(
        "<p>{{ contact.first_name }} on {{ contact.plan }} / "
        "{{ contact.attributes.plan }}"
        " cart {{ event.properties.cart_id }}</p>",
        contact,
        subject="Hi {{ contact.first_name }}",
        extra={"event": {"name": "add_to_cart", "properties": {"cart_id": "c-9"}}},
    )
    assert rendered.subject == "Hi Ada"
    assert "Ada on pro / pro cart c-9" in rendered.html


def test_loops_over_recent_events_and_conditionals(contact, browser_source):
    for i, name in enumerate(["Boots", "Jacket", "Socks", "Hat"]):
        Event.objects.create(
            contact=contact,
            source=browser_source,
            name="product_viewed",
            properties={"name": name, "price": 10 + i},
            timestamp=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=10 - i),
            received_at=dt.datetime.now(dt.UTC),
            message_id=f"m{i}",
        )
    html = (
        "{% for item in recent_events.product_viewed limit: 3 %}"
        "<li>{{ item.name }} {{ item.price | money }}</li>{% endfor %}"
        "{% if contact.score > 10 %}VIP{% else %}regular{% endif %}"
    )
    rendered = _render(html, contact)
    assert (
        "<li>Hat $13.00</li><li>Socks $12.00</li><li>Jacket $11.00</li>"
        in rendered.html
    )
    assert "Boots" not in rendered.html
    assert "regular" in rendered.html


def test_traits_are_escaped_in_html_but_not_in_the_subject(contact):
    contact.first_name = '<img src=x onerror="alert(1)">'
    rendered = _render(
        "<p>{{ contact.first_name }}</p>", contact, subject="{{ contact.first_name }}"
    )
    assert "<img src=x" not in rendered.html
    assert "&lt;img src=x onerror=" in rendered.html
    assert rendered.subject == '<img src=x onerror="alert(1)">'


def test_a_template_cannot_reach_settings_or_python_objects(contact, settings):
    settings.SECRET_KEY = "top-secret-value"
    html = (
        "[{{ settings }}][{{ settings.SECRET_KEY }}][{{ contact.__class__ }}]"
        "[{{ contact.save }}][{{ request }}]"
    )
    rendered = _render(html, contact)
    assert "top-secret-value" not in rendered.html
    assert "[][][][][]" in rendered.html


def test_a_huge_loop_stops_at_the_limit_with_a_clear_error(contact):
    with pytest.raises(RenderError, match="loop iteration limit"):
        _render("{% for i in (1..100000000) %}x{% endfor %}", contact)


def test_nested_loops_cannot_multiply_past_the_limit(contact):
    html = "{% for a in (1..1000) %}{% for b in (1..1000) %}x{% endfor %}{% endfor %}"
    with pytest.raises(RenderError, match="limit"):
        _render(html, contact)


def test_deep_nesting_is_refused(contact):
    html = "{% if true %}" * 40 + "x" + "{% endif %}" * 40
    with pytest.raises(RenderError, match="nesting"):
        _render(html, contact)


def test_huge_output_stops_at_the_limit(contact):
    html = (
        "{% assign s = 'xxxxxxxxxx' %}"
        + "{% for i in (1..9000) %}{{ s }}{{ s }}{{ s }}{% endfor %}" * 10
    )
    with pytest.raises(RenderError, match="limit"):
        _render(html, contact)


def test_a_syntax_error_names_the_field_line_and_column(contact):
    with pytest.raises(RenderError) as error:
        _render("<p>ok</p>\n<p>{% if contact.first_name %}unclosed</p>", contact)
    assert error.value.field == "html_body"
    assert error.value.line is not None
    assert "html_body" in str(error.value)


def test_links_become_absolute_and_the_text_part_keeps_them(contact, settings):
    settings.SITE_URL = "https://shop.example.com"
    rendered = _render(
        '<p><a href="/cart">Your cart</a> <img src="img/logo.png"></p>', contact
    )
    assert 'href="https://shop.example.com/cart"' in rendered.html
    assert 'src="https://shop.example.com/img/logo.png"' in rendered.html
    assert "https://shop.example.com/cart" in rendered.text
    assert "Your cart" in rendered.text


def test_css_is_inlined_and_the_preheader_is_hidden_from_the_text(contact):
    rendered = _render(
        "<style>p { color: red; }</style><p>Hello</p>",
        contact,
        layout="<html><body>{{ content }}</body></html>",
        preheader="Your cart misses you",
    )
    assert '<p style="color: red;">Hello</p>' in rendered.html
    assert "Your cart misses you" in rendered.html
    assert "Your cart misses you" not in rendered.text


def test_dates_render_in_the_contacts_timezone():
    contact = Contact(first_name="Kim", timezone="Asia/Tokyo")
    context = build_context(contact=contact, message_id=None)
    out = render_string(
        "{{ '2026-06-01T20:00:00Z' | local_date: '%Y-%m-%d %H:%M', contact.timezone }}",
        context,
        html=False,
        field="subject",
    )
    assert out == "2026-06-02 05:00"


def test_money_formats_with_the_currency():
    out = render_string(
        "{{ 1234.5 | money: 'EUR' }} {{ 3 | money: 'CHF' }}", {}, html=False, field="x"
    )
    assert out == "€1,234.50 3.00 CHF"
