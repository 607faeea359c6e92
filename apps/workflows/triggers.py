"""Trigger types: what starts a run. Event-like triggers fire from the ingestion
job; time-based ones from the scheduler, each contact once per occurrence."""

import abc
import datetime as dt
import functools
import zoneinfo
from typing import Any, ClassVar

from croniter import croniter
from django.db.models import Q

from apps.contacts.models import Contact
from apps.segments.conditions import (
    ConditionError,
    check,
    event_matches_filters,
    filters_errors,
    matching_contacts,
)

from .steps.base import describe_duration, duration

TIME = "time"
EVENT = "event"
MANUAL = "manual"

# An event-like trigger ignores events older than this (by their timestamp) unless
# its "max_age" says otherwise: a back-filled or delayed batch must not send "your
# cart is waiting" for last week's cart.
DEFAULT_MAX_AGE = {"days": 1}


class TriggerType(abc.ABC):
    name: ClassVar[str]
    label: ClassVar[str]
    kind: ClassVar[str]  # EVENT, TIME or MANUAL

    @abc.abstractmethod
    def validate(self, config: dict, where: str) -> list[str]:
        """Errors in the trigger's config."""

    def event_name(self, config: dict) -> str:
        """For event triggers: the event name they listen to (the index key)."""
        return ""

    def matches(self, config: dict, event) -> tuple[bool, str]:
        """For event triggers: (fires?, why not)."""
        return False, "not an event trigger"

    def plan(
        self, config: dict, now: dt.datetime, last: dt.datetime | None
    ) -> dict | None:
        """For time triggers: None if nothing is due at ``now`` (the last look was at
        ``last``), else what the run's chunks need to find its contacts (JSON). The
        scheduler tick calls it: it must not read contacts."""
        return None

    def due_chunk(
        self, config: dict, plan: dict, now: dt.datetime, *, after: int, limit: int
    ) -> list[tuple[int, str]]:
        """For time triggers: (contact id, occurrence key) of the run's contacts with
        ids above ``after``, at most ``limit``, in id order: one chunk of the run."""
        return []

    def describe(self, config: dict) -> str:
        return self.label


TRIGGER_TYPES: dict[str, TriggerType] = {}


def register_trigger(trigger: TriggerType) -> TriggerType:
    TRIGGER_TYPES[trigger.name] = trigger
    return trigger


def _name_required(config: dict, key: str, where: str) -> list[str]:
    value = config.get(key)
    return [] if isinstance(value, str) and value else [f"{where}.{key}: required"]


class EventTrigger(TriggerType):
    name, label, kind = "event", "An event happens", EVENT

    def validate(self, config, where):
        return _name_required(config, "event", where) + filters_errors(
            config.get("where"), f"{where}.where"
        )

    def event_name(self, config):
        return config["event"]

    def matches(self, config, event):
        if event_matches_filters(
            event.properties, config.get("where"), now=event.timestamp
        ):
            return True, ""
        return False, "the trigger's property filter did not match"

    def describe(self, config):
        where = " (filtered)" if config.get("where") else ""
        return f"When {config.get('event')} happens{where}"


class SegmentTrigger(TriggerType):
    kind = EVENT

    def __init__(self, entered: bool) -> None:
        self.entered = entered
        self.name = "segment_entered" if entered else "segment_exited"
        self.label = "Enters a segment" if entered else "Leaves a segment"

    def validate(self, config, where):
        value = config.get("segment")
        return (
            []
            if isinstance(value, int) and not isinstance(value, bool)
            else [f"{where}.segment: a segment id"]
        )

    def event_name(self, config):
        return self.name

    def matches(self, config, event):
        if (event.properties or {}).get("segment_id") == config["segment"]:
            return True, ""
        return False, "another segment"

    def describe(self, config):
        return f"{self.label} #{config.get('segment')}"


