"""RQ entry points for events: ids in, one service call, nothing else."""

from .processing import events_process


def process_events(event_ids: list[int]) -> int:
    return events_process(event_ids=event_ids)


def process_events_again(event_ids: list[int]) -> int:
    """The tick's re-enqueue: events handed out before (or never, see processing)."""
    return events_process(event_ids=event_ids, handed_out_before=True)
