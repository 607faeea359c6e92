"""The secret that signs webhook steps' requests is its own: generated and stored
on first use (or NUDGE_WEBHOOK_SECRET), never derived from SECRET_KEY, which
receivers must not learn."""

import hashlib
import hmac
import io
import threading

import pytest
from django.contrib.auth.models import Permission, User
from django.core.management import CommandError, call_command
from django.db import connection

from apps.core.models import SigningSecret
from apps.workflows.steps.webhook import signature, webhook_signing_secret

BODY = b'{"type": "workflow.webhook"}'
STAMP = 1_700_000_000


def _mac(secret: str) -> str:
    digest = hmac.new(secret.encode(), f"{STAMP}.".encode() + BODY, hashlib.sha256)
    return f"t={STAMP},v1={digest.hexdigest()}"


def _printed_secret(*args: str) -> str:
    out = io.StringIO()
    call_command("nudge_webhook_secret", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue().strip()


def test_requests_are_not_signed_with_a_key_derived_from_secret_key(db, settings):
    # given the default settings (the tests set no NUDGE_WEBHOOK_SECRET)
    # when a request is signed
    signed = signature(BODY, STAMP)
    # then someone who knows SECRET_KEY's old derivation cannot produce it, and the
    # secret the command prints for receivers verifies it
    assert signed != _mac(f"whsec-{settings.SECRET_KEY}")
    secret = _printed_secret()
    assert settings.SECRET_KEY not in secret
    assert signed == _mac(secret)


def test_the_secret_is_generated_once_and_then_kept(db, settings):
    settings.NUDGE_WEBHOOK_SECRET = ""
    first = webhook_signing_secret()
    assert first.startswith("whsec_") and len(first) > 40
    assert webhook_signing_secret() == first
    assert SigningSecret.objects.count() == 1


def test_an_environment_secret_wins_and_cannot_be_rotated_here(db, settings):
    settings.NUDGE_WEBHOOK_SECRET = "from-the-environment"
    assert signature(BODY, STAMP) == _mac("from-the-environment")
    assert _printed_secret() == "from-the-environment"
    with pytest.raises(CommandError, match="set in the environment"):
        _printed_secret("--rotate")


def test_rotating_gives_receivers_a_new_secret(db, settings):
    settings.NUDGE_WEBHOOK_SECRET = ""
    old = _printed_secret()
    new = _printed_secret("--rotate")
    assert new != old
    assert signature(BODY, STAMP) == _mac(new)


@pytest.mark.django_db(transaction=True)
def test_two_processes_asking_for_the_first_time_agree(settings):
    # given two connections that both find no secret yet
    settings.NUDGE_WEBHOOK_SECRET = ""
    ready = threading.Barrier(2)
    seen = []

    def ask():
        try:
            ready.wait(10)
            seen.append(webhook_signing_secret())
        finally:
            connection.close()

    threads = [threading.Thread(target=ask) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    # then both sign with the one that was stored
    assert len(seen) == 2 and seen[0] == seen[1]
    assert list(SigningSecret.objects.values_list("value", flat=True)) == [seen[0]]


def test_admin_shows_it_only_to_those_allowed_to_view_signing_secrets(
    db, client, settings
):
    settings.NUDGE_WEBHOOK_SECRET = ""
    secret = webhook_signing_secret()
    staff = User.objects.create_user("staff", password="x", is_staff=True)
    client.force_login(staff)
    url = "/admin/core/signingsecret/"
    assert client.get(url).status_code == 403
    staff.user_permissions.add(Permission.objects.get(codename="view_signingsecret"))
    response = client.get(url)
    assert response.status_code == 200
    assert secret in response.content.decode()
