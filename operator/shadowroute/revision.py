"""Revisions: a short, stable hash of a pod template.

The same template always gives the same revision, whatever the key order, so a
revision names a version of the service across restarts of the operator.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

REVISION_LENGTH = 10


def template_revision(template: dict[str, Any]) -> str:
    """The revision of a pod template: the first 10 hex digits of a SHA-256 of its
    canonical JSON (sorted keys, no whitespace)."""
    canonical = json.dumps(template, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:REVISION_LENGTH]
