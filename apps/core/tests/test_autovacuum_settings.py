"""The hot tables' own autovacuum and fillfactor settings (core migration 0003)."""

import importlib

import pytest
from django.apps import apps as django_apps
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

pytestmark = pytest.mark.usefixtures("require_postgres")

MIGRATION = importlib.import_module("apps.core.migrations.0003_hot_table_autovacuum")


def _reloptions(model) -> dict[str, str]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT reloptions FROM pg_class WHERE oid = %s::regclass",
            [model._meta.db_table],
        )
        options = cursor.fetchone()[0] or []
    return dict(option.split("=", 1) for option in options)


def _hot_models():
    return [
        (django_apps.get_model(app_label, name), params)
        for (app_label, name), params in MIGRATION.SETTINGS.items()
    ]


def test_after_migrate_each_hot_table_holds_its_own_settings():
    # given a database migrated as usual (the test database)
    # then every hot table has the settings the migration names
    for model, params in _hot_models():
        assert _reloptions(model) == params, model._meta.db_table


def test_the_messages_table_vacuums_sooner_and_leaves_room_for_updates():
    from apps.campaigns.models import Message

    options = _reloptions(Message)
    assert float(options["autovacuum_vacuum_scale_factor"]) < 0.2  # the default
    assert float(options["autovacuum_analyze_scale_factor"]) < 0.1
    assert int(options["fillfactor"]) < 100


@pytest.mark.django_db(transaction=True)
def test_unmigrating_resets_the_settings_and_migrating_sets_them_again(
    require_postgres,
):
    executor = MigrationExecutor(connection)
    try:
        # when the migration is reversed
        executor.migrate([("core", "0002_roles")])
        # then the tables are back to the server's defaults
        for model, _params in _hot_models():
            assert _reloptions(model) == {}, model._meta.db_table
    finally:
        # and migrating forward sets them again
        executor.loader.build_graph()
        executor.migrate(executor.loader.graph.leaf_nodes())
    for model, params in _hot_models():
        assert _reloptions(model) == params
