"""The OpenAPI schema at /api/v1/openapi.json says what the API does (issue 13,
item 16); scripts/api_fuzz.py holds the live API to it."""

import base64

import jsonschema_rs
import pytest

from apps.contacts.models import Contact

pytestmark = pytest.mark.django_db

REFUSALS = {"400", "401", "403", "413", "429"}


@pytest.fixture
def openapi(client):
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    return response.json()


def basic(key: str) -> str:
    return "Basic " + base64.b64encode(f"{key}:".encode()).decode()


def valid(openapi: dict, model: str, instance: dict) -> bool:
    """Whether the schema of ``model`` takes ``instance``."""
    schema = {
        "$ref": f"#/components/schemas/{model}",
        "components": openapi["components"],
    }
    return jsonschema_rs.validator_for(schema).is_valid(instance)


def test_ids_sent_as_numbers_are_in_the_schema_as_the_api_takes_them(
    openapi, client, server_source
):
    # given calls with numeric ids, as Segment's server libraries send them
    calls = {
        "Track": {"event": "x", "userId": 12345, "anonymousId": 7},
        "Group": {"userId": 1, "groupId": 42},
        "Alias": {"userId": 12345, "previousId": 99.5},
    }
    for model, call in calls.items():
        # then the schema takes them
        assert valid(openapi, model, call), model
        # and so does the API
        response = client.post(
            f"/api/v1/{model.lower()}",
            call,
            content_type="application/json",
            HTTP_AUTHORIZATION=basic(server_source.key),
        )
        assert response.status_code == 200, (model, response.content)
    assert Contact.objects.filter(external_id="12345").exists()
    # and neither takes a boolean
    assert not valid(openapi, "Track", {"event": "x", "userId": True})


@pytest.mark.parametrize("model", ["Track", "Identify", "Page", "Screen", "Group"])
def test_the_schema_says_userid_or_anonymousid_is_required(openapi, model):
    call = {"event": "x", "groupId": "g"}
    assert not valid(openapi, model, call)
    assert not valid(openapi, model, {**call, "userId": None, "anonymousId": " "})
    assert valid(openapi, model, {**call, "anonymousId": "a"})
    assert valid(openapi, model, {**call, "userId": "u"})
    assert (
        "userId or anonymousId"
        in openapi["components"]["schemas"][model]["description"]
    )


def test_every_operation_documents_its_refusals_and_their_body(openapi):
    problem = {"$ref": "#/components/schemas/Problem"}
    for path, operations in openapi["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            assert set(responses) >= REFUSALS, (method, path)
            for status in REFUSALS:
                body = responses[status]["content"]["application/json"]["schema"]
                assert body == problem, (method, path, status)
            # and how to authenticate
            (scheme,) = operation["security"][0]
            assert openapi["components"]["securitySchemes"][scheme]["scheme"] == (
                "basic"
            )


def test_the_schema_bounds_client_times_as_the_api_does(openapi):
    call = {"event": "x", "anonymousId": "a"}
    assert valid(openapi, "Track", {**call, "timestamp": "2026-03-01T12:00:00Z"})
    assert not valid(openapi, "Track", {**call, "timestamp": "1969-12-31T23:59:59Z"})
    assert not valid(openapi, "Track", {**call, "sentAt": "2200-01-01T00:00:00Z"})
    description = openapi["components"]["schemas"]["Track"]["properties"]["sentAt"]
    assert "+15:59" in str(description)
