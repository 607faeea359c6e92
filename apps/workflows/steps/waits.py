"""Waiting: a fixed time, until a time of day, until a date, or for an event."""

import datetime as dt
import re
import zoneinfo

from apps.events.models import Event
from apps.segments.conditions import event_matches_filters, filters_errors

from .base import (
    Outcome,
    StepContext,
    StepType,
    describe_duration,
    duration,
    register_step,
)

TIME = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])$")
WEEKDAYS = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
]


def contact_zone(contact) -> dt.tzinfo:
    try:
        return zoneinfo.ZoneInfo(contact.timezone) if contact.timezone else dt.UTC
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return dt.UTC


def next_local_time(
    now: dt.datetime, zone: dt.tzinfo, at: str, weekdays=None
) -> dt.datetime:
    """The next moment (after now) that is ``at`` o'clock in ``zone`` on one of
    ``weekdays`` (0 = Monday), in UTC."""
    hour, minute = (int(x) for x in at.split(":"))
    local = now.astimezone(zone)
    for days in range(0, 8):
        day = local.date() + dt.timedelta(days=days)
        candidate = dt.datetime(day.year, day.month, day.day, hour, minute, tzinfo=zone)
        if candidate > local and (not weekdays or candidate.weekday() in weekdays):
            return candidate.astimezone(dt.UTC)
    raise ValueError("no matching weekday")


class Wait(StepType):
    name = "wait"
    writes = False
    label = "Wait"
    waits = True

    def validate(self, config, where):
        return (
            []
            if duration(config.get("duration"))
            else [f"{where}.duration: how long, e.g. {{'hours': 1}}"]
        )

    def run(self, ctx: StepContext) -> Outcome:
        if ctx.resuming:
            return Outcome("waited")
        until = ctx.now + duration(ctx.step.config["duration"])
        return Outcome(
            "waiting",
            outlet=None,
            wait_until=until,
            reason=f"waiting {describe_duration(ctx.step.config['duration'])}",
        )

    def describe(self, config):
        return f"Wait {describe_duration(config.get('duration') or {})}"


class WaitUntilTime(StepType):
    name = "wait_until_time"
    writes = False
    label = "Wait until a time of day"
    waits = True

    def validate(self, config, where):
        errors = []
        if not isinstance(config.get("time"), str) or not TIME.match(config["time"]):
            errors.append(f"{where}.time: a time like 09:00")
        weekdays = config.get("weekdays")
        if weekdays is not None and (
            not isinstance(weekdays, list)
            or not weekdays
            or not all(d in range(7) for d in weekdays)
        ):
            errors.append(f"{where}.weekdays: days 0 (Monday) to 6 (Sunday)")
        return errors

    def run(self, ctx: StepContext) -> Outcome:
        if ctx.resuming:
            return Outcome("waited")
        zone = contact_zone(ctx.contact)
        until = next_local_time(
            ctx.now, zone, ctx.step.config["time"], ctx.step.config.get("weekdays")
        )
        return Outcome(
            "waiting",
            outlet=None,
            wait_until=until,
            reason=f"until {ctx.step.config['time']} in {zone}",
        )

    def describe(self, config):
        days = config.get("weekdays")
        on = f" on {', '.join(WEEKDAYS[d] for d in days)}" if days else ""
        return f"Wait until {config.get('time')}{on} (contact's time)"


