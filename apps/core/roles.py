"""The predefined roles: groups a superuser gives staff accounts (docs/security.md).

- **Viewer** reads workflows, their reports and trigger runs, segments, templates
  and layouts: nothing that names a contact (no contacts, events, messages,
  enrollments, per-contact trigger decisions or webhook deliveries).
- **Marketer** edits templates, layouts, segments, scoring rules and workflows, runs
  tests and activates; sees contacts, events and messages to do so. Not: editing
  contacts or consent, suppression, sources and keys, users and roles, re-sending
  uncertain messages.
- **Admin** everything.

A migration creates them; every ``migrate`` adds what their definitions name and
they lack (a new model's permissions join Admin), and never takes a permission
away: to narrow a role, make a group of your own.
"""

VIEWER_READS = [
    "workflows.workflow",
    "workflows.workflowversion",
    "workflows.triggerrun",
    "segments.segment",
    "segments.scoringrule",
    "campaigns.emailtemplate",
    "campaigns.emaillayout",
    "campaigns.topic",
    "campaigns.campaign",
    "campaigns.campaignvariant",
]
# (A workflow's versions are made by saving it, and kept: nobody edits them.)
MARKETER_EDITS = [
    "workflows.workflow",
    "segments.segment",
    "segments.scoringrule",
    "campaigns.emailtemplate",
    "campaigns.emaillayout",
    "campaigns.topic",
    "campaigns.campaign",
    "campaigns.campaignvariant",
]
MARKETER_READS = [
    *VIEWER_READS,
    "contacts.contact",
    "events.event",
    "campaigns.message",
    "contacts.consentrecord",
    "workflows.enrollment",
    "workflows.triggerdecision",
    "workflows.webhookdelivery",
]

ALL = "*"
ROLES: dict[str, list[str]] = {
    "Viewer": [f"view_{label}" for label in VIEWER_READS],
    "Marketer": [
        *(f"view_{label}" for label in MARKETER_READS),
        *(
            f"{action}_{label}"
            for label in MARKETER_EDITS
            for action in ("add", "change", "delete")
        ),
        "send_campaign_campaigns.campaign",
    ],
    "Admin": [ALL],
}


def roles_sync(apps) -> dict[str, int]:
    """Create the roles and add the permissions they lack; how many each gained.
    ``apps``: a migration's historical apps, or django.apps.apps."""
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    gained = {}
    for name, grants in ROLES.items():
        group, _created = Group.objects.get_or_create(name=name)
        wanted = Permission.objects.all()
        if ALL not in grants:
            wanted = wanted.filter(pk__in=_permission_ids(Permission, grants))
        missing = wanted.exclude(group=group)
        gained[name] = missing.count()
        group.permissions.add(*missing)
    return gained


def _permission_ids(Permission, grants: list[str]) -> list[int]:
    """ "view_workflows.workflow" -> the id of workflows.view_workflow; a model's own
    permission by its codename: "send_campaign_campaigns.campaign"."""
    ids = []
    for grant in grants:
        action, label = grant.rsplit("_", 1)
        app_label, model = label.split(".")
        own = action not in ("add", "change", "delete", "view")
        ids += Permission.objects.filter(
            content_type__app_label=app_label,
            content_type__model=model,
            codename=action if own else f"{action}_{model}",
        ).values_list("pk", flat=True)
    return ids
