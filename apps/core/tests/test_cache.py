"""A per-process cache of model rows, rebuilt by whatever path the rows change."""

import pytest
from django.contrib.auth.models import User
from django.db.models import Q

from apps.core.cache import RowsCache

pytestmark = pytest.mark.django_db


@pytest.fixture
def names():
    """Active users' names, counting how often they were built."""
    builds = []

    def build() -> list[str]:
        builds.append(1)
        return sorted(
            User.objects.filter(is_active=True).values_list("username", flat=True)
        )

    cache = RowsCache(
        model=User,
        columns=("username", "first_name", "last_name"),
        where=Q(is_active=True),
        build=build,
    )
    return cache, builds


def test_it_is_built_once_while_nothing_changes(names):
    cache, builds = names
    User.objects.create(username="ada")
    assert cache.get() == ["ada"]
    assert cache.get() == ["ada"]
    assert len(builds) == 1


def test_an_update_that_skips_save_still_rebuilds_it(names):
    # given a warm cache
    cache, _builds = names
    ada = User.objects.create(username="ada")
    cache.get()
    # when a row changes through .update() (no save(), no signal, no updated_at)
    User.objects.filter(pk=ada.pk).update(username="grace")
    # then the next read sees it
    assert cache.get() == ["grace"]


def test_rows_leaving_or_joining_the_filter_rebuild_it(names):
    cache, _builds = names
    ada = User.objects.create(username="ada")
    User.objects.create(username="bob", is_active=False)
    assert cache.get() == ["ada"]
    User.objects.filter(username="bob").update(is_active=True)
    assert cache.get() == ["ada", "bob"]
    User.objects.filter(pk=ada.pk).update(is_active=False)
    assert cache.get() == ["bob"]


def test_values_moved_between_columns_are_a_change(names):
    cache, builds = names
    User.objects.create(username="ada", first_name="Ada", last_name="")
    cache.get()
    User.objects.update(first_name="", last_name="Ada")
    cache.get()
    assert len(builds) == 2


def test_a_column_it_does_not_read_leaves_it_alone(names):
    cache, builds = names
    User.objects.create(username="ada")
    cache.get()
    User.objects.update(email="ada@example.com")
    cache.get()
    assert len(builds) == 1
