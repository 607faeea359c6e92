from django.conf import settings
from django.db import models

from apps.contacts.models import Contact


class Workflow(models.Model):
    """What a marketer builds: a trigger, rules, and steps (kept in versions)."""

    class Status(models.TextChoices):
        DRAFT = "draft"
        ACTIVE = "active"
        PAUSED = "paused"
        ARCHIVED = "archived"

    name = models.CharField(max_length=150, unique=True)
    description = models.TextField(blank=True)
    status = models.CharField(
        max_length=10, choices=Status.choices, default=Status.DRAFT, db_index=True
    )
    current_version = models.ForeignKey(
        "WorkflowVersion",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    # Copied from the current version's trigger, so triggers are found by index.
    trigger_type = models.CharField(max_length=30, db_index=True, blank=True)
    trigger_event = models.CharField(max_length=200, db_index=True, blank=True)
    # Time-based triggers: when the scheduler last looked, and when it looks next.
    trigger_checked_at = models.DateTimeField(null=True, blank=True)
    # When it last went live (activated, or resumed after a pause): an event
    # timestamped before this never triggers it.
    live_since = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def definition(self) -> dict:
        return self.current_version.definition if self.current_version else {}


class WorkflowVersion(models.Model):
    """One saved definition of a workflow. Enrollments run on the version they
    entered with, so editing a live workflow never strands anyone."""

    workflow = models.ForeignKey(
        Workflow, on_delete=models.CASCADE, related_name="versions"
    )
    number = models.PositiveIntegerField()
    definition = models.JSONField()
    created_at = models.DateTimeField()
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True
    )
    # What changed from the previous version, in words (for the history page).
    changes = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["-number"]
        constraints = [
            models.UniqueConstraint(
                fields=["workflow", "number"], name="version_number_once"
            )
        ]

    def __str__(self) -> str:
        return f"{self.workflow} v{self.number}"


class Step(models.Model):
    """A node of a version's graph: a type, its config, and named outlets."""

    version = models.ForeignKey(
        WorkflowVersion, on_delete=models.CASCADE, related_name="steps"
    )
    key = models.SlugField(max_length=60)
    type = models.CharField(max_length=40)
    config = models.JSONField(default=dict, blank=True)
    # outlet name -> step key ("" = the end), e.g. {"next": "remind"} or
    # {"yes": "vip", "no": "regular"}
    outlets = models.JSONField(default=dict, blank=True)
    position = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["version", "position"]
        constraints = [
            models.UniqueConstraint(
                fields=["version", "key"], name="step_key_once_per_version"
            )
        ]

    def __str__(self) -> str:
        return f"{self.key} ({self.type})"


