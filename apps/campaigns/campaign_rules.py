"""What a campaign's own settings must satisfy, each problem named by the field it
is about: the admin form shows them on that field, and campaign_problems (which
also checks the segments and variants) refuses to schedule a campaign that has
any."""

import datetime as dt
import zoneinfo

from apps.core import clock

from .models import Campaign

# The last place a local time arrives: UTC-12.
LATEST_OFFSET = dt.timezone(dt.timedelta(hours=-12))


def known_zone(name: str) -> bool:
    """An IANA time zone name this machine knows ("Europe/Paris")."""
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        return False
    return True


def setting_problems(campaign: Campaign) -> list[tuple[str | None, str]]:
    """(field name or None, sentence) for each problem with the fields on the
    campaign row itself (not its segments or variants)."""
    problems: list[tuple[str | None, str]] = []
    if campaign.test_percent + campaign.holdout_percent >= 100:
        problems.append(
            (
                "holdout_percent",
                "The test share and the holdout together must be under 100%.",
            )
        )
    if campaign.send_when == Campaign.When.AT and not campaign.send_at:
        problems.append(("send_at", "Give the time it goes."))
    elif campaign.send_when == Campaign.When.AT and campaign.send_at < clock.now():
        problems.append(
            ("send_at", "That time has passed: choose “now” or a later time.")
        )
    if (
        campaign.send_when == Campaign.When.LOCAL
        and campaign.local_date
        and campaign.local_time
        and dt.datetime.combine(
            campaign.local_date, campaign.local_time, tzinfo=LATEST_OFFSET
        )
        < clock.now()
    ):
        problems.append(
            (
                "local_date",
                "That local time has passed in every time zone: choose a later date.",
            )
        )
    if campaign.send_when == Campaign.When.LOCAL:
        if not campaign.local_date:
            problems.append(("local_date", "Give the local date it goes."))
        if not campaign.local_time:
            problems.append(("local_time", "Give the local time it goes."))
    if not known_zone(campaign.default_timezone or ""):
        problems.append(
            (
                "default_timezone",
                f"“{campaign.default_timezone}” is not a time zone name; use an "
                "IANA name such as Europe/Paris or America/New_York.",
            )
        )
    if campaign.window_start and not campaign.window_end:
        problems.append(("window_end", "A send window needs an end too."))
    if campaign.window_end and not campaign.window_start:
        problems.append(("window_start", "A send window needs a start too."))
    if (
        campaign.window_start
        and campaign.window_end
        and campaign.window_start == campaign.window_end
    ):
        problems.append(
            ("window_end", "A send window that ends when it starts never opens.")
        )
    if (
        campaign.test_percent
        and campaign.winning_metric == Campaign.Metric.CONVERSIONS
        and not campaign.conversion_event
    ):
        problems.append(
            ("conversion_event", "Name the conversion event the winner is chosen by.")
        )
    return problems
