"""Ingestion as a service: duplicates, known and new visitors, concurrent calls."""

import threading
import time
import uuid

import django_rq
import pytest
from django.db import connections

from apps.contacts.models import Contact, Identity
from apps.events.ingestion import events_ingest
from apps.events.models import Event
from apps.events.schemas import Identify, Track

pytestmark = pytest.mark.django_db(transaction=True)


def _track(anonymous_id=None, user_id=None, event="product_viewed", **extra):
    return Track(
        anonymousId=anonymous_id,
        userId=user_id,
        event=event,
        messageId=str(uuid.uuid4()),
        **extra,
    )


def _jobs() -> int:
    return django_rq.get_queue("events").count


def test_a_known_visitors_call_stores_its_event_with_one_job(browser_source):
    # given a visitor seen before
    events_ingest(source=browser_source, messages=[_track("cookie-1")])
    contact = Contact.objects.get()
    # when they send two more events
    result = events_ingest(
        source=browser_source, messages=[_track("cookie-1"), _track("cookie-1")]
    )
    # then both are stored on their contact, with one more job carrying both ids
    assert (result.accepted, result.duplicates) == (2, 0)
    assert Contact.objects.get() == contact
    assert set(
        Event.objects.filter(pk__in=result.event_ids).values_list("contact", flat=True)
    ) == {contact.pk}
    assert _jobs() == 2
    assert django_rq.get_queue("events").jobs[-1].args == (result.event_ids,)


def test_duplicates_in_a_call_that_writes_change_nothing(server_source):
    # given a stored identify
    stored = Identify(userId="u-1", traits={"plan": "free"}, messageId="m-1")
    events_ingest(source=server_source, messages=[stored])
    # when it comes again, with other traits, in a batch that also brings someone new
    again = Identify(userId="u-1", traits={"plan": "pro"}, messageId="m-1")
    result = events_ingest(
        source=server_source, messages=[again, _track("new-visitor")]
    )
    # then the new event is stored and the repeat changed nothing
    assert (result.accepted, result.duplicates) == (1, 1)
    assert Contact.objects.get(external_id="u-1").attributes == {"plan": "free"}
    assert Identity.objects.filter(anonymous_id="new-visitor").exists()
    assert Event.objects.count() == 2
    assert _jobs() == 2


def test_a_call_that_is_all_duplicates_stores_and_enqueues_nothing(browser_source):
    messages = [_track("cookie-1"), _track("cookie-2")]
    events_ingest(source=browser_source, messages=messages)
    result = events_ingest(source=browser_source, messages=messages)
    assert (result.accepted, result.duplicates) == (0, 2)
    assert Event.objects.count() == 2
    assert _jobs() == 1


def test_a_batch_finds_each_known_person_by_user_id_and_email(server_source):
    # given three known people
    for n in (1, 2, 3):
        events_ingest(
            source=server_source,
            messages=[
                Identify(
                    userId=f"u-{n}",
                    traits={"email": f"p{n}@example.com"},
                    messageId=str(uuid.uuid4()),
                )
            ],
        )
    people = {c.external_id: c.pk for c in Contact.objects.all()}
    # when a batch names them by user id, and by email (upper-cased) on identify
    result = events_ingest(
        source=server_source,
        messages=[
            _track(user_id="u-1"),
            _track(user_id="u-2"),
            Identify(traits={"email": "P3@EXAMPLE.COM"}, anonymousId="cookie-3"),
            _track(user_id="u-3"),
        ],
    )
    # then each event is on that person's contact and no one new was made
    contacts = list(
        Event.objects.filter(pk__in=result.event_ids)
        .order_by("pk")
        .values_list("contact_id", flat=True)
    )
    assert contacts == [people["u-1"], people["u-2"], people["u-3"], people["u-3"]]
    assert Contact.objects.count() == 3
    assert Identity.objects.get(anonymous_id="cookie-3").contact_id == people["u-3"]


