"""Acceptance checks, the pure part the state machine reasons with: what a check is
(`spec`, built from the resource's models) and what ``.status`` records of it, with the
restart-safe decision of what to do next (`ledger.next_step`).

Below `rollout` in the layers, so the machine decides on checks itself; the shell that
sends an http check's request or creates a Job check's Job is `checks` (above it).
Imported by module (``from shadowroute.acceptance import ledger``).
"""
