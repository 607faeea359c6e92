"""RQ entry points for events: ids in, one service call, nothing else."""

from .processing import events_process


def process_events(event_ids: list[int]) -> int:
    return events_process(event_ids=event_ids)
