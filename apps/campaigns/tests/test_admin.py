"""Templates in admin: validation on save, live preview, test send, the mail viewer."""

import pytest

from apps.campaigns.models import EmailTemplate, Message

pytestmark = pytest.mark.django_db


def _form(**overrides):
    data = {
        "name": "Welcome",
        "subject": "Welcome {{ contact.first_name }}",
        "preheader": "",
        "html_body": "<p>Hi {{ contact.first_name }}</p>",
        "text_body": "",
        "layout": "",
        "from_name": "",
        "from_email": "",
        "reply_to": "",
        "tags": "welcome, onboarding",
    }
    return {**data, **overrides}


def test_a_valid_template_saves_with_its_tags(admin_client, contact):
    response = admin_client.post(
        "/admin/campaigns/emailtemplate/add/", _form(), follow=True
    )
    assert response.status_code == 200
    template = EmailTemplate.objects.get()
    assert template.tags == ["welcome", "onboarding"]


def test_a_syntax_error_is_shown_on_the_field_with_line_and_column(
    admin_client, contact
):
    body = "<p>Hi</p>\n<p>{{ contact.first_name | nope }}</p>"
    response = admin_client.post(
        "/admin/campaigns/emailtemplate/add/", _form(html_body=body)
    )
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert "html_body" in errors
    assert "line 2, column" in errors["html_body"][0]
    assert not EmailTemplate.objects.exists()


def test_an_unclosed_block_is_refused_pointing_at_the_end(admin_client, contact):
    response = admin_client.post(
        "/admin/campaigns/emailtemplate/add/", _form(subject="{% if contact.email %}Hi")
    )
    errors = response.context["adminform"].form.errors
    assert "subject" in errors and "not closed" in errors["subject"][0]


def test_unknown_variables_are_warnings_and_the_template_still_saves(
    admin_client, contact
):
    body = "<p>{{ contact.first_nam }} {{ cart_total }}</p>"
    response = admin_client.post(
        "/admin/campaigns/emailtemplate/add/", _form(html_body=body), follow=True
    )
    warnings = [
        m.message for m in response.context["messages"] if m.level_tag == "warning"
    ]
    assert any("contact.first_nam" in w and "sample contact" in w for w in warnings)
    assert any("unknown variable 'cart_total'" in w for w in warnings)
    assert EmailTemplate.objects.exists()


def test_a_template_that_cannot_render_is_refused(admin_client, contact):
    body = "{% for i in (1..100000000) %}x{% endfor %}"
    response = admin_client.post(
        "/admin/campaigns/emailtemplate/add/", _form(html_body=body)
    )
    errors = response.context["adminform"].form.errors
    assert "does not render for the sample contact" in errors["html_body"][0]
    assert not EmailTemplate.objects.exists()


@pytest.mark.parametrize(
    "field,source",
    [
        ("html_body", "<p>Hi</p>{% include 'footer' %}"),
        ("html_body", "{% render 'footer', contact: contact %}"),
        (
            "subject",
            "{% if contact.email %}{% include contact.first_name %}{% endif %}",
        ),
        ("text_body", "{% liquid\n  render 'footer'\n%}"),
    ],
)
def test_a_template_that_includes_another_is_refused_on_the_field(
    admin_client, contact, field, source
):
    # given a marketer's template that reads another template by name
    # when it is saved
    response = admin_client.post(
        "/admin/campaigns/emailtemplate/add/", _form(**{field: source})
    )
    # then the form says why, on that field, and nothing is saved
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert "includes are not allowed" in errors[field][0]
    assert not EmailTemplate.objects.exists()


def test_the_preview_of_a_template_with_an_include_reports_it(admin_client, contact):
    response = admin_client.post(
        "/admin/campaigns/emailtemplate/preview/",
        {"subject": "x", "html_body": "{% include 'x' %}", "contact": contact.pk},
    )
    assert response.status_code == 200
    assert "includes are not allowed" in response.json()["error"]


def test_a_layout_that_includes_another_template_is_refused(admin_client):
    html = "<html>{{ content }}{% include 'footer' %}{{ unsubscribe_url }}</html>"
    response = admin_client.post(
        "/admin/campaigns/emaillayout/add/", {"name": "Inc", "html": html}
    )
    errors = response.context["adminform"].form.errors
    assert "includes are not allowed" in errors["html"][0]


def test_a_layout_without_an_unsubscribe_link_is_refused(admin_client):
    response = admin_client.post(
        "/admin/campaigns/emaillayout/add/",
        {"name": "Bare", "html": "<html>{{ content }}</html>"},
    )
    errors = response.context["adminform"].form.errors
    assert "unsubscribe_url" in errors["html"][0]


def test_the_live_preview_renders_unsaved_fields_for_a_chosen_contact(
    admin_client, contact, layout
):
    response = admin_client.post(
        "/admin/campaigns/emailtemplate/preview/",
        {
            "subject": "Hi {{ contact.first_name }}",
            "html_body": "<p>{{ contact.email }}</p>",
            "contact": contact.pk,
            "layout": layout.pk,
        },
    )
    data = response.json()
    assert data["subject"] == "Hi Ada"
    assert "<p>ada@example.com</p>" in data["html"]
    assert "Unsubscribe" in data["html"]


def test_the_preview_reports_a_broken_template(admin_client, contact):
    response = admin_client.post(
        "/admin/campaigns/emailtemplate/preview/",
        {"subject": "x", "html_body": "{% if %}", "contact": contact.pk},
    )
    assert "html_body" in response.json()["error"]


def test_the_change_page_has_a_sandboxed_preview_and_the_contact_picker(
    admin_client, template, contact
):
    page = admin_client.get(
        f"/admin/campaigns/emailtemplate/{template.pk}/change/"
    ).content.decode()
    assert 'id="nudge-preview"' in page
    assert 'sandbox="allow-same-origin"' in page  # no scripts, no forms
    assert f'<option value="{contact.pk}">ada@example.com' in page
    assert "Send test email" in page


def test_a_test_send_goes_to_the_typed_address(
    admin_client, template, contact, outbox, run_jobs
):
    response = admin_client.post(
        f"/admin/campaigns/emailtemplate/{template.pk}/test-send/",
        {"to_email": "marketer@agency.example", "contact": contact.pk},
        follow=True,
    )
    assert response.status_code == 200
    run_jobs()
    [email] = outbox
    assert email.to == ["marketer@agency.example"]
    assert email.subject == "[TEST] Ada, your cart is waiting"
    assert Message.objects.get().is_test


def test_a_test_send_refuses_a_bad_address(admin_client, template):
    response = admin_client.post(
        f"/admin/campaigns/emailtemplate/{template.pk}/test-send/", {"to_email": "nope"}
    )
    assert "Enter a valid email address" in response.content.decode()
    assert not Message.objects.exists()


def test_the_message_page_shows_the_email_as_rendered(admin_client, template, contact):
    from apps.campaigns.services import message_create

    message, _ = message_create(contact=contact, template=template)
    page = admin_client.get(
        f"/admin/campaigns/message/{message.pk}/change/"
    ).content.decode()
    assert "Ada, your cart is waiting" in page
    assert 'sandbox="allow-same-origin"' in page
