"""Double opt-in at ingestion: the consent a source's new contacts start with.

The rest of double opt-in (the confirmation email, its page, the purge) is in
apps/campaigns/optin.py: events sit below campaigns and only decide the start."""

from django.conf import settings

from apps.contacts.models import ConsentStatus

from .models import Source


def double_opt_in(source: Source) -> bool:
    return settings.NUDGE_DOUBLE_OPT_IN or source.double_opt_in


def new_contact_consent(source: Source) -> str:
    """The email consent of a contact this source's call creates: "pending" until
    they confirm, for a double opt-in source."""
    if double_opt_in(source):
        return ConsentStatus.PENDING
    return settings.NUDGE_DEFAULT_CONSENT
