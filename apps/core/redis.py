from functools import cache

import django_rq
from redis import Redis


@cache
def redis_connection() -> Redis:
    """The Redis that RQ uses, one connection pool per process (django-rq would build
    a new pool on every call)."""
    return django_rq.get_connection("default")
