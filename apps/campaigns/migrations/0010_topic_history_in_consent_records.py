"""The topic choices' own history (TopicSubscriptionChange) joins the one history of
consent (contacts.ConsentRecord), so that a contact's every change of email consent
and of topics reads in one place; then it goes."""

from django.db import migrations

# The old sources and the new: "api" was either key, told apart by its detail
# ("identify from <source>", "API key of <source>").
SOURCES = {
    "preferences": "preferences",
    "one_click": "one_click",
    "unsubscribe_all": "preferences",
    "staff": "staff",
    "import": "import",
}
BATCH = 1000  # rows per INSERT: a few hundred kilobytes


def copy_history(apps, schema_editor):
    Change = apps.get_model("campaigns", "TopicSubscriptionChange")
    ConsentRecord = apps.get_model("contacts", "ConsentRecord")
    Source = apps.get_model("events", "Source")
    browser_keys = set(
        Source.objects.filter(kind="browser").values_list("name", flat=True)
    )
    records = []
    for change in Change.objects.select_related("topic").order_by("pk").iterator():
        who = change.detail
        for prefix in ("identify from ", "API key of "):
            if who.startswith(prefix):
                who = who.removeprefix(prefix)
        if change.source == "api":
            source = "api_browser" if who in browser_keys else "api_server"
        else:
            source = SOURCES.get(change.source, "system")
        records.append(
            ConsentRecord(
                contact_id=change.contact_id,
                topic=change.topic.slug,
                # A change always flipped the choice in effect.
                previous="unsubscribed" if change.subscribed else "subscribed",
                value="subscribed" if change.subscribed else "unsubscribed",
                source=source,
                # (its detail said who: a key's source, a username, a message)
                who=who,
                at=change.at,
            )
        )
        if len(records) == BATCH:
            ConsentRecord.objects.bulk_create(records)
            records = []
    ConsentRecord.objects.bulk_create(records)


class Migration(migrations.Migration):
    dependencies = [
        ("campaigns", "0009_confirmation_messages"),
        ("contacts", "0004_consent_records"),
        ("events", "0001_initial"),
    ]

    operations = [
        migrations.RunPython(copy_history, migrations.RunPython.noop),
        migrations.RemoveIndex(
            model_name="topicsubscriptionchange",
            name="topic_change_contact_idx",
        ),
        migrations.DeleteModel(name="TopicSubscriptionChange"),
    ]
