"""What ingestion keeps of a call for privacy's sake (docs/privacy.md, "Tracking on
the server: consent and IP addresses").

- The consent gate: a browser source with a consent category stores only the
  events whose ``context.consent.categoryPreferences`` sets that category to true
  (Segment's consent object); the others are counted, not kept. Events that carry
  no consent context follow the source's ``consent_when_missing``. Server keys are
  never gated: the server decided, and may be forwarding calls it gated itself.
- The context kept: ``context.ip`` anonymised (NUDGE_ANONYMISE_IP), the user agent
  dropped if NUDGE_DROP_USER_AGENT says so.
"""

import logging
from typing import Any

from django.conf import settings

from apps.core.ip import anonymise_ip
from apps.core.redis import redis_connection

from . import schemas
from .auth import InvalidField
from .models import Source

logger = logging.getLogger(__name__)

USER_AGENT_KEYS = ("userAgent", "userAgentData")

# One Redis hash, field = source id, value = events dropped for want of consent
# since Redis last started empty. Redis, not a column: a site where most visitors
# decline would otherwise update the source's row on nearly every page view, every
# call waiting for the one before to commit.
WITHOUT_CONSENT_KEY = "nudge:consent-dropped"


def context_to_store(context: dict[str, Any]) -> dict[str, Any]:
    """An event's context as Nudge stores it: the IP address anonymised, the user
    agent left out if so configured. ``context`` itself is not changed."""
    anonymise = settings.NUDGE_ANONYMISE_IP and "ip" in context
    drop_agent = settings.NUDGE_DROP_USER_AGENT and any(
        key in context for key in USER_AGENT_KEYS
    )
    if not anonymise and not drop_agent:
        return context
    kept = dict(context)
    if anonymise:
        ip = kept.pop("ip")
        # Whatever is not an address (a name, a number) is not kept either.
        anonymised = anonymise_ip(ip) if isinstance(ip, str) else ""
        if anonymised:
            kept["ip"] = anonymised
    if drop_agent:
        for key in USER_AGENT_KEYS:
            kept.pop(key, None)
    return kept


def messages_with_consent(
    *,
    source: Source,
    messages: list[schemas.Message],
    batch_context: dict[str, Any],
    batch: bool,
) -> list[schemas.Message]:
    """The messages this source may store: all of them, unless it gates consent.
    Each message is judged by its own consent context, else its batch's. A consent
    context of the wrong shape is a 400 naming it."""
    if not source.gates_consent:
        return messages
    keep_missing = source.consent_when_missing == Source.WhenConsentMissing.KEEP
    kept = []
    for index, message in enumerate(messages):
        if "consent" in message.context:
            consent = message.context["consent"]
            where = f"batch[{index}].context" if batch else "context"
        else:
            consent, where = batch_context.get("consent"), "context"
        preferences = _category_preferences(consent, where=where)
        if preferences is None:
            if keep_missing:
                kept.append(message)
        elif _consented(preferences, source.consent_category):
            kept.append(message)
    return kept


def _category_preferences(consent: Any, *, where: str) -> dict[str, Any] | None:
    """The categoryPreferences of a consent object; None if there is none."""
    if consent is None:
        return None
    if not isinstance(consent, dict):
        raise InvalidField(f"{where}.consent", "must be an object")
    preferences = consent.get("categoryPreferences")
    if preferences is None:
        return None
    if not isinstance(preferences, dict):
        raise InvalidField(
            f"{where}.consent.categoryPreferences",
            "must be an object of consent categories to true or false",
        )
    return preferences


def _consented(preferences: dict[str, Any], category: str) -> bool:
    """Whether the preferences set ``category`` to true (any spelling of its case;
    if two spellings disagree, no)."""
    wanted = category.casefold()
    answers = [value for key, value in preferences.items() if key.casefold() == wanted]
    return bool(answers) and all(value is True for value in answers)


def count_dropped_without_consent(*, source_id: int, dropped: int) -> None:
    """Add to the source's count of events dropped for want of consent. The call's
    answer stands if Redis is away: only the count is lost."""
    if not dropped:
        return
    try:
        redis_connection().hincrby(WITHOUT_CONSENT_KEY, str(source_id), dropped)
    except Exception:
        logger.warning(
            "could not count events dropped without consent",
            exc_info=True,
            extra={"source_id": source_id},
        )


def dropped_without_consent(source_ids: list[int]) -> dict[int, int] | None:
    """Each source's count of events dropped for want of consent; None if Redis
    cannot say."""
    if not source_ids:
        return {}
    try:
        counts = redis_connection().hmget(
            WITHOUT_CONSENT_KEY, [str(pk) for pk in source_ids]
        )
    except Exception:
        logger.warning("could not read the consent counts", exc_info=True)
        return None
    return {pk: int(count or 0) for pk, count in zip(source_ids, counts, strict=True)}
