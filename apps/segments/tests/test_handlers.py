"""The dynamic-segment index that the events job reads."""

import pytest

from apps.segments.handlers import segment_index
from apps.segments.models import Segment

pytestmark = pytest.mark.django_db


def test_a_condition_changed_without_save_reaches_the_index():
    # given a warm index
    segment = Segment.objects.create(
        name="Buyers", condition={"event": "order_completed"}
    )
    _segment, refs = segment_index()[segment.pk]
    assert refs.event_names == {"order_completed"}
    # when its condition is changed with .update() (updated_at stays as it was)
    Segment.objects.filter(pk=segment.pk).update(condition={"event": "add_to_cart"})
    # then the index reads the new one
    _segment, refs = segment_index()[segment.pk]
    assert refs.event_names == {"add_to_cart"}


def test_a_segment_turned_static_leaves_the_index():
    segment = Segment.objects.create(name="Buyers", condition={"event": "x"})
    assert segment.pk in segment_index()
    Segment.objects.filter(pk=segment.pk).update(kind=Segment.Kind.STATIC)
    assert segment.pk not in segment_index()
