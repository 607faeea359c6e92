"""The workflow most report tests read: a send, a wait, an A/B split with a holdout,
and an offer on each side. The clock stands at START, where the data is built: the
report's daily series runs up to the clock's today, never the real one."""

import pytest

from apps.workflows.models import Workflow

from .data import SPLIT_THEN_OFFER


@pytest.fixture(autouse=True)
def _report_clock(frozen_clock):
    yield


@pytest.fixture
def workflow(make_workflow) -> Workflow:
    return make_workflow("Welcome series", **SPLIT_THEN_OFFER)
