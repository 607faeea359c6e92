import csv
import datetime as dt
import io
import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from apps.segments.models import ScoringRule, Segment, SegmentMembership

pytestmark = pytest.mark.django_db


def test_the_preview_counts_samples_and_describes_an_unsaved_condition(
    admin_client, make_contact
):
    pro = make_contact(email="ada@example.com", attributes={"plan": "pro"})
    make_contact(email="bob@example.com", attributes={"plan": "free"})
    condition = {
        "version": 1,
        "all": [{"attribute": "plan", "op": "eq", "value": "pro"}],
    }
    data = admin_client.post(
        "/admin/segments/segment/preview/",
        json.dumps(condition),
        content_type="application/json",
    ).json()
    assert data["valid"] and data["count"] == 1
    assert data["sentence"] == "Plan is “pro”"
    assert data["sample"][0]["id"] == pro.pk


def test_the_preview_points_at_errors(admin_client):
    condition = {"all": [{"attribute": "plan", "op": "eqq", "value": "pro"}]}
    data = admin_client.post(
        "/admin/segments/segment/preview/",
        json.dumps(condition),
        content_type="application/json",
    ).json()
    assert data == {
        "valid": False,
        "errors": ["all[0].op: unknown operator 'eqq'"],
        "sentence": "Plan eqq “pro”",
    }


def _preview(admin_client, body: str):
    return admin_client.post(
        "/admin/segments/segment/preview/", body, content_type="application/json"
    )


@pytest.mark.parametrize(
    "condition,error",
    [
        ({"segment": "text"}, "condition.segment: a segment id is required"),
        ({"not": {"segment": "text"}}, "not.segment: a segment id is required"),
        ({"segment": 2**70}, "condition.segment: a segment id is required"),
        (
            {"all": [{"attribute": "plan", "op": "eq", "value": "pro\x00"}]},
            "all[0]: text may not contain a NUL character",
        ),
        (
            {"all": [{"attribute": "plan", "op": "in", "value": ["a", "\x00"]}]},
            "all[0]: text may not contain a NUL character",
        ),
        (
            {"any": [{"event": "cart\x00", "op": "performed"}]},
            "any[0]: text may not contain a NUL character",
        ),
        ([1], "condition: a condition is a JSON object"),
        ("text", "condition: a condition is a JSON object"),
    ],
)
def test_the_preview_points_at_a_bad_value_instead_of_failing(
    admin_client, make_contact, condition, error
):
    # given a contact to count, and a condition a hand or a fuzzer wrote
    make_contact(email="ada@example.com", attributes={"plan": "pro"})
    # when
    response = _preview(admin_client, json.dumps(condition))
    # then
    assert response.status_code == 200
    data = response.json()
    assert data["valid"] is False
    assert any(e.startswith(error) for e in data["errors"]), data["errors"]


def test_the_preview_refuses_json_nested_too_deep_to_read(admin_client):
    response = _preview(admin_client, "[" * 100_000 + "]" * 100_000)
    assert response.status_code == 400
    assert response.json()["errors"] == ["not JSON"]


def test_saving_a_condition_with_a_nul_character_is_refused(admin_client):
    condition = {"all": [{"attribute": "plan", "op": "eq", "value": "pro\x00"}]}
    response = admin_client.post(
        "/admin/segments/segment/add/",
        {
            "name": "Nul",
            "kind": "dynamic",
            "refresh_minutes": 15,
            "condition": json.dumps(condition),
            "refreshes-TOTAL_FORMS": 0,
            "refreshes-INITIAL_FORMS": 0,
        },
    )
    assert response.status_code == 200
    assert "text may not contain a NUL character" in response.content.decode()
    assert not Segment.objects.exists()


def test_saving_an_invalid_condition_is_refused_with_the_path(admin_client):
    response = admin_client.post(
        "/admin/segments/segment/add/",
        {
            "name": "Broken",
            "kind": "dynamic",
            "refresh_minutes": 15,
            "condition": json.dumps(
                {"all": [{"event": "x", "count": {"op": "gte", "value": -1}}]}
            ),
            "refreshes-TOTAL_FORMS": 0,
            "refreshes-INITIAL_FORMS": 0,
        },
    )
    assert response.status_code == 200
    assert "all[0].count.value: a whole number, 0 or more" in response.content.decode()
    assert not Segment.objects.exists()


def test_saving_a_segment_computes_it(admin_client, make_contact, run_jobs):
    make_contact(attributes={"plan": "pro"})
    response = admin_client.post(
        "/admin/segments/segment/add/",
        {
            "name": "Pro",
            "kind": "dynamic",
            "refresh_minutes": 15,
            "condition": json.dumps(
                {
                    "version": 1,
                    "all": [{"attribute": "plan", "op": "eq", "value": "pro"}],
                }
            ),
            "refreshes-TOTAL_FORMS": 0,
            "refreshes-INITIAL_FORMS": 0,
        },
    )
    assert response.status_code == 302
    run_jobs()
    segment = Segment.objects.get()
    assert segment.member_count == 1
    listing = admin_client.get("/admin/segments/segment/").content.decode()
    assert "Plan is “pro”" in listing


def test_members_export_as_csv_with_formulas_defused(admin_client, make_contact):
    segment = Segment.objects.create(name="List", kind=Segment.Kind.STATIC)
    contact = make_contact(email="ada@example.com", first_name="=HYPERLINK(1)")
    SegmentMembership.objects.create(
        segment=segment, contact=contact, entered_at=dt.datetime.now(dt.UTC)
    )
    response = admin_client.get(f"/admin/segments/segment/{segment.pk}/export/")
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[0][:3] == ["contact_id", "email", "user_id"]
    assert rows[1][1] == "ada@example.com"
    assert rows[1][3] == "'=HYPERLINK(1)"


def test_uploading_a_csv_in_admin_reports_unmatched_rows(admin_client, make_contact):
    segment = Segment.objects.create(name="List", kind=Segment.Kind.STATIC)
    make_contact(email="ada@example.com")
    upload = SimpleUploadedFile("list.csv", b"ada@example.com\nghost@example.com\n")
    response = admin_client.post(
        f"/admin/segments/segment/{segment.pk}/upload/",
        {"file": upload, "action": "add"},
    )
    page = response.content.decode()
    assert "ghost@example.com" in page
    assert segment.memberships.count() == 1


def test_contacts_can_be_added_to_a_static_list_from_the_contact_list(
    admin_client, make_contact
):
    segment = Segment.objects.create(name="List", kind=Segment.Kind.STATIC)
    a, b = make_contact(email="a@example.com"), make_contact(email="b@example.com")
    response = admin_client.post(
        "/admin/contacts/contact/",
        {
            "action": "add_to_static_list",
            "_selected_action": [a.pk, b.pk],
            "apply": "1",
            "segment": segment.pk,
            "operation": "add",
        },
        follow=True,
    )
    assert response.status_code == 200
    assert segment.memberships.filter(exited_at__isnull=True).count() == 2


def test_a_scoring_rule_with_bad_filters_is_refused(admin_client):
    response = admin_client.post(
        "/admin/segments/scoringrule/add/",
        {
            "name": "x",
            "event_name": "viewed",
            "points": 5,
            "active": "on",
            "filters": json.dumps([{"property": "price", "op": "bigger", "value": 3}]),
        },
    )
    assert "filters[0].op: unknown operator" in response.content.decode()
    assert not ScoringRule.objects.exists()
