"""Django's migrate, without the statement and idle-in-transaction timeouts that
settings give every PostgreSQL connection (issue 13, item 2).

A migration that rewrites or indexes the events table may run for longer than any
request should, and a long data migration must not be cancelled half-way. The lock
timeout stays: a migration waiting behind a busy table gives up with an error
instead of queueing every other query behind its lock.
"""

from django.core.management.commands.migrate import Command as DjangoMigrate
from django.db import connections

UNBOUNDED = ("statement_timeout", "idle_in_transaction_session_timeout")


class Command(DjangoMigrate):
    def handle(self, *args, **options):
        connection = connections[options["database"]]
        if connection.vendor != "postgresql":
            return super().handle(*args, **options)
        with connection.cursor() as cursor:
            for parameter in UNBOUNDED:
                cursor.execute(f"SET {parameter} = 0")
        try:
            return super().handle(*args, **options)
        finally:
            # back to the values the connection started with (settings' options)
            with connection.cursor() as cursor:
                for parameter in UNBOUNDED:
                    cursor.execute(f"RESET {parameter}")