class EmailTrigger(TriggerType):
    name, label, kind = "email", "Email engagement", EVENT
    ACTIONS = (
        "delivered",
        "opened",
        "clicked",
        "bounced",
        "unsubscribed",
        "complained",
    )

    def validate(self, config, where):
        if config.get("action") not in self.ACTIONS:
            return [f"{where}.action: one of {', '.join(self.ACTIONS)}"]
        return []

    def event_name(self, config):
        return f"email_{config['action']}"

    def matches(self, config, event):
        template = config.get("template")
        if template and (event.properties or {}).get("template") != template:
            return False, f"not the template “{template}”"
        return True, ""

    def describe(self, config):
        return f"Email {config.get('action')}" + (
            f" (“{config['template']}”)" if config.get("template") else ""
        )


class ScoreTrigger(TriggerType):
    name, label, kind = "score", "Score crosses a threshold", EVENT

    def validate(self, config, where):
        value = config.get("threshold")
        return (
            []
            if isinstance(value, int) and not isinstance(value, bool)
            else [f"{where}.threshold: a whole number"]
        )

    def event_name(self, config):
        return "score_changed"

    def matches(self, config, event):
        props = event.properties or {}
        old, new, threshold = (
            props.get("old", 0),
            props.get("new", 0),
            config["threshold"],
        )
        if old < threshold <= new:
            return True, ""
        return False, f"score went {old} -> {new}, not across {threshold}"

    def describe(self, config):
        return f"Score reaches {config.get('threshold')}"


class DateTrigger(TriggerType):
    """Anniversary of a date attribute (birthday, renewal), N days before, once a year."""

    name, label, kind = "date", "A date comes round", TIME

    def validate(self, config, where):
        errors = _name_required(config, "attribute", where)
        days = config.get("days_before", 0)
        if not isinstance(days, int) or isinstance(days, bool) or not 0 <= days <= 366:
            errors.append(f"{where}.days_before: 0-366")
        return errors

    def plan(self, config, now, last):
        return {}  # whoever's date it is: every look is a run

    def due_chunk(self, config, plan, now, *, after, limit):
        condition = {
            "attribute": config["attribute"],
            "op": "anniversary",
            "value": config.get("days_before", 0),
        }
        rows = matching_contacts(condition, now=now)
        key = f"{config['attribute']}:{now.year}"
        return [(pk, key) for pk in _chunk(rows, after, limit)]

    def describe(self, config):
        before = config.get("days_before", 0)
        return (
            f"{before} days before {config.get('attribute')}"
            if before
            else f"On {config.get('attribute')}"
        )


class RelativeTrigger(TriggerType):
    """N days after (or before, negative) a date attribute: "3 days after signup"."""

    name, label, kind = "relative", "Some days after a date", TIME

    def validate(self, config, where):
        errors = _name_required(config, "attribute", where)
        days = config.get("days_after")
        if (
            not isinstance(days, int)
            or isinstance(days, bool)
            or not -3650 <= days <= 3650
        ):
            errors.append(f"{where}.days_after: whole days (negative = before)")
        return errors

    def plan(self, config, now, last):
        return {}  # whoever's date it is: every look is a run

    def due_chunk(self, config, plan, now, *, after, limit):
        days = config["days_after"]
        key = f"{config['attribute']}{days:+d}"
        return [(pk, key) for pk in _chunk(self._due(config, now), after, limit)]

    def _due(self, config, now):
        days = config["days_after"]
        attribute = config["attribute"]
        if attribute in {"created_at", "first_seen_at", "last_seen_at"}:
            # timestamps: the whole day, days ago
            start = (now - dt.timedelta(days=days)).replace(
                hour=0, minute=0, second=0, microsecond=0
            )
            return Contact.objects.filter(
                **{
                    f"{attribute}__gte": start,
                    f"{attribute}__lt": start + dt.timedelta(days=1),
                }
            )
        if days >= 0:
            leaves = [{"attribute": attribute, "op": "within_past", "value": days}]
            if days > 0:
                leaves.append(
                    {"attribute": attribute, "op": "more_than_past", "value": days - 1}
                )
        else:
            leaves = [{"attribute": attribute, "op": "within_future", "value": -days}]
            if days < -1:
                leaves.append(
                    {
                        "attribute": attribute,
                        "op": "more_than_future",
                        "value": -days - 1,
                    }
                )
        return matching_contacts({"all": leaves}, now=now)

    def describe(self, config):
        days = config.get("days_after", 0)
        return f"{abs(days)} days {'after' if days >= 0 else 'before'} {config.get('attribute')}"


