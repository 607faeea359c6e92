"""Every admin URL and action, as each role and as a staff user with no permissions:
let in or refused (403), as the roles say (docs/security.md). The URLs are found by
walking the admin's URL conf, so a new page is checked (and must be listed here)."""

import io

import pytest
from django.contrib import admin
from django.contrib.auth.models import Group, User
from django.core.management import call_command
from django.test import Client
from django.urls import URLPattern, URLResolver, reverse

from apps.contacts.models import Contact
from apps.core import clock
from apps.core.roles import roles_sync

pytestmark = pytest.mark.django_db

ROLES = ("none", "Viewer", "Marketer", "Admin")
EVERYONE = {"Viewer", "Marketer", "Admin"}
EDITORS = {"Marketer", "Admin"}
ADMINS = {"Admin"}

# The admin's own pages, open to any staff user (they show only what the user may).
GENERAL = {
    "index",
    "login",
    "logout",
    "password_change",
    "password_change_done",
    "jsi18n",
    "autocomplete",
    "view_on_site",
    "app_list",
    None,
}

# Custom pages: who is let in.
CUSTOM = {
    "segments_segment_vocabulary": EDITORS,
    "segments_segment_preview": EDITORS,
    "segments_segment_export": EDITORS,  # members' emails: not Viewers
    "segments_segment_upload": EDITORS,
    "campaigns_emailtemplate_preview": EDITORS,
    "campaigns_emailtemplate_test_send": EDITORS,
    "campaigns_contact_consent": ADMINS,
    # (the review shows the audience's addresses masked to those without contacts)
    "campaigns_campaign_review": EVERYONE,
    "campaigns_campaign_progress": EVERYONE,
    "campaigns_campaign_archive": EVERYONE,
    "campaigns_campaign_test_send": EDITORS,
    "campaigns_campaign_schedule": EDITORS,
    "campaigns_campaign_control": EDITORS,
    "workflows_workflow_editor_vocabulary": EDITORS,
    "workflows_workflow_editor_validate": EDITORS,
    "workflows_workflow_report": EVERYONE,
    "workflows_workflow_diagram": EVERYONE,
    "workflows_workflow_export": EVERYONE,
    "workflows_workflow_simulate": EDITORS,
    "workflows_workflow_test_enroll": EDITORS,
    "workflows_workflow_why": EDITORS,
    "workflows_workflow_move": EDITORS,
    "workflows_workflow_import": EDITORS,
    "workflows_workflow_library": EDITORS,
    "workflows_workflow_status": EDITORS,
    "auth_user_password_change": ADMINS,
    # a person's data: the data protection officer's (Admins)
    "privacy_erasure_erase": ADMINS,
    "privacy_dataexport_request": ADMINS,
    "privacy_dataexport_download": ADMINS,
}
DJANGO_RQ = "django_rq_"  # the RQ dashboard's pages: Admins only

# The model pages: who may read, add, change, delete, per model.
READS = {
    **dict.fromkeys(
        [
            "workflows.workflow",
            "workflows.workflowversion",
            "workflows.triggerrun",
            "segments.segment",
            "segments.scoringrule",
            "campaigns.emailtemplate",
            "campaigns.emaillayout",
            "campaigns.topic",
            "campaigns.campaign",
        ],
        EVERYONE,
    ),
    **dict.fromkeys(
        [
            "contacts.contact",
            "events.event",
            "campaigns.message",
            "contacts.consentrecord",
            "workflows.enrollment",
            "workflows.triggerdecision",
            "workflows.webhookdelivery",
        ],
        EDITORS,
    ),
}
EDITS = [
    "workflows.workflow",
    "segments.segment",
    "segments.scoringrule",
    "campaigns.emailtemplate",
    "campaigns.emaillayout",
    "campaigns.topic",
    "campaigns.campaign",
]

