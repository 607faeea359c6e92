"""An identify's ``topics`` trait ({"newsletter": true, "offers": false}) applied as
topic choices, from the stored event in the events job, with the proof its context
carries (contacts.consent.api_proof: the key, the IP, the form and wording).

Contacts and events sit below campaigns, so identity resolution leaves this trait
alone (contacts.identity.traits.TOPICS_TRAIT) and this EVENTS_INGESTED handler
applies it: once per stored event, so a repeated messageId changes nothing. A
browser key is public: from one, only unsubscribing (false) is applied; a true is
refused and logged, as other protected traits are, and the event is kept as sent.
Choices that cannot be applied (an unknown slug, a value not true or false) are
logged and none of that event's are applied.
"""

import logging

from django.db import transaction

from apps.contacts.consent import api_proof
from apps.contacts.identity.refusals import Refusal, log_refusals
from apps.contacts.identity.traits import TOPICS_TRAIT
from apps.contacts.models import Contact
from apps.events.models import Event, Source

from .models import Topic
from .topics import TopicChoicesError, topic_set_many, topic_states

logger = logging.getLogger(__name__)

BROWSER_REFUSAL = "a browser key may only unsubscribe from a topic"


def _topics_trait(event: Event):
    if event.name != "identify" or not isinstance(event.properties, dict):
        return None
    traits = event.properties.get("traits")
    return traits.get(TOPICS_TRAIT) if isinstance(traits, dict) else None


def topics_from_identify(*, events: list[Event]) -> None:
    wanted = [(e, t) for e in events if (t := _topics_trait(e)) is not None]
    if not wanted:
        return
    sources = Source.objects.in_bulk({e.source_id for e, _ in wanted})
    for event, choices in wanted:
        source = sources.get(event.source_id)
        if source is None:
            continue
        contact = Contact(pk=event.contact_id)
        if not isinstance(choices, dict):
            _not_applied(event, "topics: an object of topic slug to true or false")
            continue
        if not source.is_server:
            choices = _browser_choices(contact, choices)
        try:
            with transaction.atomic():
                topic_set_many(
                    contact=contact,
                    choices=choices,
                    proof=api_proof(
                        event.context, who=source.name, server=source.is_server
                    ),
                )
        except TopicChoicesError as exc:
            _not_applied(event, str(exc))


def _browser_choices(contact: Contact, choices: dict) -> dict:
    """The unsubscribes, the rest logged as refused (unless already in effect)."""
    asked = {slug for slug, value in choices.items() if value is not False}
    if asked:
        topics = list(Topic.objects.filter(slug__in=asked))
        states = topic_states(contact, topics)
        # a browser repeating a subscription in effect is not worth a log line
        already = {t.slug for t in topics if states[t.pk] and choices[t.slug] is True}
        log_refusals(
            Refusal(contact, f"{TOPICS_TRAIT}.{slug}", BROWSER_REFUSAL)
            for slug in sorted(asked - already)
        )
    return {slug: value for slug, value in choices.items() if value is False}


def _not_applied(event: Event, why: str) -> None:
    logger.warning(
        "identify topics not applied to contact %s: %s",
        event.contact_id,
        why,
        extra={"contact_id": event.contact_id, "event_id": event.pk},
    )
