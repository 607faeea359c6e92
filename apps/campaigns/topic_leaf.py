"""The condition leaf ``{"topic": "newsletter", "subscribed": true}``: whether a
contact is subscribed to a topic, for segments, trigger filters, branches, goals
and exit conditions.

Segments sit below campaigns, so this app registers it (CampaignsConfig.ready()).
Both answers apply the topic's default to a contact without a choice, as
topics.topic_subscribers does: opt-in, only a row saying yes; opt-out, everyone but
a row saying no. A topic deleted after a condition was saved matches no one.
"""

from django.db.models import OuterRef, Subquery

from apps.segments.conditions import Leaf, Refs
from apps.segments.conditions.base import Env, Facts
from apps.segments.conditions.sql import Dialect, Fragment

from .models import Topic, TopicSubscription
from .topics import TOPIC_EVENTS

# How many known slugs an "unknown topic" error lists.
KNOWN_SLUGS_SHOWN = 10


class TopicLeaf(Leaf):
    key = "topic"

    def validate(self, node: dict, where: str) -> list[str]:
        slug = node.get("topic")
        if not isinstance(slug, str) or not slug.strip():
            return [f"{where}.topic: a topic's slug is required"]
        if not isinstance(node.get("subscribed"), bool):
            return [f"{where}.subscribed: true or false is required"]
        if not Topic.objects.filter(slug=slug).exists():
            known = list(
                Topic.objects.order_by("slug").values_list("slug", flat=True)[
                    :KNOWN_SLUGS_SHOWN
                ]
            )
            return [
                f"{where}.topic: no topic has the slug {slug!r} "
                + (f"(topics: {', '.join(known)})" if known else "(there are none)")
            ]
        return []

    def sql(self, node: dict, d: Dialect, contact: str) -> Fragment:
        topic = Topic.objects.filter(slug=node["topic"]).first()
        if topic is None:
            return "1=0", []
        default = topic.default == Topic.Default.OPT_OUT
        # Only a row saying the opposite of the default changes the answer. (The
        # table and alias are ours; the values are parameters.)
        choice = (
            f"EXISTS (SELECT 1 FROM {TopicSubscription._meta.db_table} ts "  # noqa: S608
            f'WHERE ts.contact_id = {contact}."id" AND ts.topic_id = %s '
            "AND ts.subscribed = %s)"
        )
        params = [topic.pk, not default]
        if node["subscribed"] == default:
            return f"NOT {choice}", params
        return choice, params

    def matches(self, node: dict, facts: Facts, env: Env) -> bool:
        # One query of its own: Facts carries what segments can load, and topics
        # live above them.
        choice = TopicSubscription.objects.filter(
            contact_id=facts.contact.pk, topic=OuterRef("pk")
        ).values("subscribed")[:1]
        found = (
            Topic.objects.filter(slug=node["topic"])
            .annotate(choice=Subquery(choice))
            .values_list("default", "choice")
            .first()
        )
        if found is None:
            return False
        default, chosen = found
        in_effect = default == Topic.Default.OPT_OUT if chosen is None else chosen
        return in_effect == node["subscribed"]

    def describe(self, node: dict) -> str:
        slug = node.get("topic")
        topic = (
            Topic.objects.filter(slug=slug).first() if isinstance(slug, str) else None
        )
        name = topic.name if topic else slug
        verb = "is subscribed" if node.get("subscribed", True) else "is not subscribed"
        return f"{verb} to the topic “{name}”"

    def collect(self, node: dict, refs: Refs) -> None:
        refs.changed_by.update(TOPIC_EVENTS)


def topics_vocabulary() -> list[dict]:
    """The condition builder's topic choices (apps.segments.selectors.vocabulary)."""
    return [
        {"slug": slug, "name": name}
        for slug, name in Topic.objects.order_by("name").values_list("slug", "name")
    ]