class Enrollment(models.Model):
    """One contact's run through one workflow version."""

    class Status(models.TextChoices):
        ACTIVE = "active"  # ready to run its current step
        WAITING = "waiting"  # until resume_at, or the awaited event
        COMPLETED = "completed"
        CONVERTED = "converted"
        EXITED = "exited"
        FAILED = "failed"

    RUNNING = (Status.ACTIVE, Status.WAITING)

    workflow = models.ForeignKey(
        Workflow, on_delete=models.CASCADE, related_name="enrollments"
    )
    version = models.ForeignKey(
        WorkflowVersion, on_delete=models.RESTRICT, related_name="+"
    )
    contact = models.ForeignKey(
        Contact, on_delete=models.CASCADE, related_name="enrollments"
    )
    status = models.CharField(
        max_length=10, choices=Status.choices, default=Status.ACTIVE
    )
    current_step = models.ForeignKey(
        Step, on_delete=models.RESTRICT, null=True, blank=True, related_name="+"
    )
    resume_at = models.DateTimeField(null=True, blank=True)
    # Set when the awaited event arrived: the outlet to leave the wait by.
    resume_outlet = models.CharField(max_length=40, blank=True)
    awaiting_event = models.CharField(max_length=200, blank=True)
    awaiting_key = models.CharField(max_length=255, blank=True)
    # The event that started the run (a plain id: nothing points at Event rows) and
    # what templates and keyed waits need of it.
    trigger_event_id = models.BigIntegerField(null=True, blank=True)
    trigger_event = models.JSONField(default=dict, blank=True)
    trigger_key = models.CharField(max_length=255, blank=True)
    # Time-based triggers enroll once per occurrence ("birthday:2026").
    occurrence_key = models.CharField(max_length=100, blank=True)
    is_test = models.BooleanField(default=False)
    test_email = models.EmailField(blank=True)
    entered_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    converted_at = models.DateTimeField(null=True, blank=True)
    exit_reason = models.CharField(max_length=200, blank=True)
    last_advanced_at = models.DateTimeField(null=True, blank=True)
    # How many times the run has moved from one step to another: the pass through
    # the current step (a loop back through a send step sends once per pass).
    steps_taken = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["workflow", "trigger_event_id"],
                condition=models.Q(trigger_event_id__isnull=False),
                name="enroll_once_per_trigger_event",
            ),
            models.UniqueConstraint(
                fields=["workflow", "contact", "occurrence_key"],
                condition=~models.Q(occurrence_key=""),
                name="enroll_once_per_occurrence",
            ),
        ]
        indexes = [
            models.Index(fields=["status", "resume_at"], name="enrollment_due_idx"),
            models.Index(fields=["contact", "status"], name="enrollment_contact_idx"),
            models.Index(fields=["workflow", "status"], name="enrollment_workflow_idx"),
            models.Index(
                fields=["awaiting_event", "contact"],
                condition=models.Q(status="waiting"),
                name="enrollment_awaiting_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.contact} in {self.workflow}"

    @property
    def is_running(self) -> bool:
        return self.status in self.RUNNING


class StepRun(models.Model):
    """The trace: every step an enrollment ran, when, with what result and why."""

    enrollment = models.ForeignKey(
        Enrollment, on_delete=models.CASCADE, related_name="runs"
    )
    step = models.ForeignKey(Step, on_delete=models.SET_NULL, null=True, blank=True)
    step_key = models.CharField(max_length=60)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField()
    outcome = models.CharField(max_length=40)
    detail = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["started_at", "pk"]

    def __str__(self) -> str:
        return f"{self.step_key}: {self.outcome}"


class TriggerDecision(models.Model):
    """Why a trigger event did *not* enroll someone: the other half of "why didn't
    this contact get the email?". Kept for NUDGE_RETAIN_DECISIONS_DAYS (apps/privacy
    retention)."""

    workflow = models.ForeignKey(
        Workflow, on_delete=models.CASCADE, related_name="decisions"
    )
    contact = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="+")
    event_id = models.BigIntegerField(null=True, blank=True)
    event_name = models.CharField(max_length=200, blank=True)
    reason = models.CharField(max_length=300)
    decided_at = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["-decided_at"]
        indexes = [
            models.Index(fields=["contact", "workflow"], name="decision_contact_idx")
        ]

    def __str__(self) -> str:
        return f"{self.contact} not enrolled in {self.workflow}: {self.reason}"


class TriggerRun(models.Model):
    """One look of a time trigger that found contacts due (a schedule's occurrence,
    today's birthdays). The scheduler tick only decides that it is due and records
    it; jobs enroll its contacts a chunk at a time, in id order after ``cursor``,
    each chunk in its own short transaction. A run whose job was lost (its
    updated_at grows old) is handed to a worker again by the tick, and carries on
    after the cursor: nobody is skipped, nobody enrolled twice."""

    class Status(models.TextChoices):
        RUNNING = "running"
        DONE = "done"
        CANCELLED = "cancelled"  # the workflow was archived meanwhile

    workflow = models.ForeignKey(
        Workflow, on_delete=models.CASCADE, related_name="trigger_runs"
    )
    # The definition the run enrolls with, from its first chunk to its last.
    version = models.ForeignKey(
        WorkflowVersion, on_delete=models.RESTRICT, related_name="+"
    )
    # The time the trigger was evaluated for (every chunk reads the contacts as of
    # then), and the previous look, for triggers that fire in between (schedules).
    due_at = models.DateTimeField()
    since = models.DateTimeField(null=True, blank=True)
    # What the trigger type worked out at the tick for its chunks (TriggerType.plan).
    plan = models.JSONField(default=dict, blank=True)
    # The last contact id a committed chunk went through.
    cursor = models.BigIntegerField(default=0)
    status = models.CharField(
        max_length=10, choices=Status.choices, default=Status.RUNNING
    )
    enrolled = models.PositiveIntegerField(default=0)
    started_at = models.DateTimeField()
    # Stamped by every chunk and by the tick when it hands the run over again.
    updated_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["workflow"],
                condition=models.Q(status="running"),
                name="one_running_trigger_run",
            )
        ]
        indexes = [
            models.Index(
                fields=["updated_at"],
                condition=models.Q(status="running"),
                name="trigger_run_running_idx",
            ),
            models.Index(fields=["finished_at"], name="trigger_run_finished_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.workflow} at {self.due_at:%Y-%m-%d %H:%M} ({self.status})"


class WebhookDelivery(models.Model):
    """A webhook step's POST: signed, retried with backoff, its response recorded."""

    class Status(models.TextChoices):
        PENDING = "pending"
        DELIVERED = "delivered"
        FAILED = "failed"

    enrollment = models.ForeignKey(
        Enrollment, on_delete=models.CASCADE, related_name="webhooks"
    )
    step = models.ForeignKey(Step, on_delete=models.SET_NULL, null=True, blank=True)
    url = models.URLField(max_length=500)
    payload = models.JSONField()
    status = models.CharField(
        max_length=10, choices=Status.choices, default=Status.PENDING
    )
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField()
    response_status = models.PositiveIntegerField(null=True, blank=True)
    response_body = models.TextField(blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["enrollment", "step"], name="webhook_once_per_step"
            )
        ]
        indexes = [
            models.Index(fields=["status", "next_attempt_at"], name="webhook_due_idx")
        ]

    def __str__(self) -> str:
        return f"POST {self.url} ({self.status})"
