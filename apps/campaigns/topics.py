"""Subscription topics: a contact's choice per topic, its history, and who is in.

A contact without a TopicSubscription row has the topic's default: an opt-in topic
counts only those who subscribed, an opt-out one everyone but those who left it.
Topics only narrow: the contact's email consent and the address list are checked
first, at send time (services.suppression_reason), whatever the topics say.
"""

import logging

from django.db import transaction
from django.db.models import Exists, OuterRef, QuerySet

from apps.contacts.consent import ConsentProof, Source, consent_record
from apps.contacts.models import Contact
from apps.contacts.services import merge_proof
from apps.core import clock
from apps.events.services import event_record

from .models import Topic, TopicSubscription

logger = logging.getLogger(__name__)

__all__ = ["ConsentProof", "Source", "topic_set", "topic_set_many"]

# How a topic choice reads in a consent record (ConsentRecord.previous / value).
SUBSCRIBED = "subscribed"
UNSUBSCRIBED = "unsubscribed"


def _state(subscribed: bool) -> str:
    return SUBSCRIBED if subscribed else UNSUBSCRIBED


# Recorded on every change, so segments and workflow goals with a topic condition
# are re-checked for the contact, and a workflow can start on a subscription.
TOPIC_SUBSCRIBED = "topic_subscribed"
TOPIC_UNSUBSCRIBED = "topic_unsubscribed"
TOPIC_EVENTS = (TOPIC_SUBSCRIBED, TOPIC_UNSUBSCRIBED)


def topic_set(
    *, contact: Contact, topic: Topic, subscribed: bool, proof: ConsentProof
) -> bool:
    """Record the contact's choice for ``topic`` with its proof (contacts.consent:
    where it came from); True if it changed anything. Setting what is already in
    effect (the default included) writes nothing, so a repeated one-click or a
    resaved page adds no history."""
    if proof.source not in Source.values:
        raise ValueError(f"unknown source {proof.source!r}")
    now = clock.now()
    with transaction.atomic():
        # The contact's row locked: two changes at once (a mail client's repeated
        # one-click, say) apply one after the other, each against the state the
        # other left, also when neither has a row yet; and a merge (which locks
        # contacts) is waited for, not raced.
        if not Contact.objects.select_for_update().filter(pk=contact.pk).exists():
            return False  # merged away meanwhile: the survivor holds its choices
        current = (
            TopicSubscription.objects.select_for_update()
            .filter(contact=contact, topic=topic)
            .first()
        )
        in_effect = current.subscribed if current else _default(topic)
        if in_effect == subscribed:
            return False
        if current is None:
            TopicSubscription.objects.create(
                contact=contact, topic=topic, subscribed=subscribed, updated_at=now
            )
        else:
            TopicSubscription.objects.filter(pk=current.pk).update(
                subscribed=subscribed, updated_at=now
            )
        record = consent_record(
            contact_id=contact.pk,
            topic=topic.slug,
            previous=_state(in_effect),
            value=_state(subscribed),
            proof=proof,
            at=now,
        )
        event_record(
            contact_id=contact.pk,
            name=TOPIC_SUBSCRIBED if subscribed else TOPIC_UNSUBSCRIBED,
            properties={
                "topic": topic.slug,
                "topic_name": topic.name,
                "source": proof.source,
            },
            dedupe_key=f"topic:{record.pk}",
            timestamp=now,
            # the contact's own choice on the preference page makes them seen
            by_contact=proof.source == Source.PREFERENCES,
        )
    logger.info(
        "topic subscription changed",
        extra={
            "contact_id": contact.pk,
            "topic": topic.slug,
            "subscribed": subscribed,
            "source": proof.source,
        },
    )
    return True


class TopicChoicesError(ValueError):
    """Choices that cannot be applied: an unknown slug, a value not true or false."""