class InactivityTrigger(TriggerType):
    """No event in N days (win-back); again after each new spell of activity."""

    name, label, kind = "inactivity", "Inactive for a while", TIME

    def validate(self, config, where):
        days = config.get("days")
        return (
            []
            if isinstance(days, int) and not isinstance(days, bool) and days > 0
            else [f"{where}.days: a number of days"]
        )

    def plan(self, config, now, last):
        return {}  # whoever fell silent: every look is a run

    def due_chunk(self, config, plan, now, *, after, limit):
        cutoff = now - dt.timedelta(days=config["days"])
        rows = Contact.objects.filter(last_seen_at__lt=cutoff, pk__gt=after)
        return [
            (pk, f"inactive-since:{last_seen:%Y%m%d%H%M%S}")
            for pk, last_seen in rows.order_by("pk").values_list("pk", "last_seen_at")[
                :limit
            ]
        ]

    def describe(self, config):
        return f"No activity for {config.get('days')} days"


class ScheduleTrigger(TriggerType):
    """A cron schedule in each contact's own timezone, for an optional audience."""

    name, label, kind = "schedule", "On a schedule", TIME

    def validate(self, config, where):
        errors = []
        if not isinstance(config.get("cron"), str) or not croniter.is_valid(
            config["cron"]
        ):
            errors.append(
                f"{where}.cron: a cron expression like '0 9 * * 1' (9:00 on Mondays)"
            )
        if config.get("audience") is not None:
            try:
                check(config["audience"])
            except ConditionError as exc:
                errors += [f"{where}.audience: {e}" for e in exc.errors]
        return errors

    def plan(self, config, now, last):
        """The time zones in which an occurrence fell since the last look, by
        occurrence, as the UTC offsets (minutes, at ``last`` and at ``now``) that
        those zones share: {"since": ..., "occurrences": {"cron:202612070900":
        [[60, 60]]}}. Worked out for every zone there is, not the contacts' (that
        would read them all); zones with the same offsets over the window see the
        same local times, so cron is asked once per offset pair, not per zone."""
        last = last or now - dt.timedelta(minutes=5)
        occurrences: dict[str, list[list[int]]] = {}
        checked: set[tuple[int, int]] = set()
        for name, offsets in _zones_by_offsets(last, now).items():
            if offsets in checked:
                continue
            checked.add(offsets)
            occurrence = _last_occurrence(config["cron"], name, now)
            if occurrence is not None and last < occurrence <= now:
                key = f"cron:{occurrence:%Y%m%d%H%M}"
                occurrences.setdefault(key, []).append(list(offsets))
        if not occurrences:
            return None
        return {"since": last.isoformat(), "occurrences": occurrences}

    def due_chunk(self, config, plan, now, *, after, limit):
        by_offsets = {
            tuple(offsets): key
            for key, pairs in plan["occurrences"].items()
            for offsets in pairs
        }
        since = dt.datetime.fromisoformat(plan["since"])
        key_of = {
            name: by_offsets[offsets]
            for name, offsets in _zones_by_offsets(since, now).items()
            if offsets in by_offsets
        }
        where = Q(timezone__in=list(key_of))
        utc_key = key_of.get("")
        if utc_key:
            # A zone name nobody knows is read as UTC.
            where |= ~Q(timezone__in=_zone_names())
        audience = config.get("audience")
        base = (
            matching_contacts(audience, now=now) if audience else Contact.objects.all()
        )
        rows = base.filter(where, pk__gt=after).order_by("pk")
        return [
            (pk, key_of.get(zone, utc_key))
            for pk, zone in rows.values_list("pk", "timezone")[:limit]
        ]

    def describe(self, config):
        return f"On schedule {config.get('cron')} (contact's time)"


