"""Reads for the workflow report: how many entered, where they are now, where they
left, what the emails did, and which A/B variant converts better.

Every count is an aggregate PostgreSQL computes (about ten queries, however many
enrollments). Test enrollments and test sends never count. Steps are counted by
key across versions: a step keeps its key when the workflow is edited, while its
row (and id) is new in every version.
"""

import datetime as dt
from dataclasses import dataclass

from django.db.models import Case, CharField, Count, F, Q, QuerySet, When
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import TruncDate

from apps.campaigns.models import Message
from apps.core import clock
from apps.core.stats import (
    MIN_PER_VARIANT,
    SIGNIFICANCE,
    format_p,
    two_proportion_z_test,
)

from .models import Enrollment, Step, StepRun, Workflow
from .steps import STEP_TYPES

SERIES_DAYS = 30
# Below this many contacts per variant the z-test's normal approximation (and any
# conclusion) is not to be trusted.
HOLDOUT = "holdout"
# What the ESP reports after sending, as Message has an <name>_at stamp for each.
TRACKED = ("delivered", "opened", "clicked", "bounced", "unsubscribed", "complained")


@dataclass(frozen=True)
class StepStats:
    key: str
    type: str
    label: str
    on_main_path: bool
    reached: int  # distinct enrollments with a run of this step
    current: int  # running enrollments at this step now
    # The count this step is compared with: the previous step on the main path
    # ("entered" for the first one). None off the main path, and after a step that
    # leads to several (fewer reaching this one is the branching, not a loss).
    previous: int | None = None

    @property
    def dropped(self) -> int | None:
        """Negative where paths join (more reach it than the step before)."""
        return None if self.previous is None else self.previous - self.reached

    @property
    def drop_off_percent(self) -> float | None:
        if not self.previous:
            return None
        return 100 * self.dropped / self.previous


@dataclass(frozen=True)
class EmailStats:
    """One send step's messages. Each count is of messages the ESP reported that
    for; a click proves an open and an open proves delivery (pixels are blocked and
    some ESPs send no delivery webhook), so they count there too."""

    step_key: str
    sent: int = 0
    delivered: int = 0
    opened: int = 0
    clicked: int = 0
    bounced: int = 0
    unsubscribed: int = 0
    complained: int = 0

    @property
    def columns(self) -> list[tuple[str, int, float | None]]:
        """(what, count, percent of sent) for the table."""
        return [
            (name, getattr(self, name), _percent(getattr(self, name), self.sent))
            for name in TRACKED
        ]


@dataclass(frozen=True)
class Variant:
    name: str
    enrollments: int = 0
    conversions: int = 0

    @property
    def rate(self) -> float:
        return self.conversions / self.enrollments if self.enrollments else 0.0

    @property
    def percent(self) -> float:
        return 100 * self.rate


@dataclass(frozen=True)
class Comparison:
    a: Variant  # the larger of the two
    b: Variant
    difference: float  # b.rate - a.rate

    @property
    def difference_points(self) -> float:
        """The difference in percentage points."""
        return 100 * self.difference

    z: float
    p_value: float
    verdict: str


@dataclass(frozen=True)
class Experiment:
    step_key: str
    kind: str  # "split" (variants by outcome) or "send" (variants by template)
    variants: list[Variant]
    comparison: Comparison | None


@dataclass(frozen=True)
class DailyCount:
    day: dt.date
    entered: int
    converted: int


@dataclass(frozen=True)
class Report:
    workflow: Workflow
    since: dt.datetime | None
    entered: int
    active: int  # active + waiting
    completed: int
    converted: int
    exited: int
    failed: int
    exit_reasons: list[tuple[str, int]]
    steps: list[StepStats]
    emails: list[EmailStats]
    experiments: list[Experiment]
    series: list[DailyCount]  # the last SERIES_DAYS days (UTC), oldest first

    @property
    def conversion_percent(self) -> float | None:
        return _percent(self.converted, self.entered)

    @property
    def funnel(self) -> list[StepStats]:
        return [s for s in self.steps if s.on_main_path]


def workflow_report(*, workflow: Workflow, since: dt.datetime | None = None) -> Report:
    """The report of enrollments that entered ``since`` (all of them if None); the
    daily series always covers the last SERIES_DAYS days."""
    cohort = Enrollment.objects.filter(workflow=workflow, is_test=False)
    if since is not None:
        cohort = cohort.filter(entered_at__gte=since)
    by_status = dict(cohort.values_list("status").annotate(n=Count("pk")).order_by())
    exit_reasons = list(
        cohort.filter(status=Enrollment.Status.EXITED)
        .values_list("exit_reason")
        .annotate(n=Count("pk"))
        .order_by("-n", "exit_reason")
    )
    steps = _steps(workflow)
    # Filtered through the join (not "IN (cohort)"), so that the A/B query's
    # enrollment__status reuses the same join.
    runs = StepRun.objects.filter(
        enrollment__workflow=workflow, enrollment__is_test=False
    )
    if since is not None:
        runs = runs.filter(enrollment__entered_at__gte=since)
    return Report(
        workflow=workflow,
        since=since,
        entered=sum(by_status.values()),
        active=sum(by_status.get(s, 0) for s in Enrollment.RUNNING),
        completed=by_status.get(Enrollment.Status.COMPLETED, 0),
        converted=by_status.get(Enrollment.Status.CONVERTED, 0),
        exited=by_status.get(Enrollment.Status.EXITED, 0),
        failed=by_status.get(Enrollment.Status.FAILED, 0),
        exit_reasons=exit_reasons,
        steps=_step_stats(steps, cohort, runs, sum(by_status.values())),
        emails=_email_stats(steps, cohort if since is not None else None),
        experiments=_experiments(steps, runs),
        series=daily_series(workflow=workflow),
    )