def topic_set_many(
    *, contact: Contact, choices: dict[str, bool], proof: ConsentProof
) -> list[str]:
    """Apply {slug: subscribed} choices all or nothing (the API, identify traits);
    returns the slugs whose state changed. Raises TopicChoicesError, writing
    nothing, if any slug is unknown or any value is not a boolean."""
    problems = [
        f"topics.{slug}: true or false, not {value!r}"
        for slug, value in choices.items()
        if not isinstance(value, bool)
    ]
    topics = {t.slug: t for t in Topic.objects.filter(slug__in=list(choices))}
    unknown = sorted(slug for slug in choices if slug not in topics)
    if unknown:
        known = ", ".join(Topic.objects.order_by("slug").values_list("slug", flat=True))
        problems.append(
            f"topics: no topic has the slug {', '.join(map(repr, unknown))} "
            f"(topics: {known or 'none yet'})"
        )
    if problems:
        raise TopicChoicesError("; ".join(problems))
    changed = []
    with transaction.atomic():
        for slug, subscribed in choices.items():
            if topic_set(
                contact=contact,
                topic=topics[slug],
                subscribed=subscribed,
                proof=proof,
            ):
                changed.append(slug)
    return changed


def subscribed_to(contact: Contact, topic: Topic) -> bool:
    """The contact's choice for the topic, or its default."""
    choice = (
        TopicSubscription.objects.filter(contact=contact, topic=topic)
        .values_list("subscribed", flat=True)
        .first()
    )
    return _default(topic) if choice is None else choice


def topic_subscribers(topic: Topic) -> QuerySet[Contact]:
    """Contacts subscribed to ``topic``, as one query (for audiences): opt-in, those
    with a row saying yes; opt-out, everyone without a row saying no. Consent and
    the address list are not applied here: they are checked at send time."""
    choices = TopicSubscription.objects.filter(contact=OuterRef("pk"), topic=topic)
    if _default(topic):
        return Contact.objects.filter(~Exists(choices.filter(subscribed=False)))
    return Contact.objects.filter(Exists(choices.filter(subscribed=True)))


def topic_states(contact: Contact, topics) -> dict[int, bool]:
    """{topic id: subscribed} for each of ``topics``, in one query."""
    topics = list(topics)
    chosen = dict(
        TopicSubscription.objects.filter(contact=contact, topic__in=topics).values_list(
            "topic_id", "subscribed"
        )
    )
    return {t.pk: chosen.get(t.pk, _default(t)) for t in topics}


def topic_subscriptions_move(*, source_id: int, target_id: int) -> dict[str, int]:
    """CONTACTS_MERGED hook: the merged contact's choices join the survivor's. Where
    both chose, leaving wins (one of the two addresses asked to stop). What that
    changes for the survivor is recorded; the history moved with the contact
    (contacts.consent.consent_records_move)."""
    theirs = TopicSubscription.objects.filter(contact_id=source_id).select_related(
        "topic"
    )
    mine = dict(
        TopicSubscription.objects.filter(contact_id=target_id).values_list(
            "topic_id", "subscribed"
        )
    )
    proof = merge_proof(merged_id=source_id, reason="topic choices")
    moved = 0
    for row in theirs:
        if row.topic_id not in mine:
            TopicSubscription.objects.filter(pk=row.pk).update(contact_id=target_id)
            before = _default(row.topic)
        elif mine[row.topic_id] and not row.subscribed:
            TopicSubscription.objects.filter(
                contact_id=target_id, topic_id=row.topic_id
            ).update(subscribed=False, updated_at=row.updated_at)
            before = True
        else:
            continue
        moved += 1
        consent_record(
            contact_id=target_id,
            topic=row.topic.slug,
            previous=_state(before),
            value=_state(row.subscribed),
            proof=proof,
        )
    TopicSubscription.objects.filter(contact_id=source_id).delete()
    return {"topic_subscriptions": moved}


def _default(topic: Topic) -> bool:
    return topic.default == Topic.Default.OPT_OUT
