"""What each permission lets a staff user do with templates and messages: the
pages and actions check the permission they need, not only is_staff."""

import re

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client

from apps.campaigns.delivery import message_render
from apps.campaigns.models import Message
from apps.campaigns.services import message_create
from apps.campaigns.tokens import UNSUBSCRIBE_SALT, read_contact_token

pytestmark = pytest.mark.django_db

UNSUBSCRIBE = re.compile(r"/e/u/([^/\"'&<\s]+)/")


def _staff(*perms: str) -> Client:
    user = User.objects.create_user(f"staff-{len(perms)}-{User.objects.count()}")
    user.is_staff = True
    user.save()
    for perm in perms:
        app_label, codename = perm.split(".")
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app_label, codename=codename)
        )
    client = Client()
    client.force_login(user)
    return client


def _tokens(html: str) -> list:
    return [
        read_contact_token(t, salt=UNSUBSCRIBE_SALT) for t in UNSUBSCRIBE.findall(html)
    ]


def test_the_message_page_hands_out_no_live_link_and_only_to_who_may_send(
    template, contact
):
    template.layout = None  # the default layout: it has a "view in browser" link
    template.save()
    message, _ = message_create(contact=contact, template=template)
    page_url = f"/admin/campaigns/message/{message.pk}/change/"
    # (the email as it goes out carries a live unsubscribe link)
    live = _tokens(message_render(message).html)
    assert live and not any(token.is_test for token in live)

    # a staff user with no permissions: refused
    assert _staff().get(page_url).status_code == 403
    # who may read messages but not send them again: the message, not the email
    reader = _staff("campaigns.view_message").get(page_url)
    assert reader.status_code == 200
    assert b"sandbox=" not in reader.content
    # who may send it again: the email, every unsubscribe link inert
    sender = _staff("campaigns.view_message", "campaigns.change_message")
    shown = sender.get(page_url).content.decode()
    assert "your cart is waiting" in shown
    tokens = _tokens(shown)
    assert tokens and all(token.is_test for token in tokens)
    # and its "view in browser" link shows the email with inert links as well
    view_link = re.search(r"/e/m/[^/\"'&<\s]+/", shown).group(0)
    in_browser = Client().get(view_link).content.decode()
    assert "Hello Ada" in in_browser
    shown_there = _tokens(in_browser)
    assert shown_there and all(token.is_test for token in shown_there)


def test_only_who_may_change_messages_can_send_an_uncertain_one_again(
    template, contact
):
    message, _ = message_create(contact=contact, template=template)
    Message.objects.filter(pk=message.pk).update(status=Message.Status.UNCERTAIN)
    post = {"action": "requeue_uncertain", "_selected_action": [message.pk]}

    answer = _staff("campaigns.view_message").post("/admin/campaigns/message/", post)

    assert answer.status_code in (200, 302)
    message.refresh_from_db()
    assert message.status == Message.Status.UNCERTAIN
    _staff("campaigns.view_message", "campaigns.change_message").post(
        "/admin/campaigns/message/", post
    )
    message.refresh_from_db()
    assert message.status == Message.Status.QUEUED


def test_a_template_preview_with_a_contacts_data_needs_to_see_contacts(
    template, contact
):
    fields = {"subject": "Hi {{ contact.first_name }}", "html_body": "<p>x</p>"}
    editor = _staff("campaigns.change_emailtemplate")
    # sample data: fine
    sample = editor.post("/admin/campaigns/emailtemplate/preview/", fields)
    assert sample.json()["subject"] == "Hi Sample"
    # a real contact's: refused without contacts.view_contact
    chosen = {**fields, "contact": contact.pk}
    assert (
        editor.post("/admin/campaigns/emailtemplate/preview/", chosen).status_code
        == 403
    )
    both = _staff("campaigns.change_emailtemplate", "contacts.view_contact")
    assert (
        both.post("/admin/campaigns/emailtemplate/preview/", chosen).json()["subject"]
        == "Hi Ada"
    )


def test_a_test_send_needs_the_change_permission(template):
    url = f"/admin/campaigns/emailtemplate/{template.pk}/test-send/"
    post = {"to_email": "me@example.com"}
    assert _staff("campaigns.view_emailtemplate").post(url, post).status_code == 403
    assert not Message.objects.exists()
    assert _staff("campaigns.change_emailtemplate").post(url, post).status_code == 302
    assert Message.objects.get().to_email == "me@example.com"
