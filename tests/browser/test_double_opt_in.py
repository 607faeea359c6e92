"""Double opt-in end to end in headless Chromium: a visitor signs up in the demo
shop's newsletter box, opens the confirmation link from the mail file, confirms,
and the welcome workflow starts."""

import email
import re
import time
from email import policy
from pathlib import Path

import pytest
from django.urls import reverse

from apps.campaigns.demo import demo_templates
from apps.contacts.models import ConsentStatus, Contact
from apps.events.demo import demo_newsletter_source, demo_source
from apps.workflows.demo import demo_welcome
from apps.workflows.models import Enrollment

from .conftest import WAIT_SECONDS

pytestmark = pytest.mark.browser

ADDRESS = "hiker@example.com"
SEPARATOR = "-" * 79


def mails_in(folder: Path) -> list[email.message.EmailMessage]:
    """Every message the file mail backend wrote, parsed."""
    found = []
    for path in sorted(folder.glob("*")):
        for block in path.read_text().split(SEPARATOR + "\n"):
            if block.strip():
                found.append(email.message_from_string(block, policy=policy.default))
    return found


def text_of(message: email.message.EmailMessage) -> str:
    return message.get_body(preferencelist=("plain", "html")).get_content()


def wait_until(page, condition, *, what: str):
    deadline = time.monotonic() + WAIT_SECONDS
    while not (result := condition()):
        if time.monotonic() > deadline:
            pytest.fail(f"gave up after {WAIT_SECONDS}s waiting for {what}")
        page.wait_for_timeout(50)
    return result


@pytest.fixture
def shop(transactional_db, settings, tmp_path):
    demo_source()
    demo_newsletter_source()
    demo_templates()
    demo_welcome()
    settings.MAILERS = {
        "default": {
            "BACKEND": "django.core.mail.backends.filebased.EmailBackend",
            "OPTIONS": {"file_path": str(tmp_path)},
        }
    }
    return tmp_path


def test_a_sign_up_confirmed_from_the_email_starts_the_welcome_workflow(
    page, shop, run_jobs, live_server
):
    mail_dir = shop
    # given: a visitor of the demo shop signs up in the newsletter box
    page.goto(reverse("demo:shop"))
    page.get_by_label("Trail news, once a month").fill(ADDRESS)
    page.get_by_role("button", name="Sign up").click()
    page.get_by_text("Almost there").wait_for()

    # then: they are pending, and the confirmation email is in the mail file
    def confirmation():
        run_jobs()
        return [m for m in mails_in(mail_dir) if m["To"] == ADDRESS]

    mails = wait_until(page, confirmation, what="the confirmation email")
    assert Contact.objects.get(email=ADDRESS).email_consent == ConsentStatus.PENDING
    assert [m["Subject"] for m in mails] == ["Please confirm your subscription"]
    link = re.search(r"https?://[^/\s]+(/e/confirm/[^\s\"<)]+)", text_of(mails[0]))
    assert link, text_of(mails[0])

    # when: they open the link from the email and confirm
    page.goto(live_server.url + link.group(1))
    page.get_by_role("button", name="Yes, subscribe me").click()
    page.get_by_role("heading", name="You are subscribed").wait_for()

    # then: subscribed, and the welcome workflow started and sent its email
    contact = Contact.objects.get(email=ADDRESS)
    assert contact.email_consent == ConsentStatus.SUBSCRIBED

    def welcomed():
        run_jobs()
        return [m for m in mails_in(mail_dir) if m["Subject"].startswith("Welcome")]

    welcome = wait_until(page, welcomed, what="the welcome email")
    assert welcome[0]["To"] == ADDRESS
    enrollment = Enrollment.objects.get(contact=contact)
    assert enrollment.workflow.name == "Welcome (demo)"
    assert enrollment.trigger_event["name"] == "email_subscribed"