# Actions on each list: who is offered them.
ACTIONS = {
    "workflows.workflow": {
        "activate": EDITORS,
        "pause": EDITORS,
        "resume": EDITORS,
        "archive": EDITORS,
        "delete_selected": EDITORS,
    },
    "campaigns.emailtemplate": {"send_test": EDITORS, "delete_selected": EDITORS},
    "campaigns.topic": {"delete_selected": EDITORS},
    "campaigns.campaign": {"delete_selected": EDITORS},
    "campaigns.sendinglane": {"delete_selected": ADMINS},
    "campaigns.message": {
        "requeue_uncertain": ADMINS,
        "mark_uncertain_sent": ADMINS,
        "delete_selected": ADMINS,
    },
    "segments.segment": {"refresh_now": EDITORS, "delete_selected": EDITORS},
    "contacts.contact": {
        "add_to_static_list": EDITORS,
        "enroll_in_workflow": EDITORS,
    },
}


@pytest.fixture
def users(world):
    roles_sync(django_apps())
    made = {}
    for role in ROLES:
        user = User.objects.create_user(f"{role.lower()}-user", password="pw")
        user.is_staff = True
        user.save()
        if role != "none":
            user.groups.add(Group.objects.get(name=role))
        client = Client()
        client.force_login(user)
        made[role] = (user, client)
    return made


@pytest.fixture
def world(db, settings):
    """A row of every model admin shows (the demo data, and the rest by hand), so
    every object page is asked about a real object."""
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    call_command("nudge_demo", stdout=io.StringIO())
    _fill_the_rest()
    missing = [
        model._meta.label_lower
        for model in admin.site._registry
        if model._meta.managed and not model.objects.exists()
    ]
    return missing


def _fill_the_rest() -> None:
    from apps.campaigns.models import (
        Campaign,
        CampaignVariant,
        EmailTemplate,
        SendingLane,
        Topic,
    )
    from apps.campaigns.topics import topic_set
    from apps.contacts.consent import ConsentProof, Source
    from apps.contacts.models import Contact, ContactMerge, SuppressedAddress
    from apps.events.models import Event, EventFailure
    from apps.privacy.models import RetentionRun
    from apps.segments.models import ScoringRule, Segment
    from apps.workflows.models import (
        Enrollment,
        TriggerDecision,
        TriggerRun,
        WebhookDelivery,
        Workflow,
    )
    from apps.workflows.steps.webhook import webhook_signing_secret

    now = clock.now()
    contact = Contact.objects.order_by("pk").first()
    workflow = Workflow.objects.exclude(current_version=None).order_by("pk").first()
    version = workflow.current_version
    ContactMerge.objects.create(
        merged_contact_id=10**9, into=contact, reason="test", merged_at=now
    )
    SuppressedAddress.objects.create(
        email_hash="0" * 64, reason="manual", created_at=now, updated_at=now
    )
    EventFailure.objects.create(
        event_id=Event.objects.order_by("pk").first().pk,
        first_failed_at=now,
        last_failed_at=now,
    )
    Segment.objects.create(name="Everyone", condition={})
    topic = Topic.objects.create(name="Offers", slug="offers")
    topic_set(
        contact=contact,
        topic=topic,
        subscribed=True,
        proof=ConsentProof(source=Source.STAFF),
    )
    webhook_signing_secret()  # (generated on first use)
    if not Campaign.objects.exists():
        campaign = Campaign.objects.create(name="Newsletter")
        campaign.segments.set([Segment.objects.order_by("pk").first()])
        CampaignVariant.objects.create(
            campaign=campaign, template=EmailTemplate.objects.order_by("pk").first()
        )
    SendingLane.objects.create(name="*", per_minute=600)
    ScoringRule.objects.create(name="Views", event_name="Product Viewed", points=1)
    enrollment = Enrollment.objects.filter(workflow=workflow).first()
    if enrollment is None:
        enrollment = Enrollment.objects.create(
            workflow=workflow,
            version=version,
            contact=contact,
            entered_at=now,
            last_advanced_at=now,
        )
    TriggerDecision.objects.create(
        workflow=workflow, contact=contact, reason="test", decided_at=now
    )
    TriggerRun.objects.create(
        workflow=workflow, version=version, due_at=now, started_at=now, updated_at=now
    )
    WebhookDelivery.objects.create(
        enrollment=enrollment,
        url="https://example.com/hook",
        payload={},
        next_attempt_at=now,
        created_at=now,
    )
    from apps.privacy.models import DataExport, Erasure

    Erasure.objects.create(contact_id=10**9, requested_by="test", requested_at=now)
    DataExport.objects.create(contact=contact, requested_by="test", requested_at=now)
    RetentionRun.objects.create(started_at=now, deleted={"events": 1})


