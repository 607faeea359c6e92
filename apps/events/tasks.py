"""RQ entry points for events: ids in, one service call (and the waiting jobs it
takes over), nothing else."""

from apps.core import clock, jobs

from .partitions import events_partitions_ensure
from .processing import events_process

# Other requests' processing jobs a job takes over when it starts: with a queue
# forming, ten events together cost about two alone (bench/README.md, triggers).
JOIN_AT_MOST = 50


def process_events(event_ids: list[int]) -> int:
    # The events of requests whose jobs still wait join these: the busier the
    # workers, the bigger the batches, so a backlog drains instead of growing.
    joined = [
        event_id
        for (ids,) in jobs.take_waiting(
            process_events, queue="events", limit=JOIN_AT_MOST
        )
        for event_id in ids
    ]
    try:
        return events_process(event_ids=[*event_ids, *joined])
    except BaseException:
        # Their own jobs are gone: theirs go back to the queue, to be retried on
        # their own, as this job's are by RQ (processed ones are skipped).
        if joined:
            jobs.enqueue(process_events, joined, queue="events", on_commit=False)
        raise


def process_events_again(event_ids: list[int]) -> int:
    """The tick's re-enqueue: events handed out before (or never, see processing)."""
    return events_process(event_ids=event_ids, handed_out_before=True)


def ensure_event_partitions() -> int:
    """The tick found months ahead without a partition (see partitions.py)."""
    return len(events_partitions_ensure(now=clock.now()))