def test_concurrent_calls_about_the_same_new_visitors_all_succeed(
    require_postgres, browser_source
):
    # given four requests at a time, each naming the same five new visitors
    rounds, senders = 3, 4
    errors: list[BaseException] = []
    together = threading.Barrier(senders)

    def send() -> None:
        try:
            for round_ in range(rounds):
                together.wait()
                events_ingest(
                    source=browser_source,
                    messages=[_track(f"visitor-{round_}-{n}") for n in range(5)],
                )
        except BaseException as exc:  # the test reports it below
            errors.append(exc)
            together.abort()
        finally:
            connections.close_all()

    threads = [threading.Thread(target=send) for _ in range(senders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # then none failed, each visitor is one contact, and every event is stored
    assert errors == []
    assert Contact.objects.count() == rounds * 5
    assert Identity.objects.count() == rounds * 5
    assert Event.objects.count() == senders * rounds * 5


def test_deleting_a_source_keeps_its_events_without_it(browser_source):
    # events.source has no database constraint (one check less per row ingested):
    # Django still sets the events' source to NULL when a source is deleted.
    events_ingest(source=browser_source, messages=[_track("gone-1")])
    event = Event.objects.get(name="product_viewed")
    browser_source.delete()
    event.refresh_from_db()
    assert event.source is None
    assert Event.objects.filter(name="product_viewed").count() == 1


def _held_rounds(monkeypatch, *, others: int, meanwhile=lambda: None):
    """Group commit with its first round held until ``others`` calls wait behind it
    (then ``meanwhile()`` runs): those others share the second round."""
    from apps.core.group_commit import GroupCommit
    from apps.events import ingestion

    rounds: list[int] = []
    started = threading.Event()
    group: GroupCommit = GroupCommit(lambda writes: flush(writes))

    def flush(writes):
        rounds.append(len(writes))
        if len(rounds) == 1:
            started.set()
            deadline = time.monotonic() + 10
            while len(group._waiting) < others and time.monotonic() < deadline:
                threading.Event().wait(0.005)
            meanwhile()
        ingestion._write_round(writes)

    monkeypatch.setattr(ingestion, "_known_senders", group)
    return rounds, started


def _ingest_while_held(source, calls, started):
    """events_ingest each call on its own thread (and connection): the first alone,
    the others once its round has started. Their results, by position."""
    results: dict[int, object] = {}

    def run(n, messages):
        try:
            results[n] = events_ingest(source=source, messages=messages)
        except BaseException as exc:  # the test looks at it
            results[n] = exc
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(n, c)) for n, c in enumerate(calls)]
    threads[0].start()
    assert started.wait(10)
    for t in threads[1:]:
        t.start()
    for t in threads:
        t.join(10)
    return results


def test_known_visitors_calls_arriving_together_share_one_insert_each_with_its_ids(
    require_postgres, server_source, monkeypatch
):
    # given five known people
    for n in range(5):
        events_ingest(source=server_source, messages=[_track(user_id=f"u-{n}")])
    people = dict(Contact.objects.values_list("external_id", "id"))
    jobs_before = _jobs()
    rounds, started = _held_rounds(monkeypatch, others=4)
    repeated = _track(user_id="u-3")
    calls = [
        [_track(user_id="u-0"), _track(user_id="u-0")],
        [_track(user_id="u-1"), _track(user_id="u-1")],
        [_track(user_id="u-2"), _track(user_id="u-2")],
        [repeated, _track(user_id="u-3")],
        [repeated, _track(user_id="u-4")],  # one messageId the call above has too
    ]
    # when they arrive while a first call is being written
    results = _ingest_while_held(server_source, calls, started)
    # then the four others went as one round, and each call got its own answer
    assert rounds == [1, 4]
    for n, result in results.items():
        assert not isinstance(result, BaseException), result
        contacts = set(
            Event.objects.filter(pk__in=result.event_ids).values_list(
                "contact_id", flat=True
            )
        )
        # (the message both 3 and 4 carry is u-3's, and the first of them to
        # arrive stores it)
        assert contacts <= {people[f"u-{n}"], people["u-3"]}
        assert people[f"u-{n}"] in contacts
    # the shared message is stored once: one of the two calls got it
    assert sorted((results[3].accepted, results[4].accepted)) == [1, 2]
    assert results[3].duplicates + results[4].duplicates == 1
    assert Event.objects.filter(message_id=repeated.messageId).count() == 1
    assert Event.objects.count() == 5 + 9
    assert _jobs() == jobs_before + 5  # still one job per call


def test_a_round_that_fails_is_written_call_by_call_and_only_the_culprit_retries(
    require_postgres, server_source, monkeypatch
):
    # given known people, one of whom is deleted while their call waits for a round
    for n in range(4):
        events_ingest(source=server_source, messages=[_track(user_id=f"u-{n}")])
    doomed = Contact.objects.get(external_id="u-2")
    rounds, started = _held_rounds(
        monkeypatch,
        others=3,
        meanwhile=lambda: Contact.objects.filter(pk=doomed.pk).delete(),
    )
    calls = [[_track(user_id=f"u-{n}", event=f"e-{n}")] for n in range(4)]
    results = _ingest_while_held(server_source, calls, started)
    # then every call is stored: the round's INSERT failed on the deleted contact,
    # each call went again alone, and u-2's looked again and made a new contact
    assert rounds == [1, 3]
    assert all(r.accepted == 1 for r in results.values()), results
    assert Event.objects.filter(name__startswith="e-").count() == 4
    again = Contact.objects.get(external_id="u-2")
    assert again.pk != doomed.pk
    assert Event.objects.get(name="e-2").contact_id == again.pk