# -- steps ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Steps:
    """The workflow's steps by key across versions; each key's latest definition."""

    latest: dict[str, Step]  # key -> the step row of the newest version having it
    ids: dict[int, str]  # step id (any version) -> key
    order: list[str]  # keys of the current version by position, then older-only ones
    first: str | None  # where the current version starts
    types: dict[str, set[str]]  # key -> every type it has had
    configs: dict[str, list[dict]]  # key -> its configs, newest version first


def _steps(workflow: Workflow) -> _Steps:
    latest, ids, types, configs = {}, {}, {}, {}
    current, older = [], []
    rows = Step.objects.filter(version__workflow=workflow).order_by(
        "-version__number", "position"
    )
    for step in rows:
        ids[step.pk] = step.key
        types.setdefault(step.key, set()).add(step.type)
        configs.setdefault(step.key, []).append(step.config or {})
        if step.key not in latest:
            latest[step.key] = step
            is_current = step.version_id == workflow.current_version_id
            (current if is_current else older).append(step.key)
    first = current[0] if current else None
    return _Steps(latest, ids, current + older, first, types, configs)


def main_path(steps: dict[str, Step], first: str | None, reached: dict) -> list[str]:
    """From the first step, follow the outlet most enrollments took (the first
    declared one on a tie, e.g. before anyone has run), until the end or a loop."""
    path: list[str] = []
    key = first
    while key and key not in path:
        path.append(key)
        targets = [
            target
            for target in (steps[key].outlets or {}).values()
            if target in steps and target not in path
        ]
        key = max(targets, key=lambda t: reached.get(t, 0), default=None)
    return path


def _step_stats(
    steps: _Steps, cohort: QuerySet, runs: QuerySet, entered: int
) -> list[StepStats]:
    reached = dict(
        runs.values_list("step_key")
        .annotate(n=Count("enrollment_id", distinct=True))
        .order_by()
    )
    current: dict[str, int] = {}
    at_steps = (
        cohort.filter(status__in=Enrollment.RUNNING, current_step__isnull=False)
        .values_list("current_step_id")
        .annotate(n=Count("pk"))
        .order_by()
    )
    for step_id, n in at_steps:
        key = steps.ids.get(step_id)
        if key:
            current[key] = current.get(key, 0) + n
    path = main_path(steps.latest, steps.first, reached)
    others = [k for k in steps.order if k not in path]
    stats, previous = [], entered
    for key in path + others:
        step = steps.latest[key]
        on_path = key in path
        stats.append(
            StepStats(
                key=key,
                type=step.type,
                label=_describe(step),
                on_main_path=on_path,
                reached=reached.get(key, 0),
                current=current.get(key, 0),
                previous=previous if on_path else None,
            )
        )
        if on_path:
            leads_to = {t for t in (step.outlets or {}).values() if t in steps.latest}
            previous = reached.get(key, 0) if len(leads_to) < 2 else None
    return stats


def _describe(step: Step) -> str:
    kind = STEP_TYPES.get(step.type)
    return kind.describe(step.config or {}) if kind else step.type


# -- emails ---------------------------------------------------------------------------


def _email_stats(steps: _Steps, cohort: QuerySet | None) -> list[EmailStats]:
    """Messages of the send steps, of the enrollments in ``cohort`` (None: all; test
    sends are marked is_test themselves, so that needs no join)."""
    send_ids = [i for i, key in steps.ids.items() if "send_email" in steps.types[key]]
    if not send_ids:
        return []
    stamped = {name: Q(**{f"{name}_at__isnull": False}) for name in TRACKED}
    messages = Message.objects.filter(step_id__in=send_ids, is_test=False)
    if cohort is not None:
        messages = messages.filter(enrollment_id__in=cohort.values("pk"))
    rows = (
        messages.values("step_id")
        .annotate(
            sent=Count("pk", filter=Q(status=Message.Status.SENT)),
            delivered=Count(
                "pk",
                filter=stamped["delivered"] | stamped["opened"] | stamped["clicked"],
            ),
            opened=Count("pk", filter=stamped["opened"] | stamped["clicked"]),
            clicked=Count("pk", filter=stamped["clicked"]),
            bounced=Count("pk", filter=stamped["bounced"]),
            unsubscribed=Count("pk", filter=stamped["unsubscribed"]),
            complained=Count("pk", filter=stamped["complained"]),
        )
        .order_by()
    )
    totals: dict[str, dict[str, int]] = {}
    for row in rows:
        into = totals.setdefault(steps.ids[row.pop("step_id")], {})
        for name, n in row.items():
            into[name] = into.get(name, 0) + n
    return [
        EmailStats(step_key=key, **totals.get(key, {}))
        for key in steps.order
        if "send_email" in steps.types[key]
    ]


