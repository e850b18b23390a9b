"""checks.job: the owned Job of one attempt of a job check."""

from __future__ import annotations

import copy

import pytest
from hypothesis import given
from hypothesis import strategies as st
from shadowroute.acceptance.spec import Check, Hook, HttpCheck, JobCheck
from shadowroute.checks.job import (
    ATTEMPT_LABEL,
    CHECK_LABEL,
    STEP_LABEL,
    job_name,
    render_job,
)
from shadowroute.names import NAME_LABEL, REVISION_LABEL, ROLE_LABEL, Owner

OWNER = Owner("shadowroute.io/v1alpha1", "ShadowRoute", "checkout", "shop", "uid-1")
TEMPLATE = {
    "metadata": {"labels": {"suite": "smoke", ROLE_LABEL: "primary"}},
    "spec": {"containers": [{"name": "t", "image": "tests:1"}], "restartPolicy": "OnFailure"},
}


def job_check(**kw: object) -> Check:
    args = {"name": "suite", "hook": Hook.BEFORE_PROMOTION, "action": JobCheck(TEMPLATE)}
    return Check(**{**args, "timeout_seconds": 90.5, "retries": 2, **kw})  # type: ignore[arg-type]


def test_the_job_is_owned_labelled_and_retried_only_by_us() -> None:
    template = copy.deepcopy(TEMPLATE)
    job = render_job(OWNER, job_check(), "abcdef0123", 2)
    assert job["apiVersion"] == "batch/v1" and job["kind"] == "Job"
    meta = job["metadata"]
    assert meta["name"] == "checkout-check-suite-abcdef01-2"
    assert meta["namespace"] == "shop" and meta["ownerReferences"][0]["uid"] == "uid-1"
    labels = meta["labels"]
    assert labels[ROLE_LABEL] == "check" and labels[CHECK_LABEL] == "suite"
    assert labels[REVISION_LABEL] == "abcdef0123" and labels[NAME_LABEL] == "checkout"
    assert labels[ATTEMPT_LABEL] == "2" and STEP_LABEL not in labels
    spec = job["spec"]
    assert spec["backoffLimit"] == 0 and spec["activeDeadlineSeconds"] == 91
    assert spec["ttlSecondsAfterFinished"] > 0
    pod = spec["template"]
    assert pod["spec"]["restartPolicy"] == "Never"
    assert pod["metadata"]["labels"]["suite"] == "smoke"
    assert pod["metadata"]["labels"][ROLE_LABEL] == "check"  # never selected as primary
    assert dict(job_check().action.template) == template  # the check's template unchanged


def test_a_step_gets_its_own_job() -> None:
    c = job_check(hook=Hook.EACH_STEP)
    job = render_job(OWNER, c, "abcdef0123", 1, step=3)
    assert job["metadata"]["name"] == "checkout-check-suite-abcdef01-3-1"
    assert job["metadata"]["labels"][STEP_LABEL] == "3"


def test_refuses_http_checks_and_attempts_out_of_budget() -> None:
    with pytest.raises(ValueError):
        render_job(OWNER, Check("h", Hook.BEFORE_TRAFFIC, HttpCheck()), "r", 1)
    with pytest.raises(ValueError):
        render_job(OWNER, job_check(), "r", 4)
    with pytest.raises(ValueError):
        render_job(OWNER, job_check(), "r", 0)


names = st.from_regex(r"[a-z]([a-z0-9-]{0,38}[a-z0-9])?", fullmatch=True)


@given(
    route=st.from_regex(r"[a-z]([a-z0-9-]{0,53}[a-z0-9])?", fullmatch=True),
    check=names,
    revision=st.from_regex(r"[0-9a-f]{10}", fullmatch=True),
    attempt=st.integers(1, 11),
    step=st.none() | st.integers(0, 19),
)
def test_names_are_deterministic_short_and_distinct(route, check, revision, attempt, step) -> None:  # type: ignore[no-untyped-def]
    name = job_name(route, check, revision, attempt, step)
    assert name == job_name(route, check, revision, attempt, step)
    assert len(name) <= 63 and not name.endswith("-")
    assert name != job_name(route, check, revision, attempt + 1, step)
    full = f"{route}-check-{check}-{revision[:8]}-" + (f"{step}-" if step is not None else "")
    if len(full) + len(str(attempt)) <= 63:
        assert name == f"{full}{attempt}"
