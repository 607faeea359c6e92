"""The address-level suppression list: writes and reads.

Each address is kept as its hash with the strongest reason seen (complained > bounced >
added by hand > unsubscribed). A weaker reason never replaces a stronger one; lifting
is the only way down, and only the person (for their own unsubscribe) or staff with a
reason may lift.
"""

import logging

from django.db import IntegrityError, transaction

from apps.core import clock

from .models import (
    CONSENT_STRICTNESS,
    SUPPRESSION_FOR_CONSENT,
    SUPPRESSION_RANK,
    ConsentStatus,
    SuppressedAddress,
    email_hash,
)

logger = logging.getLogger(__name__)

Reason = SuppressedAddress.Reason


def _hint(email: str) -> str:
    local, _, domain = email.strip().lower().partition("@")
    return f"{local[:1]}…@{domain}"[:100] if domain else ""


def address_suppress(*, email: str, reason: str, detail: str = "") -> bool:
    """Put ``email`` on the list for ``reason`` (or raise its reason to it); True if
    that changed anything."""
    if not email or not email.strip():
        return False
    key, now = email_hash(email), clock.now()
    try:
        with transaction.atomic():
            SuppressedAddress.objects.create(
                email_hash=key,
                hint=_hint(email),
                reason=reason,
                detail=detail[:300],
                created_at=now,
                updated_at=now,
            )
    except IntegrityError:
        weaker = [
            r for r, rank in SUPPRESSION_RANK.items() if rank < SUPPRESSION_RANK[reason]
        ]
        changed = SuppressedAddress.objects.filter(
            email_hash=key, reason__in=weaker
        ).update(reason=reason, detail=detail[:300], updated_at=now)
        if not changed:
            return False
    logger.info("address suppressed", extra={"reason": reason, "hash": key[:12]})
    return True


def address_lift(*, email: str, why: str, only: set[str] | None = None) -> bool:
    """Take ``email`` off the list (only if its reason is in ``only``, when given);
    True if it was on it. ``why`` is logged: lifting is always someone's decision."""
    if not email:
        return False
    rows = SuppressedAddress.objects.filter(email_hash=email_hash(email))
    if only is not None:
        rows = rows.filter(reason__in=only)
    deleted, _ = rows.delete()
    if deleted:
        logger.info("address suppression lifted", extra={"why": why})
    return bool(deleted)


def address_suppression(email: str | None) -> SuppressedAddress | None:
    """The list's entry for ``email``, if it is suppressed."""
    if not email or not email.strip():
        return None
    return SuppressedAddress.objects.filter(email_hash=email_hash(email)).first()


def addresses_lift(*, entries, why: str) -> int:
    """Take these list entries off (staff, in admin); returns how many."""
    deleted, _ = SuppressedAddress.objects.filter(
        pk__in=[e.pk for e in entries]
    ).delete()
    if deleted:
        logger.info("address suppressions lifted", extra={"count": deleted, "why": why})
    return deleted


def address_follow_consent(
    *,
    email: str | None,
    status: str,
    detail: str,
    lifts_up_to: str = ConsentStatus.UNSUBSCRIBED,
) -> None:
    """The address list follows a consent someone set for ``email`` (the one rule
    for every path: the preference page, the ESPs' events, staff, server-key traits,
    admin): unsubscribed, bounced or complained puts the address on it (or raises
    its reason); subscribed lifts only entries no stricter than ``lifts_up_to``: a
    person's own unsubscribe, or what staff chose to lift (the contact's consent
    they lowered). A stronger entry from elsewhere (another contact's complaint,
    one added by hand) stays until it is lifted on the list itself."""
    if not email:
        return
    if status in SUPPRESSION_FOR_CONSENT:
        address_suppress(
            email=email, reason=SUPPRESSION_FOR_CONSENT[status], detail=detail
        )
    elif status == ConsentStatus.SUBSCRIBED:
        limit = CONSENT_STRICTNESS.get(lifts_up_to, 0)
        only = {
            reason
            for consent, reason in SUPPRESSION_FOR_CONSENT.items()
            if CONSENT_STRICTNESS[consent] <= limit
        }
        if only:
            address_lift(email=email, why=detail, only=only)
