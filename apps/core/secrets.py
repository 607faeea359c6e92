"""Secrets Nudge generates on first use and keeps in the database, so every process
(web, workers, on any machine) signs with the same one without an operator having
to invent it."""

import secrets

from django.db import transaction

from . import clock
from .models import SigningSecret

# 32 random bytes: as strong as an HMAC-SHA256 key gets.
SECRET_BYTES = 32


def _new_value(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(SECRET_BYTES)


def stored_secret(*, name: str, prefix: str = "") -> str:
    """The secret stored as ``name``, created on first use.

    Two processes may both find none: the unique name lets the first insert win
    (ON CONFLICT DO NOTHING makes the second wait for it, then do nothing), and both
    read the winner's value."""
    found = SigningSecret.objects.filter(name=name).values_list("value", flat=True)
    value = found.first()
    if value is not None:
        return value
    SigningSecret.objects.bulk_create(
        [SigningSecret(name=name, value=_new_value(prefix), created_at=clock.now())],
        ignore_conflicts=True,
    )
    return found.get()


def stored_secret_rotate(*, name: str, prefix: str = "") -> str:
    """Replace the secret stored as ``name`` with a new one; what the old one signed
    no longer verifies."""
    value = _new_value(prefix)
    with transaction.atomic():
        updated = SigningSecret.objects.filter(name=name).update(
            value=value, created_at=clock.now()
        )
        if not updated:
            SigningSecret.objects.create(name=name, value=value, created_at=clock.now())
    return value
