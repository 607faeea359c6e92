"""Writes to contacts: identity resolution, traits, merges."""

import datetime as dt
import logging
from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.forms.models import model_to_dict

from apps.core import clock, hooks

from .consent import ConsentProof, Source, consent_record, consent_records_move
from .identity import (
    Lookup,
    Resolution,
    Sighting,
    lookup_identities,
    resolve_identities,
)
from .identity.refusals import Refusal, log_refusals
from .models import CONSENT_STRICTNESS, ConsentStatus, Contact, ContactMerge, Identity

logger = logging.getLogger(__name__)

__all__ = [
    "Lookup",
    "Resolution",
    "Sighting",
    "contact_merge",
    "contact_surviving",
    "contacts_lookup",
    "contacts_resolve",
    "contacts_touch_last_seen",
]


def contacts_lookup(
    *, sightings: list[Sighting], trusted: bool, default_consent: str | None = None
) -> Lookup:
    """Who sent each sighting, as far as reading tells: ``.contact_ids`` when every
    one is known and nothing about them changes (nothing to write), else None.

    Needs no transaction and takes no lock. Pass the result to ``contacts_resolve``
    to write what it found missing.
    """
    lookup = lookup_identities(
        sightings,
        trusted=trusted,
        default_consent=default_consent or settings.NUDGE_DEFAULT_CONSENT,
        merge=contact_merge,
    )
    # Decided for good when it needs no write (else contacts_resolve decides).
    resolver = lookup.resolver
    if resolver is not None and resolver.refusals and lookup.contact_ids is not None:
        log_refusals(resolver.refusals)
    return lookup


def contacts_resolve(
    *,
    sightings: list[Sighting],
    trusted: bool,
    lookup: Lookup | None = None,
    default_consent: str | None = None,
) -> Resolution:
    """Find or create the contact behind each sighting: their ids in order, and
    whether anything was written (nothing is, when everyone is known and unchanged).

    Call inside a transaction, with the ``contacts_lookup`` of the same sightings if
    the caller made one. ``trusted`` is True for server keys: only they may change
    an existing contact's email or consent, or merge two known contacts. A browser
    key (public, so anyone can use it) may still fold an anonymous visitor into the
    contact they identify as, which is the point of ``identify``.
    """
    resolution = resolve_identities(
        sightings,
        trusted=trusted,
        default_consent=default_consent or settings.NUDGE_DEFAULT_CONSENT,
        merge=contact_merge,
        lookup=lookup,
    )
    log_refusals(resolution.refusals)
    return resolution


@transaction.atomic
def contact_merge(*, source: Contact, target: Contact, reason: str) -> ContactMerge:
    """Fold ``source`` into ``target``: every row moves over, nothing is duplicated.

    Apps that point rows at contacts move them through the CONTACTS_MERGED hook
    (events, memberships, enrollments, messages), in this transaction.
    """
    if source.pk == target.pk:
        raise ValueError("a contact cannot be merged into itself")
    # Lock both rows in id order so two merges of the same pair cannot deadlock.
    locked = {
        c.pk: c
        for c in Contact.objects.select_for_update()
        .filter(pk__in=sorted([source.pk, target.pk]))
        .order_by("pk")
    }
    source, target = locked[source.pk], locked[target.pk]

    moved: dict[str, int] = {}
    moved["identities"] = Identity.objects.filter(contact=source).update(contact=target)
    # Before the hooks, which record on the survivor what the merge changes there.
    if records := consent_records_move(source_id=source.pk, target_id=target.pk):
        moved["consent_records"] = records
    for result in hooks.run(
        hooks.CONTACTS_MERGED, source_id=source.pk, target_id=target.pk
    ):
        for kind, count in (result or {}).items():
            if count:
                moved[kind] = moved.get(kind, 0) + count

    snapshot = model_to_dict(source)
    for key in ("created_at", "first_seen_at", "last_seen_at"):
        value = getattr(source, key)
        snapshot[key] = value.isoformat() if value else None
    consent_before = target.email_consent
    _merge_fields(source=source, target=target)
    merged_id = source.pk
    consent_record(
        contact_id=target.pk,
        previous=consent_before,
        value=target.email_consent,
        proof=merge_proof(merged_id=merged_id, reason=reason),
    )
    # Earlier merges into the source now lead to the target: the record (and the
    # way from an old contact id in a link to whoever holds it now) must survive.
    ContactMerge.objects.filter(into=source).update(into=target)
    # Free the unique email / user id before the target takes them over.
    source.delete()
    target.save()
    merge = ContactMerge.objects.create(
        merged_contact_id=merged_id,
        into=target,
        reason=reason,
        snapshot=snapshot,
        moved=moved,
        merged_at=clock.now(),
    )
    logger.info(
        "contact merged",
        extra={"contact_id": target.pk, "merged_contact_id": merged_id, "moved": moved},
    )
    return merge


def merge_proof(*, merged_id: int, reason: str) -> ConsentProof:
    """What a merge records of a consent it changes on the survivor: the merged
    contact's stricter choice, which it keeps."""
    return ConsentProof(
        source=Source.MERGE,
        who=f"contact #{merged_id}",
        wording=f"merged in ({reason}): the stricter choice of the two is kept",
    )


