"""Consent-gated tracking on the server, over real HTTP through both doors: a
browser source with a consent category stores only the events whose Segment consent
context (context.consent.categoryPreferences) sets it to true; the others get the
same answer and are counted, not kept."""

import pytest

from apps.events.models import Event, Source
from apps.events.privacy import dropped_without_consent

from .test_api import track

pytestmark = pytest.mark.django_db(transaction=True)


def consent(**preferences: bool) -> dict:
    """A context with Segment's consent object."""
    return {"consent": {"categoryPreferences": preferences}}


@pytest.fixture
def gated(browser_source):
    """The site's browser source, storing only what visitors consented to as
    Marketing; calls without a consent context are kept (the default)."""
    browser_source.consent_category = "Marketing"
    browser_source.save()
    return browser_source


def dropped(source: Source) -> int:
    return dropped_without_consent([source.pk])[source.pk]


def test_a_call_consenting_to_the_sources_category_is_stored_with_its_consent(
    api, gated
):
    # when a visitor who accepted marketing (and declined analytics) views a product
    context = consent(Marketing=True, Analytics=False)
    response = api.post("/track", json=track(context=context), auth=(gated.key, ""))
    # then it is stored as sent, consent included
    assert response.status_code == 200
    assert response.json() == {"success": True, "accepted": 1, "duplicates": 0}
    assert Event.objects.get().context["consent"] == context["consent"]
    assert dropped(gated) == 0


def test_a_call_declining_the_category_gets_the_normal_answer_and_is_only_counted(
    api, gated
):
    # when a visitor who declined marketing views a product, twice
    for _ in range(2):
        response = api.post(
            "/track",
            json=track(context=consent(Marketing=False, Analytics=True)),
            auth=(gated.key, ""),
        )
        # then the client gets a success (a Segment client would retry an error)
        assert response.status_code == 200
        assert response.json() == {"success": True, "accepted": 0, "duplicates": 0}
    # ... and nothing is stored, but the source counts both
    assert not Event.objects.exists()
    assert dropped(gated) == 2


def test_a_category_left_out_of_the_preferences_is_not_consent(api, gated):
    response = api.post(
        "/page",
        json={"anonymousId": "a-1", "context": consent(Analytics=True)},
        auth=(gated.key, ""),
    )
    assert response.status_code == 200
    assert not Event.objects.exists()
    assert dropped(gated) == 1


def test_the_category_is_matched_whatever_its_case(api, gated):
    response = api.post(
        "/track", json=track(context=consent(marketing=True)), auth=(gated.key, "")
    )
    assert response.json()["accepted"] == 1


@pytest.mark.parametrize(
    "context",
    [
        {},
        {"consent": {}},
        {"consent": None},
        {"consent": {"categoryPreferences": None}},
    ],
    ids=["no consent", "empty consent", "null consent", "null preferences"],
)
def test_a_call_without_consent_context_is_kept_by_default(api, gated, context):
    response = api.post("/track", json=track(context=context), auth=(gated.key, ""))
    assert response.json()["accepted"] == 1
    assert dropped(gated) == 0


def test_a_call_without_consent_context_is_dropped_if_the_source_says_so(api, gated):
    # given a source that stores only calls showing consent
    gated.consent_when_missing = Source.WhenConsentMissing.DROP
    gated.save()
    # when a call comes with no consent context
    response = api.post("/track", json=track(), auth=(gated.key, ""))
    # then it is answered as usual and only counted
    assert response.status_code == 200
    assert response.json()["accepted"] == 0
    assert not Event.objects.exists()
    assert dropped(gated) == 1


def test_server_key_calls_are_never_gated(api, server_source):
    # given a server source with a consent category (set outside admin, which
    # refuses one on a server source)
    server_source.consent_category = "Marketing"
    server_source.consent_when_missing = Source.WhenConsentMissing.DROP
    server_source.save()
    # when its server forwards a call declining it, and one without consent
    for context in (consent(Marketing=False), {}):
        response = api.post(
            "/track",
            json=track(anonymous_id="a-1", context=context),
            auth=(server_source.key, ""),
        )
        assert response.json()["accepted"] == 1
    # then both are stored: the server decided
    assert Event.objects.count() == 2
    assert dropped(server_source) == 0


def test_a_source_without_a_category_stores_calls_declining_anything(
    api, browser_source
):
    response = api.post(
        "/track",
        json=track(context=consent(Marketing=False)),
        auth=(browser_source.key, ""),
    )
    assert response.json()["accepted"] == 1


def test_a_batch_is_gated_event_by_event(api, gated):
    # given a source that also drops calls without consent context
    gated.consent_when_missing = Source.WhenConsentMissing.DROP
    gated.save()
    # when a batch mixes consenting, declining and silent events, under a batch
    # context that consents
    batch = [
        track("yes", context=consent(Marketing=True)),
        track("no", context=consent(Marketing=False)),
        track("batch_says_yes"),
        track("own_context_without_consent", context={"consent": None}),
        track("yes_too", context=consent(Marketing=True, Analytics=False)),
    ]
    response = api.post(
        "/batch",
        json={"batch": batch, "context": consent(Marketing=True)},
        auth=(gated.key, ""),
    )
    # then the consenting ones are stored (the batch's consent for the event
    # without its own), the rest counted
    assert response.status_code == 200
    assert response.json() == {"success": True, "accepted": 3, "duplicates": 0}
    assert set(Event.objects.values_list("name", flat=True)) == {
        "yes",
        "batch_says_yes",
        "yes_too",
    }
    assert dropped(gated) == 2


def test_a_dropped_message_sent_again_is_dropped_again(api, gated):
    # (it was never stored, so its messageId is no duplicate: each try counts)
    message = track(context=consent(Marketing=False))
    for _ in range(2):
        assert api.post("/track", json=message, auth=(gated.key, "")).json() == {
            "success": True,
            "accepted": 0,
            "duplicates": 0,
        }
    assert dropped(gated) == 2


@pytest.mark.parametrize(
    ("context", "field"),
    [
        ({"consent": "yes"}, "batch[1].context.consent"),
        (
            {"consent": {"categoryPreferences": ["Marketing"]}},
            "batch[1].context.consent.categoryPreferences",
        ),
    ],
)
def test_a_consent_context_of_the_wrong_shape_is_a_400_naming_it(
    api, gated, context, field
):
    batch = [track(context=consent(Marketing=True)), track(context=context)]
    response = api.post("/batch", json={"batch": batch}, auth=(gated.key, ""))
    assert response.status_code == 400
    assert [problem["field"] for problem in response.json()["detail"]] == [field]
    assert "must be an object" in response.json()["error"]
    assert not Event.objects.exists()
    assert dropped(gated) == 0


def test_a_single_calls_bad_consent_context_is_named_without_a_batch_index(api, gated):
    response = api.post(
        "/identify",
        json={"anonymousId": "a-1", "context": {"consent": {"categoryPreferences": 1}}},
        auth=(gated.key, ""),
    )
    assert response.status_code == 400
    assert response.json()["detail"][0]["field"] == (
        "context.consent.categoryPreferences"
    )