# -- A/B ------------------------------------------------------------------------------


def _variant_names(steps: _Steps, key: str) -> tuple[str, list[str]] | None:
    """("split" | "send", the variant names newest first) if ``key`` is an A/B."""
    names: list[str] = []
    if "split" in steps.types[key]:
        kind = "split"
        for config in steps.configs[key]:
            names += [v.get("name") for v in config.get("variants") or []]
            names += [HOLDOUT] if config.get("holdout") else []
    else:
        kind = "send"
        for config in steps.configs[key]:
            if len(config.get("variants") or []) > 1:
                names += [v.get("template") for v in config["variants"]]
    names = list(dict.fromkeys(n for n in names if isinstance(n, str) and n))
    if HOLDOUT in names:  # the control group goes last
        names = [n for n in names if n != HOLDOUT] + [HOLDOUT]
    return (kind, names) if len(names) > 1 else None


def _experiments(steps: _Steps, runs: QuerySet) -> list[Experiment]:
    tests = {key: found for key in steps.order if (found := _variant_names(steps, key))}
    if not tests:
        return []
    # A split's variant is its outcome; an A/B send's is the template it picked. Other
    # runs logged at these steps (a goal reached while there, a failure) are not a
    # variant and are left out by name.
    which = Q()
    for key, (kind, names) in tests.items():
        if kind == "split":
            which |= Q(step_key=key, outcome__in=names)
        else:
            which |= Q(step_key=key, detail__variant__in=names)
    split_keys = [key for key, (kind, _) in tests.items() if kind == "split"]
    rows = (
        runs.filter(which)
        .annotate(
            variant=Case(
                When(step_key__in=split_keys, then=F("outcome")),
                default=KeyTextTransform("variant", "detail"),
                output_field=CharField(),
            )
        )
        .values_list("step_key", "variant")
        .annotate(
            enrollments=Count("enrollment_id", distinct=True),
            conversions=Count(
                "enrollment_id",
                distinct=True,
                filter=Q(enrollment__status=Enrollment.Status.CONVERTED),
            ),
        )
        .order_by()
    )
    counts = {(key, name): (n, c) for key, name, n, c in rows}
    experiments = []
    for key, (kind, names) in tests.items():
        variants = [Variant(name, *counts.get((key, name), (0, 0))) for name in names]
        experiments.append(Experiment(key, kind, variants, compare_largest(variants)))
    return experiments


def compare_largest(variants: list[Variant]) -> Comparison | None:
    """The two variants with the most enrollments, compared (None if fewer than 2)."""
    if len(variants) < 2:
        return None
    a, b = sorted(variants, key=lambda v: -v.enrollments)[:2]
    z, p = two_proportion_z_test(
        a.conversions, a.enrollments, b.conversions, b.enrollments
    )
    return Comparison(a, b, b.rate - a.rate, z, p, verdict(a, b, p))


def verdict(a: Variant, b: Variant, p: float) -> str:
    """What the comparison means, in a sentence a marketer can act on."""
    if min(a.enrollments, b.enrollments) < MIN_PER_VARIANT:
        return f"too few contacts to tell (n < {MIN_PER_VARIANT} per variant)"
    if p >= SIGNIFICANCE or a.rate == b.rate:
        return f"not enough evidence yet ({format_p(p)}); keep the test running"
    better, worse = (a, b) if a.rate > b.rate else (b, a)
    return (
        f"{better.name} converts better than {worse.name} "
        f"({better.rate:.1%} vs {worse.rate:.1%}, {format_p(p)}): "
        "likely a real difference"
    )


# -- over time ------------------------------------------------------------------------


def daily_series(*, workflow: Workflow, days: int = SERIES_DAYS) -> list[DailyCount]:
    """Enrollments entered and converted per UTC day, for the last ``days`` days up
    to today, with the days nothing happened as zeros."""
    today = clock.now().astimezone(dt.UTC).date()
    first = today - dt.timedelta(days=days - 1)
    start = dt.datetime.combine(first, dt.time(), tzinfo=dt.UTC)
    end = start + dt.timedelta(days=days)
    counted = Enrollment.objects.filter(workflow=workflow, is_test=False)

    def per_day(field: str, **where) -> dict[dt.date, int]:
        return dict(
            counted.filter(**{f"{field}__gte": start, f"{field}__lt": end}, **where)
            .annotate(day=TruncDate(field, tzinfo=dt.UTC))
            .values_list("day")
            .annotate(n=Count("pk"))
            .order_by()
        )

    entered = per_day("entered_at")
    converted = per_day("converted_at", status=Enrollment.Status.CONVERTED)
    return [
        DailyCount(day, entered.get(day, 0), converted.get(day, 0))
        for day in (first + dt.timedelta(days=i) for i in range(days))
    ]


def _percent(part: int, whole: int) -> float | None:
    return 100 * part / whole if whole else None