def django_apps():
    from django.apps import apps

    return apps


def _admin_urls(patterns=None, prefix=""):
    for entry in patterns if patterns is not None else admin.site.get_urls():
        if isinstance(entry, URLResolver):
            yield from _admin_urls(entry.url_patterns, prefix + str(entry.pattern))
        elif isinstance(entry, URLPattern):
            yield entry


ARGS = {
    "object_id": "1",
    "pk": 1,
    "contact_id": 1,  # (a missing contact is refused before it is looked up)
    "id": 1,
    "export_id": 1,
    "verb": "pause",
    "queue_index": 0,
    "scheduler_index": 0,
    "connection_index": 0,
    "job_id": "no-such-job",
    "result_id": "no-such-result",
    "key": "rq:worker:nobody",
    "scheduler_name": "none",
    "cron_job_name": "none",
}


def _expected(name: str) -> set[str]:
    if name in CUSTOM:
        return CUSTOM[name]
    if name.startswith(DJANGO_RQ):
        return ADMINS
    app_model, _, page = name.rpartition("_")
    app_label, _, model = app_model.partition("_")
    label = f"{app_label}.{model}"
    if page in ("changelist", "change", "history"):
        return READS.get(label, ADMINS)
    if page in ("add", "delete"):
        # (a model admin that refuses adding refuses everyone: checked below)
        return EDITORS if label in EDITS else ADMINS
    raise AssertionError(f"admin URL {name!r} is not in the role matrix: add it")


def _first_of(name: str) -> str:
    for model in admin.site._registry:
        if name.startswith(f"{model._meta.app_label}_{model._meta.model_name}_"):
            return str(model.objects.order_by("pk").values_list("pk", flat=True)[0])
    raise AssertionError(name)


def _let_in(client: Client, url: str, *, never_shows: list[str] = ()) -> bool:
    client.raise_request_exception = False
    page = client.get(url)
    for secret in never_shows:
        assert secret.encode() not in page.content, (url, secret)
    answers = [page.status_code, client.post(url).status_code]
    if "/django_rq/" not in url:
        # (django-rq's own pages answer 500 for some objects that do not exist,
        # such as its scheduler page without rq-scheduler: Admins only, left as is)
        assert all(status < 500 for status in answers), (url, answers)
    return any(status not in (403, 405) for status in answers)


def test_every_admin_url_lets_in_exactly_the_roles_that_may_use_it(users, world):
    assert world == []
    emails = [c.email for c in Contact.objects.exclude(email=None)]
    assert emails
    checked = 0
    for pattern in _admin_urls():
        if pattern.name in GENERAL or "(?P" in str(pattern.pattern):
            continue
        kwargs = {key: ARGS[key] for key in pattern.pattern.converters}
        for key in ("object_id", "pk"):
            if key in kwargs:
                kwargs[key] = _first_of(pattern.name)
        url = reverse(f"admin:{pattern.name}", kwargs=kwargs)
        allowed = _expected(pattern.name)
        for role in ROLES:
            # A Viewer sees no contact's email anywhere (nor does a user with none).
            hidden = emails if role in ("none", "Viewer") else []
            let_in = _let_in(users[role][1], url, never_shows=hidden)
            if role not in allowed:
                assert not let_in, f"{role} let into {pattern.name} ({url})"
            elif not let_in:
                # only where the page refuses everyone (e.g. adding a message)
                assert not _let_in(users["Admin"][1], url), (role, pattern.name)
        checked += 1
    assert checked > 130


def test_each_role_is_offered_exactly_its_actions(users, rf):
    for label, actions in ACTIONS.items():
        model_admin = next(
            ma for m, ma in admin.site._registry.items() if m._meta.label_lower == label
        )
        for role in ROLES:
            request = rf.get("/")
            request.user = users[role][0]
            offered = set(model_admin.get_actions(request))
            expected = {name for name, who in actions.items() if role in who}
            assert offered == expected, (label, role)


def test_a_staff_user_with_no_permissions_sees_no_app_and_no_data(users):
    client = users["none"][1]
    page = client.get(reverse("admin:index"))
    assert page.status_code == 200
    assert b"have permission to view or edit anything" in page.content
