"""The workflow most report tests read: a send, a wait, an A/B split with a holdout,
and an offer on each side."""

import pytest

from apps.workflows.models import Workflow

from .data import SPLIT_THEN_OFFER


@pytest.fixture
def workflow(make_workflow) -> Workflow:
    return make_workflow("Welcome series", **SPLIT_THEN_OFFER)
