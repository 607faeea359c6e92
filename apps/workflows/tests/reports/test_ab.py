"""A/B: contacts and conversions per variant, and the statistics that compare them."""

import pytest

from apps.workflows.reports import (
    Variant,
    compare_largest,
    two_proportion_z_test,
    workflow_report,
)

from .data import AB_SEND, S, enroll, ran, sent, through

pytestmark = pytest.mark.django_db


# -- A/B --------------------------------------------------------------------------------


def test_a_split_counts_contacts_and_conversions_per_variant(workflow):
    # given
    for variant, status in [
        ("A", S.CONVERTED),
        ("A", S.COMPLETED),
        ("A", S.COMPLETED),
        ("B", S.CONVERTED),
        ("B", S.CONVERTED),
        ("holdout", S.COMPLETED),
    ]:
        enrollment = through(workflow, ["welcome", "pause"], status=status)
        ran(enrollment, "split", outcome=variant)
    # a goal reached while at the split is logged there, but is no variant
    ran(enrollment, "split", outcome="converted")
    # when
    report = workflow_report(workflow=workflow)
    # then
    (split,) = report.experiments
    assert (split.step_key, split.kind) == ("split", "split")
    assert [(v.name, v.enrollments, v.conversions) for v in split.variants] == [
        ("A", 3, 1),
        ("B", 2, 2),
        ("holdout", 1, 0),
    ]
    assert split.variants[1].percent == 100
    assert (split.comparison.a.name, split.comparison.b.name) == ("A", "B")
    assert split.comparison.verdict == "too few contacts to tell (n < 30 per variant)"


def test_an_ab_send_counts_contacts_and_conversions_per_template(make_workflow):
    # given
    workflow = make_workflow("Tips", **AB_SEND)
    for template, status in [
        ("Tips", S.CONVERTED),
        ("Tips", S.COMPLETED),
        ("Nudge", S.COMPLETED),
    ]:
        enrollment = enroll(workflow, status=status)
        ran(enrollment, "tips", outcome="sent", template=template, variant=template)
        sent(enrollment, "tips", template, render_context={"variant": template})
    # a test send picks a variant too, but does not count
    test = enroll(workflow, status=S.CONVERTED, is_test=True)
    ran(test, "tips", outcome="sent", template="Nudge", variant="Nudge")
    # when
    report = workflow_report(workflow=workflow)
    # then
    (tips,) = report.experiments
    assert tips.kind == "send"
    assert [(v.name, v.enrollments, v.conversions) for v in tips.variants] == [
        ("Tips", 2, 1),
        ("Nudge", 1, 0),
    ]
    assert report.emails[0].sent == 3


def test_the_z_test_matches_a_worked_example():
    # 200 of 1000 against 250 of 1000: pooled 0.225, se 0.01867
    z, p = two_proportion_z_test(200, 1000, 250, 1000)

    assert z == pytest.approx(2.677, abs=0.001)
    assert p == pytest.approx(0.0074, abs=0.0001)
    assert two_proportion_z_test(250, 1000, 200, 1000)[0] == pytest.approx(-z)


def test_the_z_test_finds_no_evidence_where_nothing_varies():
    assert two_proportion_z_test(0, 100, 0, 100) == (0.0, 1.0)
    assert two_proportion_z_test(100, 100, 50, 50) == (0.0, 1.0)
    assert two_proportion_z_test(0, 0, 5, 10) == (0.0, 1.0)


@pytest.mark.parametrize(
    "a, b, expected",
    [
        (
            Variant("A", 600, 48),
            Variant("B", 600, 72),
            "B converts better than A (12.0% vs 8.0%, p = 0.02): likely a real difference",
        ),
        (
            Variant("A", 1000, 250),
            Variant("B", 1000, 200),
            "A converts better than B (25.0% vs 20.0%, p = 0.007): likely a real difference",
        ),
        (
            Variant("A", 200, 20),
            Variant("B", 200, 25),
            "not enough evidence yet (p = 0.43); keep the test running",
        ),
        (
            Variant("A", 29, 1),
            Variant("B", 500, 400),
            "too few contacts to tell (n < 30 per variant)",
        ),
        (
            Variant("A", 5000, 100),
            Variant("B", 5000, 200),
            "B converts better than A (4.0% vs 2.0%, p < 0.001): likely a real difference",
        ),
    ],
)
def test_the_verdict_says_what_the_numbers_mean(a, b, expected):
    assert compare_largest([a, b]).verdict == expected


def test_the_comparison_is_of_the_two_largest_variants():
    small = Variant("holdout", 40, 0)
    a, b = Variant("A", 1000, 200), Variant("B", 1000, 250)

    comparison = compare_largest([a, small, b])

    assert (comparison.a, comparison.b) == (a, b)
    assert comparison.difference == pytest.approx(0.05)
    assert comparison.p_value == pytest.approx(0.0074, abs=0.0001)
    assert compare_largest([a]) is None
