"""Traits and sightings: what a message says about its sender, and how traits land
on a contact."""

import datetime as dt
from dataclasses import dataclass
from typing import Any

from ..models import ConsentStatus, Contact

# Segment trait names (and their snake_case spellings) that land on Contact fields.
TRAIT_FIELDS = {
    "firstName": "first_name",
    "first_name": "first_name",
    "lastName": "last_name",
    "last_name": "last_name",
    "phone": "phone",
    "timezone": "timezone",
    "locale": "locale",
}
# Traits only a server key may set: a public key must not opt anyone in or out.
CONSENT_TRAIT = "email_consent"


@dataclass
class Sighting:
    """What one incoming message says about who sent it."""

    anonymous_id: str | None = None
    user_id: str | None = None
    email: str | None = None
    traits: dict[str, Any] | None = None
    # alias: the id the person was known by before ``user_id``
    previous_id: str | None = None
    timestamp: dt.datetime | None = None
    context_timezone: str | None = None
    context_locale: str | None = None

    # A message's context fills a contact's blank timezone or locale; it never
    # overwrites one (traits do that).
    def timezone_for(self, current: str | None) -> str | None:
        """The timezone to give a contact whose timezone is ``current``, if any."""
        if self.context_timezone and not current:
            return self.context_timezone[:64]
        return None

    def locale_for(self, current: str | None) -> str | None:
        """The locale to give a contact whose locale is ``current``, if any."""
        if self.context_locale and not current:
            return self.context_locale[:35]
        return None

    @property
    def anonymous_only(self) -> bool:
        """Names nobody but a visitor's anonymous id (a page view, a track)."""
        return not (self.user_id or self.email or self.traits or self.previous_id)


def normalize_email(email: str | None) -> str | None:
    email = (email or "").strip().lower()
    return email or None


def apply_traits(
    contact: Contact, traits: dict[str, Any], *, trusted: bool
) -> set[str]:
    """Set traits on ``contact`` (unsaved); returns the names of changed fields."""
    changed: set[str] = set()
    attributes = dict(contact.attributes or {})
    for key, value in traits.items():
        if key == "email":
            continue  # identity, handled by the resolver
        if key == CONSENT_TRAIT:
            if (
                trusted
                and value in ConsentStatus.values
                and contact.email_consent != value
            ):
                contact.email_consent = value
                changed.add("email_consent")
            continue
        model_field = TRAIT_FIELDS.get(key)
        if model_field:
            text = "" if value is None else str(value)[:150]
            if getattr(contact, model_field) != text:
                setattr(contact, model_field, text)
                changed.add(model_field)
            continue
        if attributes.get(key, _MISSING) != value:
            attributes[key] = value
    if attributes != (contact.attributes or {}):
        contact.attributes = attributes
        changed.add("attributes")
    return changed


_MISSING = object()
