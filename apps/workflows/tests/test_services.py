"""Writes for workflows: status changes, enrolling, merging."""

import pytest

from apps.workflows.models import Enrollment, TriggerDecision, Workflow
from apps.workflows.services import enrollment_start, workflow_pause

pytestmark = pytest.mark.django_db

WAIT_A_DAY = [{"key": "hold", "type": "wait", "config": {"duration": {"days": 1}}}]


def test_a_stale_copy_of_a_paused_workflow_enrolls_nobody(
    make_workflow, customer, frozen_clock
):
    # given a worker's copy of a workflow, loaded while it was active
    workflow = make_workflow("Carts", trigger={"type": "manual"}, steps=WAIT_A_DAY)
    stale = Workflow.objects.select_related("current_version").get(pk=workflow.pk)

    # when the workflow is paused elsewhere and the stale copy enrolls
    workflow_pause(workflow=workflow)
    enrollment, reason = enrollment_start(workflow=stale, contact=customer("late"))

    # then the database's status wins
    assert (enrollment, reason) == (None, "workflow is paused")
    assert not Enrollment.objects.exists()
    assert not TriggerDecision.objects.exists()  # no trigger event to record it for
