"""A send step may name a topic (its email then goes only to the topic's
subscribers, and its one-click leaves the topic) or be transactional (sent without
marketing consent, labelled so, never to a bounced address)."""

import pytest

from apps.campaigns.models import Message, Topic
from apps.campaigns.services import contact_set_consent
from apps.campaigns.topics import topic_set
from apps.contacts.consent import ConsentProof, Source
from apps.contacts.models import ConsentRecord
from apps.contacts.suppression import address_suppress
from apps.workflows.definition import validate_definition
from apps.workflows.models import StepRun
from apps.workflows.services import enrollment_start
from apps.workflows.steps import STEP_TYPES

pytestmark = pytest.mark.django_db
# Where these tests' consent changes come from, for their records.
TEST_PROOF = ConsentProof(source=Source.SYSTEM, who="test")


RECEIPT_TRIGGER = {"type": "event", "event": "order_completed"}


def _send(trigger=None, **config):
    return dict(
        trigger=trigger or {"type": "manual"},
        steps=[
            {
                "key": "send",
                "type": "send_email",
                "config": {"template": "Cart reminder", **config},
            }
        ],
    )


@pytest.fixture
def offers(db):
    return Topic.objects.create(name="Offers", slug="offers")  # opt-in


def test_an_unknown_topic_is_refused_by_validation_with_its_name(templates, offers):
    errors = validate_definition(_send(topic="ofers"))
    assert any("no topic 'ofers' (topics: offers)" in e for e in errors)
    assert not validate_definition(_send(topic="offers"))
    both = validate_definition(_send(topic="offers", transactional=True))
    assert any("a transactional send has no topic" in e for e in both)
    assert validate_definition(_send(transactional="yes"))


def test_a_topic_send_reaches_subscribers_only_and_carries_the_topic(
    make_workflow, customer, settle, outbox, offers
):
    # given one contact who joined offers and one who did not
    workflow = make_workflow("Offers", **_send(topic="offers"))
    joined, other = customer("joined"), customer("other")
    topic_set(
        contact=joined,
        topic=offers,
        subscribed=True,
        proof=ConsentProof(source=Source.API_SERVER),
    )
    # when both run through the step
    enrollment_start(workflow=workflow, contact=joined)
    enrollment_start(workflow=workflow, contact=other)
    settle()
    # then only the subscriber got it, for the topic
    message = Message.objects.get()
    assert (message.contact_id, message.topic_id) == (joined.pk, offers.pk)
    assert [m.to for m in outbox] == [["joined@example.com"]]
    skipped = StepRun.objects.get(enrollment__contact=other)
    assert skipped.outcome == "skipped"
    assert "not subscribed to the topic “Offers”" in str(skipped.detail)
    assert not ConsentRecord.objects.exclude(contact=joined).exists()


def test_a_transactional_send_goes_to_an_unsubscribed_contact_but_not_a_bounced_one(
    make_workflow, customer, settle, outbox
):
    workflow = make_workflow(
        "Receipt", **_send(trigger=RECEIPT_TRIGGER, transactional=True)
    )
    unsubscribed, bounced = customer("unsub"), customer("bounced")
    contact_set_consent(
        contact=unsubscribed, status="unsubscribed", reason="test", proof=TEST_PROOF
    )
    contact_set_consent(
        contact=bounced, status="bounced", reason="test", proof=TEST_PROOF
    )
    address_suppress(email="bounced@example.com", reason="bounced")
    enrollment_start(workflow=workflow, contact=unsubscribed)
    enrollment_start(workflow=workflow, contact=bounced)
    settle()
    message = Message.objects.get()
    assert message.contact_id == unsubscribed.pk
    assert message.kind == Message.Kind.TRANSACTIONAL
    assert message.status == Message.Status.SENT
    assert [m.to for m in outbox] == [["unsub@example.com"]]


def test_a_transactional_step_says_so_in_its_description():
    text = STEP_TYPES["send_email"].describe(
        {"template": "Receipt", "transactional": True}
    )
    assert "transactional: sent without marketing consent" in text


def test_the_step_editor_is_offered_the_topics(admin_client, offers):
    from django.urls import reverse

    data = admin_client.get(
        reverse("admin:workflows_workflow_editor_vocabulary")
    ).json()
    assert data["topics"] == [{"slug": "offers", "name": "Offers"}]


def test_only_an_event_triggered_workflow_may_send_transactional_email(templates):
    # a receipt answers its order; a list or a schedule would be marketing
    errors = validate_definition(_send(transactional=True))
    assert any("only an event-triggered workflow" in e for e in errors)
    schedule = {"type": "schedule", "cron": "0 9 * * *"}
    assert validate_definition(_send(trigger=schedule, transactional=True))
    assert not validate_definition(_send(trigger=RECEIPT_TRIGGER, transactional=True))


def test_a_topic_gone_since_the_workflow_was_saved_fails_the_step_and_sends_nothing(
    make_workflow, customer, settle, outbox, offers
):
    # given a workflow sending for "offers", whose topic is then renamed away
    workflow = make_workflow("Offers", **_send(topic="offers"))
    Topic.objects.filter(pk=offers.pk).update(slug="deals")
    # when a contact who never joined runs through it
    enrollment_start(workflow=workflow, contact=customer("never"))
    settle()
    # then nothing went (it would have gone to everyone, without the topic)
    assert outbox == [] and not Message.objects.exists()
    run = StepRun.objects.get(step_key="send")
    assert run.outcome == "failed"
    assert "no topic 'offers'" in str(run.detail)
