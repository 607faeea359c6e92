import django_rq
from redis import Redis


def redis_connection() -> Redis:
    """The Redis that RQ uses (one connection pool per process, from django-rq)."""
    return django_rq.get_connection("default")
