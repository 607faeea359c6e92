"""Proof of consent: every change of a contact's email consent or of a topic choice
is recorded (ConsentRecord) with where it came from, by ``consent_record`` alone.

Email consent changes through ``contact_consent_change`` (the trait path here, and
campaigns' contact_set_consent above it); topic choices through campaigns'
topic_set; a merge records what it changes on the survivor. Each caller says where
the change came from with a ConsentProof.
"""

from dataclasses import dataclass
from typing import Any

from django.db import transaction

from apps.core import clock
from apps.core.ip import anonymise_ip

from .models import ConsentRecord, Contact, consent_may_change

Source = ConsentRecord.Source

# What a record keeps of a caller's text: the fields' sizes, and enough of a
# wording for any checkbox's label or paragraph of terms.
MAX_WHO = 200
MAX_FORM = 500
MAX_WORDING = 2000


@dataclass(frozen=True)
class ConsentProof:
    """Where a change came from: ``source`` (ConsentRecord.Source), ``who`` (the
    key's source name, the staff username, the ESP), the person's ``ip`` (as
    received: it is anonymised when recorded), the ``form`` or page it was given
    on, and the ``wording`` they were shown (or the reason staff gave)."""

    source: str
    who: str = ""
    ip: str | None = None
    form: str = ""
    wording: str = ""


def api_proof(context: Any, *, who: str, server: bool) -> ConsentProof:
    """The proof an API call carries in its Segment ``context``: ``ip`` (a browser
    key's own address unless the call says otherwise, or the person's as a server
    relays it), ``consent.form`` (the form's id or URL; a call naming its form is a
    form's) or else ``page.url``, and ``consent.wording`` (what the person agreed
    to, as shown). Anything not text is left out."""
    context = context if isinstance(context, dict) else {}
    consent = _object(context.get("consent"))
    form = _text(consent.get("form"))
    if form:
        source = Source.FORM
    else:
        source = Source.API_SERVER if server else Source.API_BROWSER
        form = _text(_object(context.get("page")).get("url"))
    return ConsentProof(
        source=source,
        who=who,
        ip=_text(context.get("ip")) or None,
        form=form,
        wording=_text(consent.get("wording")),
    )


def _object(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


def consent_record(
    *,
    contact_id: int,
    previous: str,
    value: str,
    proof: ConsentProof,
    topic: str = "",
    at=None,
) -> ConsentRecord | None:
    """Record one change (``topic``: a topic's slug; blank: email consent), or
    nothing if ``previous`` is ``value``. The IP is anonymised here, once for every
    path (apps.core.ip, NUDGE_ANONYMISE_IP)."""
    if previous == value:
        return None
    if proof.source not in Source.values:
        raise ValueError(f"unknown consent source {proof.source!r}")
    return ConsentRecord.objects.create(
        contact_id=contact_id,
        topic=topic,
        previous=previous,
        value=value,
        source=proof.source,
        who=proof.who[:MAX_WHO],
        ip=anonymise_ip(proof.ip) or None,
        form=proof.form[:MAX_FORM],
        wording=proof.wording[:MAX_WORDING],
        at=at or clock.now(),
    )


def contact_consent_change(
    *, contact_id: int, status: str, proof: ConsentProof, lift: bool = False
) -> str | None:
    """Set a contact's email consent if the precedence allows it (see
    consent_may_change; ``lift``: staff, who may lift anything), and record it.
    Returns the consent it replaced, or None if nothing changed."""
    with transaction.atomic():
        # The row locked while read and written: a bounce landing at the same moment
        # as a resubscribe is either before it (and refuses it) or after it, and
        # the record says what the change replaced.
        current = (
            Contact.objects.select_for_update()
            .filter(pk=contact_id)
            .values_list("email_consent", flat=True)
            .first()
        )
        if current is None or not consent_may_change(current, status, lift=lift):
            return None
        if current == status:
            return None
        Contact.objects.filter(pk=contact_id).update(email_consent=status)
        consent_record(
            contact_id=contact_id, previous=current, value=status, proof=proof
        )
    return current


def consent_records_move(*, source_id: int, target_id: int) -> int:
    """A merged contact's history joins the survivor's, whole."""
    return ConsentRecord.objects.filter(contact_id=source_id).update(
        contact_id=target_id
    )