def _chunk(rows, after: int, limit: int) -> list[int]:
    return list(
        rows.filter(pk__gt=after).order_by("pk").values_list("pk", flat=True)[:limit]
    )


@functools.cache
def _zone_names() -> tuple[str, ...]:
    return tuple(sorted(zoneinfo.available_timezones()))


@functools.lru_cache(maxsize=64)
def _zones_by_offsets(
    since: dt.datetime, until: dt.datetime
) -> dict[str, tuple[int, int]]:
    """Every zone name ("" is UTC) with its UTC offset in minutes at ``since`` and
    at ``until`` (cached: a run's chunks ask for the same window)."""
    out = {}
    for name in ("", *_zone_names()):
        zone = _zone(name)
        out[name] = (
            int(since.astimezone(zone).utcoffset().total_seconds() // 60),
            int(until.astimezone(zone).utcoffset().total_seconds() // 60),
        )
    return out


def _zone(name: str) -> dt.tzinfo:
    try:
        return zoneinfo.ZoneInfo(name) if name else dt.UTC
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return dt.UTC


def _last_occurrence(
    expression: str, zone_name: str, now: dt.datetime
) -> dt.datetime | None:
    local_now = now.astimezone(_zone(zone_name))
    previous = croniter(expression, local_now + dt.timedelta(seconds=1)).get_prev(
        dt.datetime
    )
    return previous.astimezone(dt.UTC)


class ManualTrigger(TriggerType):
    name, label, kind = "manual", "Added by hand or the API", MANUAL

    def validate(self, config, where):
        return []

    def describe(self, config):
        return "Enrolled by hand or through the API"


for _trigger in (
    EventTrigger(),
    SegmentTrigger(True),
    SegmentTrigger(False),
    EmailTrigger(),
    ScoreTrigger(),
    DateTrigger(),
    RelativeTrigger(),
    InactivityTrigger(),
    ScheduleTrigger(),
    ManualTrigger(),
):
    register_trigger(_trigger)


def max_age_errors(kind: TriggerType, config: dict, where: str) -> list[str]:
    if "max_age" not in config:
        return []
    if kind.kind != EVENT:
        return [f"{where}.max_age: only triggers fired by an event have one"]
    if duration(config["max_age"]) is None:
        return [f"{where}.max_age: how old an event may be, e.g. {{'hours': 6}}"]
    return []


def max_age(config: dict) -> dt.timedelta:
    return duration(config.get("max_age")) or duration(DEFAULT_MAX_AGE)


def event_refusal(
    config: dict, event, *, live_since: dt.datetime | None, now: dt.datetime
) -> str:
    """Why ``event`` is too old to start a run ("" if it is not): it happened before
    the workflow went live (Klaviyo's rule: going live does not reach back), or
    longer before it reached Nudge than the trigger's maximum age. Its age is taken
    on arrival, not when it is processed: an event that came on time and waited in a
    backlog, or failed and was retried a day later, still starts its run."""
    if live_since is not None and event.timestamp < live_since:
        return (
            f"the event happened ({event.timestamp:%Y-%m-%d %H:%M}) before the "
            f"workflow went live ({live_since:%Y-%m-%d %H:%M})"
        )
    limit = max_age(config)
    age = (getattr(event, "received_at", None) or now) - event.timestamp
    if age > limit:
        return (
            f"the event happened {_ago(age)} before it arrived, longer than the "
            f"trigger's maximum event age ({_ago(limit)})"
        )
    return ""


def _ago(delta: dt.timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    days, minutes = divmod(minutes, 24 * 60)
    hours, minutes = divmod(minutes, 60)
    parts = {"days": days, "hours": hours, "minutes": minutes}
    return describe_duration(parts) if any(parts.values()) else "under a minute"


def trigger_of(definition: dict) -> tuple[TriggerType, dict[str, Any]]:
    config = dict(definition.get("trigger") or {})
    return TRIGGER_TYPES[config.pop("type")], config
