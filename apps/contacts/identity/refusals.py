"""What a browser (public) key asked of a contact and was refused.

A browser key is public: anyone can send anything with it, for anyone. It may not
change or give a known person's email, set protected traits (traits.py,
PROTECTED_TRAITS), opt anyone in, nor merge two known contacts. Such a call is not
refused as a whole: its events are stored as sent (the traits too, in the identify
event), only the change is not applied, and each refusal is logged here, once the
resolver has decided, with the contact's id.
"""

import logging
from collections.abc import Iterable
from dataclasses import dataclass

from ..models import Contact

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Refusal:
    """A change a browser key asked for and did not get."""

    contact: Contact  # its pk is read when logging: a new contact gets one on write
    what: str  # "email", or the trait's name
    reason: str


def log_refusals(refusals: Iterable[Refusal]) -> None:
    for refusal in refusals:
        contact_id = refusal.contact.pk
        logger.warning(
            "browser key refused: %s of contact %s not applied (%s)",
            refusal.what,
            contact_id,
            refusal.reason,
            extra={"contact_id": contact_id, "refused": refusal.what},
        )


def email_refusal(*, trusted: bool, is_new: bool, contact, changed: set[str]) -> str:
    """Why this call may not give ``contact`` the email it names, or "".

    Giving a visitor their first email is identifying, and a browser may do it: for
    a contact this call creates, or one that was anonymous before it (a user id
    this call gave, in ``changed``, counts as this call's). Any other change needs a
    server key: a browser that names a known person's user id (which may be guessed)
    must not route their email to an address of its choosing."""
    if trusted or is_new:
        return ""
    if contact.email:
        return "a browser key may not change an email"
    if contact.external_id and "external_id" not in changed:
        return "a browser key may not give an email to a contact known by user id"
    return ""
