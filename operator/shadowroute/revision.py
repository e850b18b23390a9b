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


IMAGES_LIMIT = 200
"""status.stableImage, canaryImage and a history entry's images: at most this many
characters (a long list of containers ends in `…`)."""
CHANGES_LIMIT = 256
"""status.canaryChanges and a history entry's changes: at most this many characters."""
_DIGEST_SHOWN = 12


def _bounded(parts: list[str], limit: int, sep: str) -> str:
    text = sep.join(parts)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def short_image(image: str) -> str:
    """An image as people name it: without the registry host (`ghcr.io/acme/web:2` is
    `acme/web:2`) and with a digest cut to 12 hex digits."""
    first, _, rest = image.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        image = rest
    name, at, digest = image.partition("@")
    if at:
        algorithm, _, value = digest.partition(":")
        image = f"{name}@{algorithm}:{value[:_DIGEST_SHOWN]}" if value else image
    return image


def _containers(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    spec = template.get("spec") or {}
    return {str(c.get("name")): c for c in spec.get("containers") or [] if isinstance(c, dict)}


def template_images(template: dict[str, Any] | None) -> str:
    """`app=web:2, proxy=envoy:1.31`: each container's short image, in order ("" when
    the template is unknown)."""
    if not template:
        return ""
    parts = [
        f"{n}={short_image(str(c.get('image') or '?'))}" for n, c in _containers(template).items()
    ]
    return _bounded(parts, IMAGES_LIMIT, ", ")


def _env_changed(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Names of the variables added, removed or changed (never their values: they may be
    secrets)."""

    def by_name(c: dict[str, Any]) -> dict[str, Any]:
        return {str(e.get("name")): e for e in c.get("env") or [] if isinstance(e, dict)}

    a, b = by_name(old), by_name(new)
    return sorted(n for n in a.keys() | b.keys() if a.get(n) != b.get(n))


_POD_DEFAULTS = {
    "dnsPolicy": "ClusterFirst",
    "restartPolicy": "Always",
    "schedulerName": "default-scheduler",
    "securityContext": {},
    "terminationGracePeriodSeconds": 30,
}
_CONTAINER_DEFAULTS = {
    "terminationMessagePath": "/dev/termination-log",
    "terminationMessagePolicy": "File",
    "resources": {},
}
_PROBE_DEFAULTS = {"timeoutSeconds": 1, "periodSeconds": 10, "successThreshold": 1}
_PROBES = ("livenessProbe", "readinessProbe", "startupProbe")


def _drop(obj: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k not in defaults or defaults[k] != v}


def _without_defaults(template: dict[str, Any]) -> dict[str, Any]:
    """The template without the values the API server fills in when they are unset: an
    older revision's template is read back from its Deployment (defaulted), the new one
    comes from the spec (not), and a default is no change."""
    spec = _drop(dict(template.get("spec") or {}), _POD_DEFAULTS)
    for key in ("containers", "initContainers"):
        if isinstance(spec.get(key), list):
            spec[key] = [_container_without_defaults(c) for c in spec[key]]
    return {**template, "spec": spec}


def _container_without_defaults(c: Any) -> Any:
    if not isinstance(c, dict):
        return c
    c = _drop(c, _CONTAINER_DEFAULTS)
    if c.get("imagePullPolicy") in ("IfNotPresent", "Always"):
        c.pop("imagePullPolicy")  # the default for its tag either way
    if isinstance(c.get("ports"), list):
        c["ports"] = [
            _drop(port, {"protocol": "TCP"}) if isinstance(port, dict) else port
            for port in c["ports"]
        ]
    for probe in _PROBES:
        if isinstance(c.get(probe), dict):
            failures = {"failureThreshold": 3}
            c[probe] = _drop(c[probe], {**_PROBE_DEFAULTS, **failures})
            http = c[probe].get("httpGet")
            if isinstance(http, dict):
                c[probe]["httpGet"] = _drop(http, {"scheme": "HTTP"})
    return c


def template_changes(old: dict[str, Any] | None, new: dict[str, Any] | None) -> str:
    """What changed from one pod template to the next, at the top level and per
    container: `image app: web:1 → web:2; env FOO changed; app: resources changed;
    spec.nodeSelector changed` ("" when either is unknown or nothing changed). Values
    the API server fills in by default are no change."""
    if not old or not new:
        return ""
    old, new = _without_defaults(old), _without_defaults(new)
    parts: list[str] = []
    for key in ("labels", "annotations"):
        if (old.get("metadata") or {}).get(key) != (new.get("metadata") or {}).get(key):
            parts.append(f"{key} changed")
    was, now = _containers(old), _containers(new)
    for name in [n for n in was if n not in now]:
        parts.append(f"container {name} removed")
    for name, c in now.items():
        if name not in was:
            parts.append(f"container {name} added ({short_image(str(c.get('image') or '?'))})")
            continue
        before = was[name]
        if before.get("image") != c.get("image"):
            parts.append(
                f"image {name}: {short_image(str(before.get('image')))} → "
                f"{short_image(str(c.get('image')))}"
            )
        changed_env = _env_changed(before, c)
        if changed_env:
            parts.append(f"env {', '.join(changed_env)} changed")
        others = sorted(
            k
            for k in before.keys() | c.keys()
            if k not in ("name", "image", "env") and before.get(k) != c.get(k)
        )
        if others:
            parts.append(f"{name}: {', '.join(others)} changed")
    old_spec, new_spec = old.get("spec") or {}, new.get("spec") or {}
    for key in sorted(k for k in old_spec.keys() | new_spec.keys() if k != "containers"):
        if old_spec.get(key) != new_spec.get(key):
            parts.append(f"spec.{key} changed")
    return _bounded(parts, CHANGES_LIMIT, "; ")