class WaitUntilDate(StepType):
    """Until a date attribute (+/- an offset), at a time of day in the contact's zone."""

    name = "wait_until_date"
    writes = False
    label = "Wait until a date"
    waits = True

    def validate(self, config, where):
        errors = []
        if not isinstance(config.get("attribute"), str) or not config["attribute"]:
            errors.append(f"{where}.attribute: the date attribute, e.g. renewal_date")
        offset = config.get("offset_days", 0)
        if not isinstance(offset, int) or isinstance(offset, bool):
            errors.append(f"{where}.offset_days: whole days (negative = before)")
        if config.get("time") and not TIME.match(str(config["time"])):
            errors.append(f"{where}.time: a time like 09:00")
        return errors

    def run(self, ctx: StepContext) -> Outcome:
        if ctx.resuming:
            return Outcome("waited")
        config = ctx.step.config
        raw = (ctx.contact.attributes or {}).get(config["attribute"])
        if config["attribute"] in {"created_at", "first_seen_at", "last_seen_at"}:
            raw = getattr(ctx.contact, config["attribute"])
            raw = raw.date().isoformat() if raw else None
        try:
            day = dt.date.fromisoformat(str(raw)[:10])
        except ValueError:
            return Outcome(
                "no date", reason=f"{config['attribute']} is not set to a date"
            )
        day += dt.timedelta(days=config.get("offset_days", 0))
        hour, minute = (int(x) for x in (config.get("time") or "09:00").split(":"))
        zone = contact_zone(ctx.contact)
        until = dt.datetime(
            day.year, day.month, day.day, hour, minute, tzinfo=zone
        ).astimezone(dt.UTC)
        if until <= ctx.now:
            return Outcome("date passed", reason=f"{day} has passed")
        return Outcome(
            "waiting",
            outlet=None,
            wait_until=until,
            reason=f"until {day} {hour:02d}:{minute:02d}",
        )

    def describe(self, config):
        offset = config.get("offset_days", 0)
        when = (
            f"{abs(offset)} days {'before' if offset < 0 else 'after'} "
            if offset
            else ""
        )
        return f"Wait until {when}{config.get('attribute')}"


class WaitForEvent(StepType):
    """Until an event happens (outlet "happened") or the timeout (outlet "timed_out").

    With ``match_key`` (e.g. cart_id), only an event whose property has the value the
    trigger event had counts: the cart that was abandoned must be the one bought.
    """

    name = "wait_for_event"
    writes = False
    label = "Wait for an event"
    outlets = ("happened", "timed_out")
    waits = True

    def validate(self, config, where):
        errors = []
        if not isinstance(config.get("event"), str) or not config["event"]:
            errors.append(f"{where}.event: the event to wait for")
        if not duration(config.get("timeout")):
            errors.append(f"{where}.timeout: how long to wait, e.g. {{'hours': 1}}")
        errors += filters_errors(config.get("where"), f"{where}.where")
        return errors

    def run(self, ctx: StepContext) -> Outcome:
        config = ctx.step.config
        key = expected_key(ctx.enrollment, config)
        if ctx.resuming:
            if ctx.enrollment.resume_outlet == "happened":
                return Outcome(
                    "happened", outlet="happened", reason=f"{config['event']} arrived"
                )
            return Outcome(
                "timed out",
                outlet="timed_out",
                reason=f"no {config['event']} within {describe_duration(config['timeout'])}",
            )
        earlier = already_happened(ctx, config, key)
        if earlier is not None:
            return Outcome(
                "happened",
                outlet="happened",
                reason=f"{config['event']} already arrived",
                detail={"event_id": earlier},
            )
        return Outcome(
            "waiting",
            outlet=None,
            wait_until=ctx.now + duration(config["timeout"]),
            await_event=config["event"],
            await_key=key or "",
            reason=f"waiting for {config['event']}"
            + (f" with {config['match_key']} {key}" if key else ""),
        )

    def describe(self, config):
        key = f" (same {config['match_key']})" if config.get("match_key") else ""
        return f"Wait up to {describe_duration(config.get('timeout') or {})} for {config.get('event')}{key}"


def expected_key(enrollment, config) -> str | None:
    name = config.get("match_key")
    if not name:
        return None
    value = (enrollment.trigger_event.get("properties") or {}).get(name)
    return None if value is None else str(value)


def event_satisfies(event_properties: dict, config: dict, key: str | None, now) -> bool:
    if (
        key is not None
        and str((event_properties or {}).get(config["match_key"])) != key
    ):
        return False
    return event_matches_filters(event_properties, config.get("where"), now=now)


def already_happened(ctx: StepContext, config: dict, key: str | None) -> int | None:
    """An awaited event that arrived since the run began (before the wait started)."""
    for event_id, properties in Event.objects.filter(
        contact_id=ctx.contact.pk,
        name=config["event"],
        timestamp__gte=ctx.enrollment.entered_at,
    ).values_list("pk", "properties"):
        if event_satisfies(properties, config, key, ctx.now):
            return event_id
    return None


register_step(Wait())
register_step(WaitUntilTime())
register_step(WaitUntilDate())
register_step(WaitForEvent())