def _merge_fields(*, source: Contact, target: Contact) -> None:
    """Traits merge with the more recently seen contact winning a conflict."""
    source_newer = _seen(source) > _seen(target)
    older, newer = (target, source) if source_newer else (source, target)
    target.attributes = {**(older.attributes or {}), **(newer.attributes or {})}
    for field in ("email", "external_id"):
        if not getattr(target, field) and getattr(source, field):
            setattr(target, field, getattr(source, field))
    for field in ("first_name", "last_name", "phone", "timezone", "locale"):
        preferred = getattr(newer, field) or getattr(older, field)
        setattr(target, field, preferred)
    target.score += source.score
    target.email_consent = _merged_consent(source, target)
    target.first_seen_at = _min_time(source.first_seen_at, target.first_seen_at)
    target.last_seen_at = _max_time(source.last_seen_at, target.last_seen_at)


def _merged_consent(source: Contact, target: Contact) -> str:
    """The stricter side's, except a "pending" of a side with no address: that is
    a double opt-in source's anonymous visitor, who has nothing to confirm yet, and
    must not make a subscribed customer who logs in pending again."""
    for side, other in ((source, target), (target, source)):
        if side.email_consent == ConsentStatus.PENDING and not side.email:
            return other.email_consent
    return _stricter_consent(source.email_consent, target.email_consent)


def _stricter_consent(a: str, b: str) -> str:
    """An opt-out on either side survives a merge; a merge never re-subscribes."""
    return a if CONSENT_STRICTNESS.get(a, 0) > CONSENT_STRICTNESS.get(b, 0) else b


def _seen(contact: Contact) -> dt.datetime:
    return (
        contact.last_seen_at
        or contact.created_at
        or dt.datetime.min.replace(tzinfo=dt.UTC)
    )


def _min_time(a: dt.datetime | None, b: dt.datetime | None) -> dt.datetime | None:
    return min((t for t in (a, b) if t), default=None)


def _max_time(a: dt.datetime | None, b: dt.datetime | None) -> dt.datetime | None:
    return max((t for t in (a, b) if t), default=None)


# Merges never form a cycle (a merged contact is gone); the cap is a guard.
MAX_MERGE_HOPS = 50


def contact_surviving(contact_id: int) -> Contact | None:
    """The contact ``contact_id`` is now: itself, or the one it was merged into
    (through any number of merges); None if it is gone."""
    for _ in range(MAX_MERGE_HOPS):
        contact = Contact.objects.filter(pk=contact_id).first()
        if contact is not None:
            return contact
        into = (
            ContactMerge.objects.filter(merged_contact_id=contact_id)
            .values_list("into_id", flat=True)
            .first()
        )
        if into is None:
            return None
        contact_id = into
    return None


def contacts_touch_last_seen(*, seen: Mapping[int, dt.datetime]) -> int:
    """Move last_seen_at forward (never back) for each contact id -> time, in one
    UPDATE for the whole batch; returns how many contacts moved. A contact whose
    last_seen_at is already as late is not written at all (no new row version)."""
    if not seen:
        return 0
    table = Contact._meta.db_table
    with connection.cursor() as cursor:
        if connection.vendor != "postgresql":
            # SQLite (the zero-setup demo): one small UPDATE each.
            cursor.executemany(
                f"UPDATE {table} SET last_seen_at = %s "  # noqa: S608
                "WHERE id = %s AND (last_seen_at IS NULL OR last_seen_at < %s)",
                [[at, contact_id, at] for contact_id, at in seen.items()],
            )
            return cursor.rowcount
        # Written out, not Case(When(...)) per contact: Django built and copied
        # thousands of expressions for a batch of 500 (bench/README.md, broadcast).
        rows = ", ".join(["(%s::bigint, %s::timestamptz)"] * len(seen))
        params = [value for item in seen.items() for value in item]
        cursor.execute(
            f"UPDATE {table} AS c SET last_seen_at = v.at "  # noqa: S608
            f"FROM (VALUES {rows}) AS v(id, at) "
            "WHERE c.id = v.id AND (c.last_seen_at IS NULL OR c.last_seen_at < v.at)",
            params,
        )
        return cursor.rowcount


def contact_update_traits(
    *,
    contact: Contact,
    traits: dict[str, Any],
    trusted: bool,
    consent_proof: ConsentProof | None = None,
) -> None:
    """Apply identify-style traits to one contact (admin and API share this), as
    ingestion does: the attributes set are merged into the stored ones, so a copy
    loaded a while ago drops no key written meanwhile. ``contact`` then shows the
    stored attributes. A consent trait's change is recorded with ``consent_proof``."""
    from .identity import apply_traits, save_traits

    changes = apply_traits(contact, traits, trusted=trusted)
    changed, attributes_set = changes.changed, changes.attributes_set
    if changed or attributes_set:
        save_traits(
            contact,
            fields=changed,
            attributes=attributes_set,
            consent_proof=consent_proof,
        )
    log_refusals(
        Refusal(contact, name, "a protected trait needs a server key")
        for name in changes.refused
    )
    if attributes_set:
        contact.refresh_from_db(fields=["attributes"])


def contact_set_attributes(
    *, contact: Contact, values: dict[str, Any], remove: list[str] = ()
) -> None:
    """Set and remove custom attributes of one stored contact, merged into the
    stored ones by the database: an identify call changing other keys meanwhile
    keeps them. ``contact`` then shows the stored attributes."""
    from .identity import save_traits

    save_traits(contact, fields=set(), attributes=values, remove=remove)
    contact.refresh_from_db(fields=["attributes"])
