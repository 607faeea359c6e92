"""Autovacuum and fillfactor for the tables that grow or change with traffic.

PostgreSQL's defaults vacuum a table once 20% of it is dead rows and analyze it once
10% has changed: at ten million messages that is two million dead rows before the
first vacuum, and plans made from statistics that no longer know how many messages
are queued. These tables get their own thresholds. The events table is not here:
it is partitioned by time and looked after with its partitions.

PostgreSQL only (SQLite has no such settings). Unreversing resets them to the
server's defaults. A new fillfactor applies to pages written from now on; a table
rewrite (VACUUM FULL, pg_repack) applies it to the old ones. docs/operations.md
says what the server itself needs.
"""

from django.db import migrations

# Queue-like tables: rows are inserted, then updated a few times as their work
# moves on (a message queued, claimed, sent, delivered, opened; an enrollment
# waiting, resumed, finished; a recipient given its message; a membership closed).
UPDATED = {
    # Vacuum once 2% of the rows are dead (default 20%): dead versions of queued
    # rows are what the tick's partial indexes walk past.
    "autovacuum_vacuum_scale_factor": "0.02",
    # Re-plan from fresh statistics once 1% changed (default 10%): the share of
    # rows that are queued or waiting swings fast, and the plans depend on it.
    "autovacuum_analyze_scale_factor": "0.01",
    # New rows count towards a vacuum too (default 20%), which sets the
    # visibility map (index-only scans) and freezes them a little at a time
    # instead of in one anti-wraparound vacuum of the whole table.
    "autovacuum_vacuum_insert_scale_factor": "0.05",
}

# Where a row is updated in place in columns outside its indexes (a message's
# error, attempts and sent time; an enrollment's last_advanced_at and steps_taken;
# a contact's attributes), 10% of each page is left free so that the new version
# fits on the same page (a HOT update: no new index entries).
ROOM_FOR_UPDATES = {"fillfactor": "90"}

# Logs: inserted, never updated (step traces; trigger decisions, deleted after
# NUDGE_DECISIONS_DAYS).
APPENDED = {
    # Vacuum after 2% of new rows (default 20%): the visibility map stays
    # current, so the admin's per-contact and per-enrollment reads stay
    # index-only, and freezing happens in small steps.
    "autovacuum_vacuum_insert_scale_factor": "0.02",
    # Statistics once 2% is new (default 10%): "the last N days" plans need
    # to know the newest rows exist.
    "autovacuum_analyze_scale_factor": "0.02",
    # Deletes (decisions past their days) come in bulk: vacuum at 5% dead
    # (default 20%) to reuse the space soon.
    "autovacuum_vacuum_scale_factor": "0.05",
}

# (app label, model name) -> its storage parameters.
SETTINGS = {
    ("campaigns", "Message"): UPDATED | ROOM_FOR_UPDATES,
    ("campaigns", "CampaignRecipient"): UPDATED,
    ("contacts", "Contact"): UPDATED | ROOM_FOR_UPDATES,
    ("workflows", "Enrollment"): UPDATED | ROOM_FOR_UPDATES,
    ("segments", "SegmentMembership"): UPDATED,
    ("workflows", "StepRun"): APPENDED,
    ("workflows", "TriggerDecision"): APPENDED,
}


def _alter(apps, schema_editor, *, reset: bool) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    quote = schema_editor.quote_name
    for (app_label, model_name), params in SETTINGS.items():
        table = quote(apps.get_model(app_label, model_name)._meta.db_table)
        if reset:
            schema_editor.execute(f"ALTER TABLE {table} RESET ({', '.join(params)})")
        else:
            values = ", ".join(f"{name} = {value}" for name, value in params.items())
            schema_editor.execute(f"ALTER TABLE {table} SET ({values})")


def set_storage_parameters(apps, schema_editor):
    _alter(apps, schema_editor, reset=False)


def reset_storage_parameters(apps, schema_editor):
    _alter(apps, schema_editor, reset=True)


class Migration(migrations.Migration):
    dependencies = [
        ("core", "0002_roles"),
        ("campaigns", "0008_requeue_reserved_messages"),
        ("contacts", "0003_contact_erased_at"),
        ("segments", "0001_initial"),
        ("workflows", "0005_enrollment_steps_taken"),
    ]

    operations = [
        migrations.RunPython(set_storage_parameters, reset_storage_parameters),
    ]
