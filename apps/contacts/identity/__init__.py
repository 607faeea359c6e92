"""Who sent this? Resolving anonymous ids, user ids and emails to contacts, in bulk:
traits.py (what a message says about its sender), rows.py (reading what a call's keys
name, in one query, and locking them) and resolver.py (deciding and writing)."""

from .resolver import (
    IdentityResolver,
    Lookup,
    Resolution,
    lookup_identities,
    resolve_identities,
)
from .traits import (
    CONSENT_TRAIT,
    TRAIT_FIELDS,
    Sighting,
    apply_traits,
    normalize_email,
    save_traits,
)

__all__ = [
    "CONSENT_TRAIT",
    "TRAIT_FIELDS",
    "IdentityResolver",
    "Lookup",
    "Resolution",
    "Sighting",
    "apply_traits",
    "lookup_identities",
    "normalize_email",
    "resolve_identities",
    "save_traits",
]
