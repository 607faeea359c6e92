"""A poison event for tests with real worker processes: a Django app whose
EVENTS_INGESTED handler SIGKILLs the process handling an event named
``KILLS_ITS_WORKER``, as an out-of-memory kill or a crash in a C extension would.

Only processes started with DJANGO_SETTINGS_MODULE=tests.poison.settings load it.
"""

KILLS_ITS_WORKER = "kills_its_worker"
