"""Exit codes of `kubectl shadowroute`, one meaning each, for scripts and CI
(docs/operations.md has the table)."""

OK = 0
ERROR = 1
"""The cluster could not be reached, refused the request (forbidden, unauthorized), or
answered with an error."""
USAGE = 2
"""Bad arguments, an unreadable file, or a manifest the models or the API server refuse."""
NOT_FOUND = 3
"""The ShadowRoute, or the namespace named, does not exist."""
REFUSED = 4
"""The gate does nothing in the current phase (--force writes it anyway)."""
ROLLED_BACK = 5
"""`status --watch` saw the rollout end in RolledBack or Failed."""
TIMEOUT = 6
"""`status --watch --timeout` or a gate's `--wait` ran out of time."""
CHANGES = 7
"""`plan --exit-code`: applying the manifest would change something."""

ALL = {
    OK: "success",
    ERROR: "error talking to the cluster (unreachable, forbidden, unauthorized, API error)",
    USAGE: "bad usage, unreadable file, or a manifest the models or the API server refuse",
    NOT_FOUND: "the ShadowRoute, or the namespace named, does not exist",
    REFUSED: "the gate does nothing in the current phase (use --force to write it anyway)",
    ROLLED_BACK: "status --watch: the rollout ended RolledBack or Failed",
    TIMEOUT: "status --watch --timeout, or --wait of a gate, ran out of time",
    CHANGES: "plan --exit-code: applying would change something",
}
