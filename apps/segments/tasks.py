"""RQ entry points for segments: ids in, one service call, nothing else."""

from .models import Segment
from .services import segment_refresh_full


def refresh_segment(segment_id: int) -> None:
    segment = Segment.objects.filter(pk=segment_id, kind=Segment.Kind.DYNAMIC).first()
    if segment is not None:
        segment_refresh_full(segment=segment)
