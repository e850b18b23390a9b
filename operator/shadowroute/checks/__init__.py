"""Acceptance checks (issue 13), the pure groundwork: not wired into the CRD, the state
machine or the reconciler yet, so nothing a user sees depends on it.

A check is a test the new version must pass at a hook of its rollout (before it gets
any traffic, at each canary step, before promotion, after promotion while the old
version is still warm): an http request judged against expectations, or a Job from a
template. Everything here is pure (no I/O, no clock: the caller passes ``now``):

- `spec`: what a check is (frozen dataclasses, deliberately not part of
  ``ShadowRouteSpec`` until the CRD grows the field);
- `http`: `http.judge`, an answer (or its absence) against an http check's expectations;
- `ledger`: what status records per check and revision, and `ledger.next_step`, the
  restart-safe decision of what to do next;
- `job`: `job.render_job`, the owned batch/v1 Job of one attempt of a job check.

Imported by module (``from shadowroute.checks import ledger``), like `compare`.
"""
