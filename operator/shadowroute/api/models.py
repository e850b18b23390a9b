"""The ShadowRoute resource as pydantic models: the single source of truth for its shape.

The CRD's OpenAPI schema, CEL rules included, is generated from these classes
(``shadowroute.api.crd``), and the operator parses what the API server hands it with
the same classes, so Python and the API server agree on what a valid ShadowRoute is.
Every CEL rule placed on a model here has a Python twin (a validator) so that a spec
built in Python is held to the same rules as one applied with kubectl. Cross-field
rules are declared once (api/rules.py) and give both forms; durations carry their
bounds the same way (api/duration.py).

Field names are snake_case in Python and camelCase on the wire (``to_k8s``).
Timestamps are RFC 3339 strings, as the API server stores them, so dumping a status
that was read gives back exactly what was read.
"""

from __future__ import annotations

import itertools
import json
import math
import re
import string
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from ..names import (
    COMPARE_ROLES,
    GROUP,
    KIND,
    PLURAL,
    ROLES,
    VERSION,
    CheckHook,
    Phase,
    Stage,
    parse_timestamp,
)
from ..revision import CHANGES_LIMIT, IMAGES_LIMIT
from .duration import DURATION_CEILING, DURATION_MAX_LENGTH, DURATION_PATTERN, DurationBounds
from .jsonpath import JSON_PATH_PATTERN, canonical_json_path
from .rules import Has, Is, Lacks, Rule, enforce, validations

API_VERSION = f"{GROUP}/{VERSION}"
LIST_KIND = "ShadowRouteList"
SINGULAR = "shadowroute"
SHORT_NAMES = ("sr",)
CATEGORIES = ("shadowroute",)
CRD_NAME = f"{PLURAL}.{GROUP}"

CHILD_SUFFIXES = tuple(f"-{role}" for role in ROLES)
MAX_NAME_LENGTH = 63 - max(len(suffix) for suffix in CHILD_SUFFIXES)
"""55: the children's Service names (``<name>-primary``) must stay DNS-1035 labels."""
MAX_COMPARED_NAME_LENGTH = 63 - max(len(f"-{role}") for role in COMPARE_ROLES)
"""52: with a shadow comparison, ``<name>-comparator`` must fit too."""

HISTORY_LIMIT = 20
MAX_CANARY_STEPS = 20
MAX_SERVICE_PORTS = 16
MAX_METRICS = 20

DNS_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_1035_LABEL_PATTERN = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"
CONDITION_REASON_PATTERN = r"^([A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?)?$"


# --------------------------------------------------------------------------- enums


class Protocol(StrEnum):
    """Transport protocol of a Service port."""

    TCP = "TCP"
    UDP = "UDP"
    SCTP = "SCTP"


class TrafficProvider(StrEnum):
    """Which data plane shifts and mirrors the traffic."""

    NONE = "none"
    GATEWAY_API = "gatewayapi"
    NGINX = "nginx"
    ISTIO = "istio"


class ConditionStatus(StrEnum):
    """Status of a condition, as in every Kubernetes API."""

    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class Verdict(StrEnum):
    """What one metric check concluded."""

    PASS = "Pass"
    FAIL = "Fail"
    INCONCLUSIVE = "Inconclusive"


class Outcome(StrEnum):
    """How a rollout of a revision ended."""

    PROMOTED = "Promoted"
    ROLLED_BACK = "RolledBack"
    CANCELLED = "Cancelled"
    SUPERSEDED = "Superseded"


# --------------------------------------------------------------------------- scalar types


def format_timestamp(moment: datetime) -> str:
    """The API server's spelling of a moment, to the second: "2026-11-25T05:00:00Z"."""
    if moment.tzinfo is None:
        raise ValueError("refusing a naive datetime: the operator's clock is UTC-aware")
    return moment.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _check_timestamp(text: str) -> str:
    parse_timestamp(text)
    return text


def _finite_or_none(value: Any) -> Any:
    """NaN and infinities cannot be written as JSON: store them as absent."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _refuse_bool(value: Any) -> Any:
    """YAML's `yes` is not port 1: pydantic would otherwise coerce a bool to an int."""
    if isinstance(value, bool):
        raise ValueError("must be a port number or a port name, not a boolean")
    return value


def _check_target_port(value: int | str) -> int | str:
    if isinstance(value, int):
        if not 1 <= value <= 65535:
            raise ValueError("targetPort must be between 1 and 65535")
        return value
    if not (
        len(value) <= 15
        and re.fullmatch(DNS_LABEL_PATTERN, value)
        and re.search("[a-z]", value)
        and "--" not in value
    ):
        raise ValueError(
            "targetPort must be a port number or an IANA service name "
            "(at most 15 lowercase letters, digits and '-', with a letter)"
        )
    return value


Duration = Annotated[
    str, StringConstraints(pattern=DURATION_PATTERN, max_length=DURATION_MAX_LENGTH)
]
"""A Go-style duration string ("500ms", "30s", "5m", "1h30m"); see ``parse_duration``.
Spec fields use ``BoundedDuration``: this unbounded form is for reading and tests."""


def BoundedDuration(minimum: str, maximum: str = DURATION_CEILING) -> Any:
    """A Duration between ``minimum`` and ``maximum`` (inclusive): one declaration, from
    which both the CEL rule of the CRD and the Python validator are generated, so the
    API server and the models agree to the nanosecond (see ``DurationBounds``)."""
    bounds = DurationBounds(minimum, maximum)
    return Annotated[
        str,
        StringConstraints(pattern=DURATION_PATTERN, max_length=DURATION_MAX_LENGTH),
        AfterValidator(bounds.check),
        WithJsonSchema(
            {
                "type": "string",
                "pattern": DURATION_PATTERN,
                "maxLength": DURATION_MAX_LENGTH,
                "x-kubernetes-validations": [{"rule": bounds.cel_rule, "message": bounds.message}],
            }
        ),
    ]


Wait = BoundedDuration("0s")
"""0s..8760h: a wait that may be skipped (a pause, keep-warm, a cooldown): 0s means none."""
PositiveDuration = BoundedDuration("1s")
"""1s..8760h: a period, a deadline or a range, which zero would turn into a busy loop, an
instant rollback or an empty range."""
QueryTimeout = BoundedDuration("100ms", "5m")
"""100ms..5m: one Prometheus query; 0s would never be answered, and Prometheus itself
gives up on a query after 2m by default (-query.timeout)."""

DnsLabel = Annotated[str, StringConstraints(pattern=DNS_LABEL_PATTERN, max_length=63)]

Timestamp = Annotated[
    str,
    AfterValidator(_check_timestamp),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]
"""An RFC 3339 date-time string, as stored by the API server."""

MetricValue = Annotated[float | None, BeforeValidator(_finite_or_none)]

_TARGET_PORT_RULE = (
    "type(self) == int ? (self >= 1 && self <= 65535) : "
    "(size(self) <= 15 && self.matches('" + DNS_LABEL_PATTERN + "') "
    "&& self.matches('[a-z]') && !self.contains('--'))"
)
TargetPort = Annotated[
    int | str,
    BeforeValidator(_refuse_bool),
    AfterValidator(_check_target_port),
    WithJsonSchema(
        {
            "x-kubernetes-int-or-string": True,
            "maxLength": 15,
            "x-kubernetes-validations": [
                {
                    "rule": _TARGET_PORT_RULE,
                    "message": "must be a port number (1-65535) or an IANA service name "
                    "(at most 15 lowercase letters, digits and '-', with a letter)",
                }
            ],
        }
    ),
]


def cel_rules(*rules: tuple[str, str] | tuple[str, str, str]) -> dict[str, Any]:
    """``x-kubernetes-validations`` for json_schema_extra, from (rule, message) pairs.

    An optional third item is the rule's ``fieldPath`` (like ".strategy.shadow"): the
    API server then reports the error at that field rather than at the rule's node.
    """
    out = []
    for rule, message, *field_path in rules:
        entry = {"rule": rule, "message": message}
        if field_path:
            entry["fieldPath"] = field_path[0]
        out.append(entry)
    return {"x-kubernetes-validations": out}


def _plain(value: Any) -> Any:
    """Deep copy of a kopf body (Mappings of Mappings) into plain dicts and lists."""
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        return [_plain(item) for item in value]
    return value


class _WireModel(BaseModel):
    """A model with a wire form: what gets written to the API server."""

    def to_k8s(self) -> dict[str, Any]:
        """The object as the API server spells it: camelCase keys, unset fields left out."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class SpecModel(_WireModel):
    """Base of the spec models: immutable, and unknown fields are an error."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )


class StatusModel(_WireModel):
    """Base of the status models: mutable, validated on assignment, and tolerant on read.

    Unknown keys are ignored so that an older operator can read a status written by a
    newer one.
    """

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="ignore",
        validate_assignment=True,
    )

    def to_k8s(self) -> dict[str, Any]:
        """The wire form without empty optional values: an unset string (`""`), and a
        nested status left empty by that (`gates: {}`), are left out, so `kubectl
        describe` shows what is set. Reading back gives the same model (the defaults)."""
        return _without_empty(super().to_k8s())


def _without_empty(value: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, item in value.items():
        if isinstance(item, dict):
            item = _without_empty(item)
        elif isinstance(item, list):
            item = [_without_empty(i) if isinstance(i, dict) else i for i in item]
        if item == "" or item == {}:
            continue
        out[key] = item
    return out


# --------------------------------------------------------------------------- spec

_PRESERVED_OBJECT: dict[str, Any] = {
    "type": "object",
    "x-kubernetes-preserve-unknown-fields": True,
}
_POD_SPEC_SCHEMA: dict[str, Any] = {
    "type": "object",
    "x-kubernetes-preserve-unknown-fields": True,
    "required": ["containers"],
    "properties": {
        "containers": {
            "type": "array",
            "minItems": 1,
            "description": "The containers of the pod; each needs a name and an image.",
            "items": {
                "type": "object",
                "x-kubernetes-preserve-unknown-fields": True,
                "required": ["name", "image"],
                "properties": {
                    "name": {"type": "string", "minLength": 1, "description": "Container name."},
                    "image": {
                        "type": "string",
                        "minLength": 1,
                        "description": "Container image reference.",
                    },
                },
            },
        }
    },
}


class PodTemplate(SpecModel):
    """A Kubernetes PodTemplateSpec, passed through to the Deployments as written."""

    metadata: Annotated[dict[str, Any], WithJsonSchema(_PRESERVED_OBJECT)] = Field(
        default_factory=dict,
        description="Labels and annotations for the pods (a Kubernetes ObjectMeta).",
    )
    spec: Annotated[dict[str, Any], WithJsonSchema(_POD_SPEC_SCHEMA)] = Field(
        description="The pod spec (a Kubernetes PodSpec), at least one container."
    )

    @field_validator("spec")
    @classmethod
    def _containers_have_name_and_image(cls, spec: dict[str, Any]) -> dict[str, Any]:
        containers = spec.get("containers")
        if not isinstance(containers, list) or not containers:
            raise ValueError("spec.containers must list at least one container")
        for index, container in enumerate(containers):
            for key in ("name", "image"):
                value = container.get(key) if isinstance(container, dict) else None
                if not isinstance(value, str) or not value:
                    raise ValueError(f"spec.containers[{index}].{key} is required")
        return spec

    @property
    def containers(self) -> list[dict[str, Any]]:
        """The pod's containers (never empty)."""
        return self.spec["containers"]


class ServicePort(SpecModel):
    """One port of the Services that front the primary, canary and shadow pods."""

    name: DnsLabel | None = Field(
        None, description="Port name (a DNS label); required when there is more than one port."
    )
    port: int = Field(ge=1, le=65535, description="Port the Services listen on.")
    target_port: TargetPort | None = Field(
        None,
        description="Container port, as a number or a port name; defaults to port.",
    )
    protocol: Protocol = Field(Protocol.TCP, description="Transport protocol.")
    app_protocol: str | None = Field(
        None,
        max_length=253,
        description="Application protocol hint (for example http, h2c, kubernetes.io/ws).",
    )

    @model_validator(mode="before")
    @classmethod
    def _target_port_defaults_to_port(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("targetPort", data.get("target_port")) is None:
            data = {k: v for k, v in data.items() if k != "target_port"}
            data["targetPort"] = data.get("port")
        return data


class ServiceSpec(SpecModel):
    """The Services in front of the pods: ``<name>`` (stable) and one per role."""

    ports: list[ServicePort] = Field(
        min_length=1,
        max_length=MAX_SERVICE_PORTS,
        description="Ports the Services expose, keyed by port and protocol (as a Service's "
        "are): two field managers may each own an entry.",
        json_schema_extra={
            # protocol is defaulted (TCP), which a list-map key needs when not required.
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["port", "protocol"],
        }
        | cel_rules(
            (
                "size(self) <= 1 || self.all(p, has(p.name))",
                "every port must have a name when there is more than one port",
            ),
            (
                "self.all(p, !has(p.name) || self.exists_one(q, has(q.name) && q.name == p.name))",
                "port names must be unique",
            ),
            (
                "self.all(p, self.exists_one(q, q.port == p.port && q.protocol == p.protocol))",
                "each port and protocol pair must be unique",
            ),
        ),
    )

    @field_validator("ports")
    @classmethod
    def _ports_named_and_unique(cls, ports: list[ServicePort]) -> list[ServicePort]:
        if len(ports) > 1 and any(p.name is None for p in ports):
            raise ValueError("every port must have a name when there is more than one port")
        names = [p.name for p in ports if p.name is not None]
        if len(names) != len(set(names)):
            raise ValueError("port names must be unique")
        pairs = [(p.port, p.protocol) for p in ports]
        if len(pairs) != len(set(pairs)):
            raise ValueError("each port and protocol pair must be unique")
        return ports


class HttpMethod(StrEnum):
    """An HTTP method the comparator may replay."""

    GET = "GET"
    HEAD = "HEAD"
    OPTIONS = "OPTIONS"
    POST = "POST"
    PUT = "PUT"
    PATCH = "PATCH"
    DELETE = "DELETE"


SAFE_METHODS = (HttpMethod.GET, HttpMethod.HEAD, HttpMethod.OPTIONS)
"""Methods without side effects (RFC 9110 9.2.1): the only ones replayed by default."""


class CompareAgainst(StrEnum):
    """What the shadow's answers are compared with."""

    BASELINE = "baseline"
    PRIMARY = "primary"


IGNORE_PATH_PATTERN = r"^body([.\[].*)?$"
MAX_IGNORED = 64
COMPARE_MIN_REPLICAS_NOTE = (
    "they take two asks per mirrored copy; with two pods the two asks often reach both, "
    "so what differs between instances (a host name) is learned as noise"
)

IGNORE_HEADER_PATTERN = r"^[a-z0-9!#$%&'+.^_`|~-]+\*?$"
"""A lower-case header name (an HTTP token), or a prefix of one ending in `*`."""

IgnoredPath = Annotated[str, StringConstraints(pattern=IGNORE_PATH_PATTERN, max_length=256)]
IgnoredHeader = Annotated[str, StringConstraints(pattern=IGNORE_HEADER_PATTERN, max_length=128)]


class ShadowCompare(SpecModel):
    """Compare the shadow's answers with the stable version's, noise subtracted, and gate
    the shadow stage on the mismatch rate (docs/comparison.md)."""

    max_mismatch_rate: float = Field(
        0.01,
        ge=0,
        le=1,
        description="Largest share of compared requests (0..1) whose answers may differ "
        "beyond noise; more rolls back with reason ShadowMismatch.",
    )
    min_compared: int = Field(
        100,
        ge=1,
        le=10_000_000,
        description="Compared requests needed before any verdict; fewer holds the stage.",
    )
    methods: list[HttpMethod] = Field(
        default_factory=lambda: list(SAFE_METHODS),
        min_length=1,
        max_length=len(HttpMethod),
        description="Methods replayed to the shadow and the baseline; others are not "
        "compared (default: the safe methods GET, HEAD, OPTIONS).",
        json_schema_extra={
            "x-kubernetes-list-type": "set",
            "default": [m.value for m in SAFE_METHODS],
        },
    )
    ignore_headers: list[IgnoredHeader] = Field(
        default_factory=list,
        max_length=MAX_IGNORED,
        description="Response headers never compared (lower case), besides the defaults "
        "(date, server, hop-by-hop, x-envoy-*).",
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )
    ignore_paths: list[IgnoredPath] = Field(
        default_factory=list,
        max_length=MAX_IGNORED,
        description="JSON body paths never compared, like body.meta.requestId or "
        "body.items[*].updatedAt; a path ignores everything below it.",
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )
    compare_bodies: bool = Field(
        True, description="Compare the bodies too; false compares status and headers only."
    )
    max_latency_ratio: float | None = Field(
        None,
        ge=1,
        le=100,
        description="The shadow's p95 latency may be at most this many times the "
        "baseline's; unset means no latency budget.",
    )
    against: CompareAgainst = Field(
        CompareAgainst.BASELINE,
        description="baseline: a small <name>-baseline Deployment of the stable version, "
        "alive only while shadowing (no copy reaches the primary); primary: the primary "
        "itself (extra load and side effects on it).",
    )
    baseline_replicas: int = Field(
        2,
        ge=1,
        le=10,
        description=f"Pods of <name>-baseline; {COMPARE_MIN_REPLICAS_NOTE}.",
    )
    timeout: QueryTimeout = Field(
        "5s", description="How long the comparator waits for each answer."
    )

    @field_validator("methods", "ignore_headers", "ignore_paths")
    @classmethod
    def _each_once(cls, items: list[Any]) -> list[Any]:
        # The Python twin of x-kubernetes-list-type: set.
        if len(items) != len(set(items)):
            raise ValueError("each value may appear once")
        return items


class ShadowStage(SpecModel):
    """Mirror a share of live requests to the new version before any user sees it."""

    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            (
                "!has(self.compare) || self.mirrorPercent > 0",
                "spec.strategy.shadow.compare needs mirrorPercent above 0: nothing would be "
                "compared",
                ".mirrorPercent",
            ),
        )
    )

    duration: PositiveDuration = Field(description="How long to shadow before the canary starts.")
    mirror_percent: int = Field(
        100, ge=0, le=100, description="Percent of live requests copied to the shadow."
    )
    compare: ShadowCompare | None = Field(
        None,
        description="Compare the mirrored answers with the stable version's and gate on "
        "them; unset mirrors without comparing.",
    )

    @model_validator(mode="after")
    def _compare_needs_copies(self) -> Self:
        if self.compare is not None and self.mirror_percent == 0:
            raise ValueError(
                "spec.strategy.shadow.compare needs mirrorPercent above 0: nothing would be "
                "compared"
            )
        return self


class StepPause(SpecModel):
    """A wait after a canary step; without a duration it waits for a person."""

    duration: Wait | None = Field(
        None,
        description="How long to hold this step; unset waits for a person: the resume "
        "gate advances one step, the promote gate promotes.",
    )


class CanaryStep(SpecModel):
    """One step of the canary: this share of real traffic goes to the new version."""

    weight: int = Field(ge=1, le=100, description="Percent of traffic sent to the canary.")
    pause: StepPause | None = Field(
        None,
        description="Hold the step before advancing; unset advances as soon as the canary "
        "is ready and its checks pass.",
    )

    @property
    def waits_for_promotion(self) -> bool:
        """True when the step holds until someone promotes (a pause with no duration)."""
        return self.pause is not None and self.pause.duration is None


class CanaryStrategy(SpecModel):
    """Shift real traffic to the new version step by step, then promote it."""

    steps: list[CanaryStep] = Field(
        min_length=1,
        max_length=MAX_CANARY_STEPS,
        description="The steps, with strictly increasing weights.",
        json_schema_extra=cel_rules(
            (
                "self.map(s, s.weight).isSorted() && "
                "self.all(s, self.exists_one(t, t.weight == s.weight))",
                "canary step weights must be strictly increasing",
            ),
        ),
    )

    @field_validator("steps")
    @classmethod
    def _weights_strictly_increasing(cls, steps: list[CanaryStep]) -> list[CanaryStep]:
        weights = [step.weight for step in steps]
        if any(a >= b for a, b in itertools.pairwise(weights)):
            raise ValueError("canary step weights must be strictly increasing")
        return steps


class BlueGreenStrategy(SpecModel):
    """Run the new version beside the old one, reachable only by the preview route,
    then switch all traffic at once."""

    preview_duration: Wait | None = Field(
        None,
        description="How long to preview before switching; unset means wait for the promote gate.",
    )


class Strategy(SpecModel):
    """How a new version is delivered: an optional shadow stage, then canary or
    blue/green."""

    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            (
                "has(self.canary) != has(self.blueGreen)",
                "exactly one of spec.strategy.canary and spec.strategy.blueGreen must be set",
            ),
        )
    )

    shadow: ShadowStage | None = Field(
        None, description="Shadow the new version first; unset skips shadowing."
    )
    canary: CanaryStrategy | None = Field(
        None, description="Canary steps; exactly one of canary and blueGreen is set."
    )
    blue_green: BlueGreenStrategy | None = Field(
        None, description="Blue/green switch; exactly one of canary and blueGreen is set."
    )

    @model_validator(mode="after")
    def _exactly_one_delivery(self) -> Self:
        if (self.canary is None) == (self.blue_green is None):
            raise ValueError(
                "exactly one of spec.strategy.canary and spec.strategy.blueGreen must be set"
            )
        return self


class RollbackSpec(SpecModel):
    """What happens after a rollback."""

    cooldown: Wait = Field(
        "5m",
        description="After a rollback, how long a template brought back to the "
        "rolled-back revision (a revert of the revert) waits before it rolls out again. "
        "A rolled-back revision is never retried by itself: the retry gate (which skips "
        "the cooldown) or a new template starts it.",
    )


# Traffic: patterns the providers' own APIs accept, so a bad value is refused at
# `kubectl apply` of the ShadowRoute rather than when the operator writes the route.
HEADER_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9_.]*[a-z0-9])?$"
"""Lowercase HTTP header names: Istio matches only lowercase keys; HTTP ignores case."""
HEADER_VALUE_PATTERN = r"^[-._~a-zA-Z0-9/:]+$"
"""What ingress-nginx accepts in canary-by-header-value; other characters are dropped."""
COOKIE_NAME_PATTERN = r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
HOSTNAME_PATTERN = r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
DNS_SUBDOMAIN_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
PATH_PATTERN = r"^/$|^(/[A-Za-z0-9_~-][A-Za-z0-9._~-]*)+/?$"
"""An absolute path of plain segments: no "//", no "." or ".." segment, no escapes."""
PREVIEW_PATH_PATTERN = r"^(/[A-Za-z0-9_~-][A-Za-z0-9._~-]*)+$"
ISTIO_HOST_PATTERN = (
    r"^\*$|^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)
ISTIO_GATEWAY_PATTERN = r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?/)?[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"
MAX_COOKIE_NAME_LENGTH = 48
"""Leaves room for the "-<revision>" that makes the nginx affinity cookie per rollout."""

HeaderName = Annotated[str, StringConstraints(pattern=HEADER_NAME_PATTERN, max_length=128)]
HeaderValue = Annotated[str, StringConstraints(pattern=HEADER_VALUE_PATTERN, max_length=128)]
Hostname = Annotated[str, StringConstraints(pattern=HOSTNAME_PATTERN, max_length=253)]
DnsSubdomain = Annotated[str, StringConstraints(pattern=DNS_SUBDOMAIN_PATTERN, max_length=253)]
RoutePath = Annotated[str, StringConstraints(pattern=PATH_PATTERN, max_length=1024)]


class HeaderMatch(SpecModel):
    """A request header and the exact value that selects a route."""

    name: HeaderName = Field(description="Header name, lowercase (HTTP ignores case).")
    value: HeaderValue = Field(
        description="Exact value; letters, digits and -._~/: (what ingress-nginx accepts)."
    )


class PreviewSpec(SpecModel):
    """Reach the new version on purpose while a rollout runs, whatever the weight."""

    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            (
                "has(self.header) || has(self.pathPrefix)",
                "spec.traffic.preview needs a header, a pathPrefix or both",
            ),
        )
    )

    header: HeaderMatch | None = Field(
        None, description="Requests carrying this header and value reach the new version."
    )
    path_prefix: (
        Annotated[str, StringConstraints(pattern=PREVIEW_PATH_PATTERN, max_length=256)] | None
    ) = Field(
        None,
        description="Requests under this path reach the new version with the prefix "
        "stripped (/preview/cart is served as /cart); gatewayapi and istio only.",
    )

    @model_validator(mode="after")
    def _something_to_match(self) -> Self:
        if self.header is None and self.path_prefix is None:
            raise ValueError("spec.traffic.preview needs a header, a pathPrefix or both")
        return self


class CookieStickiness(SpecModel):
    """Keep users who reached the canary on it, by a cookie the data plane hands out."""

    name: Annotated[
        str, StringConstraints(pattern=COOKIE_NAME_PATTERN, max_length=MAX_COOKIE_NAME_LENGTH)
    ] = Field(description="Cookie name.")
    max_age: PositiveDuration | None = Field(
        None, description="Cookie lifetime; unset means until the browser closes."
    )


class HeaderStickiness(SpecModel):
    """Keep clients who reached the canary on it, by a response header they send back."""

    name: HeaderName = Field(
        description="Header the canary's responses carry and the client sends back "
        "(gatewayapi and istio only)."
    )


class StickinessSpec(SpecModel):
    """Same user, same version: who reached the canary keeps reaching it for the
    rollout."""

    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            (
                "has(self.cookie) != has(self.header)",
                "exactly one of spec.traffic.stickiness.cookie and "
                "spec.traffic.stickiness.header must be set",
            ),
        )
    )

    cookie: CookieStickiness | None = Field(None, description="Sticky by cookie.")
    header: HeaderStickiness | None = Field(None, description="Sticky by header.")

    @model_validator(mode="after")
    def _exactly_one(self) -> Self:
        if (self.cookie is None) == (self.header is None):
            raise ValueError(
                "exactly one of spec.traffic.stickiness.cookie and "
                "spec.traffic.stickiness.header must be set"
            )
        return self


class ParentReference(SpecModel):
    """A Gateway (or other parent) the HTTPRoute attaches to, as in Gateway API."""

    group: DnsSubdomain | None = Field(
        None, description="Group of the parent; unset means gateway.networking.k8s.io."
    )
    kind: (
        Annotated[
            str, StringConstraints(pattern=r"^[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?$", max_length=63)
        ]
        | None
    ) = Field(None, description="Kind of the parent; unset means Gateway.")
    namespace: DnsLabel | None = Field(
        None, description="Namespace of the parent; unset means the ShadowRoute's."
    )
    name: Annotated[str, StringConstraints(min_length=1, max_length=253)] = Field(
        description="Name of the parent."
    )
    section_name: DnsSubdomain | None = Field(
        None, description="A listener of the Gateway, by name."
    )
    port: int | None = Field(
        None, ge=1, le=65535, description="A listener of the Gateway, by port."
    )


class HTTPRouteReference(SpecModel):
    """An HTTPRoute you own, and the rule in it whose weights the operator sets."""

    name: DnsSubdomain = Field(description="Name of the HTTPRoute, in the ShadowRoute's namespace.")
    rule: DnsSubdomain = Field(
        description="Name of the rule (rules[].name); its backendRefs must be exactly "
        "<name>-primary and <name>-canary."
    )


_OWN_ROUTE_KEEPS_ITS_FIELDS = (
    "spec.traffic.gatewayAPI.hostnames and path belong to your HTTPRoute when "
    "spec.traffic.gatewayAPI.httpRoute is set"
)
_ROUTE_OR_PARENTS = (
    "exactly one of spec.traffic.gatewayAPI.parentRefs (an HTTPRoute the operator owns) "
    "and spec.traffic.gatewayAPI.httpRoute (the weights of a rule in yours) must be set"
)


class GatewayAPITraffic(SpecModel):
    """Gateway API: an HTTPRoute the operator owns, or one rule of an HTTPRoute you own."""

    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            ("has(self.parentRefs) != has(self.httpRoute)", _ROUTE_OR_PARENTS),
            (
                "!has(self.httpRoute) || (!has(self.hostnames) && !has(self.path))",
                _OWN_ROUTE_KEEPS_ITS_FIELDS,
            ),
        )
    )

    parent_refs: list[ParentReference] | None = Field(
        None,
        min_length=1,
        max_length=32,
        description="Gateways the owned HTTPRoute attaches to.",
    )
    hostnames: list[Hostname] | None = Field(
        None, min_length=1, max_length=16, description="Hostnames of the owned HTTPRoute."
    )
    path: RoutePath | None = Field(
        None, description="Path prefix the owned HTTPRoute matches; unset means /."
    )
    http_route: HTTPRouteReference | None = Field(
        None,
        description="Instead of an owned route: set only the weights (and the mirror) of "
        "one rule of this HTTPRoute, which stays yours.",
    )

    @model_validator(mode="after")
    def _owned_or_yours(self) -> Self:
        if (self.parent_refs is None) == (self.http_route is None):
            raise ValueError(_ROUTE_OR_PARENTS)
        if self.http_route is not None and (self.hostnames is not None or self.path is not None):
            raise ValueError(_OWN_ROUTE_KEEPS_ITS_FIELDS)
        return self


class NginxTraffic(SpecModel):
    """ingress-nginx: a stable Ingress and a -canary Ingress with canary annotations."""

    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            (
                "!has(self.tlsSecretName) || has(self.host)",
                "spec.traffic.nginx.tlsSecretName needs spec.traffic.nginx.host",
            ),
        )
    )

    ingress_class_name: DnsSubdomain | None = Field(
        None, description="IngressClass of ingress-nginx; unset means the cluster default."
    )
    host: Hostname | None = Field(None, description="Host the Ingresses serve; unset means any.")
    path: RoutePath | None = Field(None, description="Path prefix; unset means /.")
    tls_secret_name: DnsSubdomain | None = Field(
        None, description="Secret with the TLS certificate for host."
    )
    cluster_domain: DnsSubdomain = Field(
        "cluster.local",
        description="The cluster's DNS domain, for the mirror URL: ingress-nginx resolves "
        "it without search domains.",
    )

    @model_validator(mode="after")
    def _tls_needs_host(self) -> Self:
        if self.tls_secret_name is not None and self.host is None:
            raise ValueError("spec.traffic.nginx.tlsSecretName needs spec.traffic.nginx.host")
        return self


class IstioTraffic(SpecModel):
    """Istio: a VirtualService with weighted destinations."""

    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            (
                "!has(self.gateways) || has(self.hosts)",
                "spec.traffic.istio.hosts is required with spec.traffic.istio.gateways",
            ),
        )
    )

    hosts: (
        list[Annotated[str, StringConstraints(pattern=ISTIO_HOST_PATTERN, max_length=253)]] | None
    ) = Field(
        None,
        min_length=1,
        max_length=16,
        description="Hosts of the VirtualService; unset means the ShadowRoute's own "
        "Service <name> (traffic inside the mesh).",
    )
    gateways: (
        list[Annotated[str, StringConstraints(pattern=ISTIO_GATEWAY_PATTERN, max_length=253)]]
        | None
    ) = Field(
        None,
        min_length=1,
        max_length=8,
        description="Istio Gateways ([namespace/]name, or mesh); unset means the mesh only.",
    )
    path: RoutePath | None = Field(None, description="Path prefix; unset means every path.")

    @model_validator(mode="after")
    def _gateways_need_hosts(self) -> Self:
        if self.gateways is not None and self.hosts is None:
            raise ValueError(
                "spec.traffic.istio.hosts is required with spec.traffic.istio.gateways"
            )
        return self


TRAFFIC_RULES: list[Rule] = [
    *(
        Rule(
            f"spec.traffic.{key} is set but spec.traffic.provider is not {provider}",
            f".{key}",
            when=(Has(key),),
            must=Is("provider", provider),
        )
        for key, provider in (("gatewayAPI", "gatewayapi"), ("nginx", "nginx"), ("istio", "istio"))
    ),
    Rule(
        "spec.traffic.gatewayAPI is required with provider gatewayapi: parentRefs for an "
        "HTTPRoute the operator owns, or httpRoute for a rule of yours",
        ".gatewayAPI",
        when=(Is("provider", "gatewayapi"),),
        must=Has("gatewayAPI"),
    ),
    Rule(
        "spec.traffic.port is for the route of a provider; provider none has no route",
        ".port",
        when=(Is("provider", "none"),),
        must=Lacks("port"),
    ),
    Rule(
        "spec.traffic.preview needs a provider that routes by header or path (gatewayapi, "
        "nginx or istio); with none, reach the new version through the <name>-canary Service",
        ".preview",
        when=(Is("provider", "none"),),
        must=Lacks("preview"),
    ),
    Rule(
        "spec.traffic.stickiness needs a provider that routes by cookie or header (gatewayapi, "
        "nginx or istio): with none one Service picks a pod per connection",
        ".stickiness",
        when=(Is("provider", "none"),),
        must=Lacks("stickiness"),
    ),
    Rule(
        "spec.traffic.preview.pathPrefix is not supported with provider nginx: the canary "
        "Ingress must serve the stable Ingress's paths; use spec.traffic.preview.header",
        ".preview.pathPrefix",
        when=(Is("provider", "nginx"),),
        must=Lacks("preview.pathPrefix"),
    ),
    Rule(
        "spec.traffic.stickiness.header is not supported with provider nginx: ingress-nginx "
        "cannot add a header to the canary's responses; use spec.traffic.stickiness.cookie",
        ".stickiness.header",
        when=(Is("provider", "nginx"),),
        must=Lacks("stickiness.header"),
    ),
    Rule(
        "spec.traffic.preview is not supported with spec.traffic.gatewayAPI.httpRoute: the "
        "operator changes only the weights and mirror of your rule; add a preview rule "
        "to <name>-canary to your HTTPRoute",
        ".preview",
        when=(Has("gatewayAPI.httpRoute"),),
        must=Lacks("preview"),
    ),
    Rule(
        "spec.traffic.stickiness is not supported with spec.traffic.gatewayAPI.httpRoute: it "
        "needs rules of its own in the route, which stays yours",
        ".stickiness",
        when=(Has("gatewayAPI.httpRoute"),),
        must=Lacks("stickiness"),
    ),
]
"""How spec.traffic's fields fit its provider; each rule gives both the CEL rule and
the Python check (api/rules.py)."""


class TrafficSpec(SpecModel):
    """The data plane that carries the weights, the mirror, the preview and stickiness."""

    model_config = ConfigDict(json_schema_extra=validations(TRAFFIC_RULES))

    provider: TrafficProvider = Field(
        TrafficProvider.NONE,
        description="gatewayapi, nginx or istio; none weights by replica ratio behind "
        "one Service and cannot mirror.",
    )
    port: int | None = Field(
        None,
        ge=1,
        le=65535,
        description="Service port the route sends traffic to; unset means the first port "
        "of spec.service.ports.",
    )
    gateway_api: GatewayAPITraffic | None = Field(
        None, alias="gatewayAPI", description="Settings of provider gatewayapi."
    )
    nginx: NginxTraffic | None = Field(None, description="Settings of provider nginx.")
    istio: IstioTraffic | None = Field(None, description="Settings of provider istio.")
    preview: PreviewSpec | None = Field(
        None, description="A route to the new version while a rollout runs."
    )
    stickiness: StickinessSpec | None = Field(
        None, description="Keep who reached the canary on it for the rollout."
    )

    @model_validator(mode="after")
    def _fits_the_provider(self) -> Self:
        enforce(self, TRAFFIC_RULES)
        return self


class NoDataPolicy(StrEnum):
    """What a check concludes when it has no single usable value (see docs/analysis.md)."""

    FAIL = "fail"
    HOLD = "hold"
    PASS = "pass"


class UnreachablePolicy(StrEnum):
    """What happens once Prometheus has been unreachable for unreachable.timeout."""

    HOLD = "hold"
    ROLLBACK = "rollback"


class MetricPreset(StrEnum):
    """A ready-made check: the query (and its request count) come from the convention."""

    ERROR_RATE = "error-rate"
    LATENCY_P50 = "latency-p50"
    LATENCY_P90 = "latency-p90"
    LATENCY_P95 = "latency-p95"
    LATENCY_P99 = "latency-p99"


class MetricConvention(StrEnum):
    """Which metric names and labels the presets query."""

    HTTP = "http"
    ISTIO = "istio"
    LINKERD = "linkerd"
    NGINX = "nginx"


class NotificationEvent(StrEnum):
    """What a webhook is told about (docs/notifications.md says when each is sent)."""

    ROLLOUT_STARTED = "RolloutStarted"
    STEP_ADVANCED = "StepAdvanced"
    PAUSED = "Paused"
    RESUMED = "Resumed"
    HELD = "Held"
    CHECK_FAILED = "CheckFailed"
    SHADOW_MISMATCH = "ShadowMismatch"
    PROGRESS_DEADLINE_EXCEEDED = "ProgressDeadlineExceeded"
    PROMOTED = "Promoted"
    ROLLED_BACK = "RolledBack"


DEFAULT_NOTIFICATION_EVENTS = (
    NotificationEvent.PROMOTED,
    NotificationEvent.ROLLED_BACK,
    NotificationEvent.HELD,
)
"""What a webhook that names no events is told: the three events of the first release."""


class WebhookType(StrEnum):
    """The body a webhook gets."""

    JSON = "json"
    SLACK = "slack"
    TEAMS = "teams"
    GENERIC = "generic"


class WebhookMethod(StrEnum):
    POST = "POST"
    PUT = "PUT"
    PATCH = "PATCH"


MESSAGE_VARIABLES = (
    "event",
    "namespace",
    "name",
    "revision",
    "stableRevision",
    "images",
    "weight",
    "step",
    "stage",
    "phase",
    "reason",
    "message",
    "check",
    "at",
    "summary",
)
"""The ``$variables`` of a notification template (notify/template.py gives their values)."""


def _known_only(variables: Sequence[str]) -> str:
    """A pattern that every "$" is "$$", or opens a known $name or ${name} (a bare $name
    not followed by more of a name): string.Template's syntax, with character classes
    only (CEL's RE2)."""
    names = "(" + "|".join(variables) + ")"
    bare, delimited = f"[$]{names}", f"[$][$]|[$][{{]{names}[}}]"
    return f"^([^$]|{delimited}|({bare})+([^$A-Za-z0-9_]|{delimited}))*({bare})*$"


MAX_MESSAGE_TEMPLATE = 1024
"""A message's length: as long as the API server's CEL cost budget allows, for 10
webhooks with a template for each event."""
MAX_BODY_TEMPLATE = 2048


def _template_type(variables: Sequence[str], doc: str, max_length: int) -> Any:
    """A string of string.Template syntax using only these variables, checked by CEL at
    apply and by its Python twin in the operator."""
    pattern = _known_only(variables)
    message = "unknown variable or stray $ (write $$ for a dollar sign); known: " + ", ".join(
        "$" + v for v in variables
    )

    def check(text: str) -> str:
        if not re.fullmatch(pattern[1:-1], text):
            raise ValueError(message)
        return text

    return Annotated[
        str,
        StringConstraints(min_length=1, max_length=max_length),
        AfterValidator(check),
        WithJsonSchema(
            {
                "type": "string",
                "minLength": 1,
                "maxLength": max_length,
                "description": doc,
                "x-kubernetes-validations": [
                    {"rule": f"self.matches('{pattern}')", "message": message}
                ],
            }
        ),
    ]


MessageTemplate = _template_type(
    MESSAGE_VARIABLES,
    "A notification text with $variables (string.Template).",
    MAX_MESSAGE_TEMPLATE,
)
"""A notification text with ``$variables`` (Python's string.Template: no code runs)."""
BodyTemplate = _template_type(
    (*MESSAGE_VARIABLES, "text"),
    "A JSON body with $variables, $text the message.",
    MAX_BODY_TEMPLATE,
)
"""A generic webhook's body: the message's variables and ``$text``, the message."""


TEMPLATE_PLACEHOLDERS = (
    "namespace",
    "name",
    "service",
    "primary",
    "canary",
    "shadow",
    "target",
    "revision",
    "stableRevision",
    "canaryRevision",
    "interval",
    "window",
)
"""What ``{{ placeholder }}`` a query template may use (see analysis/templates.py)."""

_KNOWN_PLACEHOLDERS_ONLY = (
    "^([^{]|[{][^{]|[{][{] *(" + "|".join(TEMPLATE_PLACEHOLDERS) + ") *[}][}])*[{]?$"
)
"""Every "{{" opens a known placeholder (character classes: no escapes to get wrong in CEL)."""
_UNKNOWN_PLACEHOLDER = "unknown or unclosed {{ placeholder }}; known: " + ", ".join(
    "{{ " + p + " }}" for p in TEMPLATE_PLACEHOLDERS
)
MAX_QUERY_LENGTH = 4096
URL_PATTERN = r"^https?://[^\s/@?#]+(/[^\s?#]*)?$"
"""http(s), a host and an optional path: no credentials and no query string in the URL
(it is shown in status messages; credentials go in a Secret)."""
WEBHOOK_URL_PATTERN = r"^https?://[^\s/@?#]+(/[^\s#]*)?$"
"""A webhook may carry a query string (it is never shown); still no user:password@."""
SECRET_KEY_PATTERN = r"^[-._a-zA-Z0-9]+$"


def _check_placeholders(query: str | None) -> str | None:
    """The Python twin of the CEL rule on query templates."""
    if query is not None and not re.fullmatch(_KNOWN_PLACEHOLDERS_ONLY[1:-1], query):
        raise ValueError(_UNKNOWN_PLACEHOLDER)
    return query


QueryTemplate = Annotated[
    str,
    StringConstraints(min_length=1, max_length=MAX_QUERY_LENGTH),
    AfterValidator(_check_placeholders),
    WithJsonSchema(
        {
            "type": "string",
            "minLength": 1,
            "maxLength": MAX_QUERY_LENGTH,
            "x-kubernetes-validations": [
                {"rule": f"self.matches('{_KNOWN_PLACEHOLDERS_ONLY}')",
                 "message": _UNKNOWN_PLACEHOLDER}
            ],
        }
    ),
]  # fmt: skip
"""A PromQL query with ``{{ placeholders }}``; every substituted value is escaped."""


class MetricCheck(SpecModel):
    """One Prometheus query whose value must stay within bounds."""

    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            ("has(self.min) || has(self.max)", "at least one of min or max must be set"),
            (
                "!has(self.min) || !has(self.max) || self.min <= self.max",
                "min must not be greater than max",
            ),
            (
                "has(self.query) != has(self.preset)",
                "exactly one of query and preset must be set",
            ),
            (
                "!has(self.minRequests) || has(self.preset) || has(self.requestCountQuery)",
                "minRequests needs a preset or a requestCountQuery to count the requests",
            ),
            (
                "!has(self.requestCountQuery) || has(self.minRequests)",
                "requestCountQuery is only used with minRequests",
            ),
            ("!has(self.convention) || has(self.preset)", "convention is only used with a preset"),
        )
    )

    name: DnsLabel = Field(description="Name of the check (a DNS label), unique in the list.")
    query: QueryTemplate | None = Field(
        None,
        description="PromQL returning exactly one sample, with {{ placeholders }} "
        "(docs/analysis.md); exactly one of query and preset.",
    )
    preset: MetricPreset | None = Field(
        None,
        description="A ready-made query: error-rate (5xx / all requests) or latency-pNN "
        "(seconds) of the new version; exactly one of query and preset.",
    )
    convention: MetricConvention | None = Field(
        None,
        description="Metric names the preset queries; unset means spec.analysis.convention.",
    )
    min: float | None = Field(None, description="Lowest passing value.")
    max: float | None = Field(None, description="Highest passing value.")
    no_data: NoDataPolicy = Field(
        NoDataPolicy.HOLD,
        description="When there is no single usable value (no series, several, NaN, too "
        "few requests): fail counts a failed run, hold waits (never advances, never rolls "
        "back), pass lets it through.",
    )
    min_requests: int | None = Field(
        None,
        ge=1,
        le=1_000_000_000,
        description="Requests the new version must have served in the window before this "
        "check counts; fewer is no data.",
    )
    request_count_query: QueryTemplate | None = Field(
        None,
        description="PromQL counting the requests for minRequests; presets bring their own.",
    )

    @model_validator(mode="after")
    def _bounded(self) -> Self:
        """The Python twin of the CEL rules above, in the same order with the same messages."""
        if self.min is None and self.max is None:
            raise ValueError("at least one of min or max must be set")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("min must not be greater than max")
        if (self.query is None) == (self.preset is None):
            raise ValueError("exactly one of query and preset must be set")
        if self.min_requests is not None and self.preset is None and not self.request_count_query:
            raise ValueError(
                "minRequests needs a preset or a requestCountQuery to count the requests"
            )
        if self.request_count_query is not None and self.min_requests is None:
            raise ValueError("requestCountQuery is only used with minRequests")
        if self.convention is not None and self.preset is None:
            raise ValueError("convention is only used with a preset")
        return self


class SecretReference(SpecModel):
    """A Secret in the ShadowRoute's namespace."""

    name: DnsSubdomain = Field(description="Name of the Secret.")


class SecretKeyReference(SpecModel):
    """One key of a Secret in the ShadowRoute's namespace."""

    name: DnsSubdomain = Field(description="Name of the Secret.")
    key: Annotated[str, StringConstraints(pattern=SECRET_KEY_PATTERN, max_length=253)] = Field(
        description="Key in the Secret's data."
    )


class PrometheusSpec(SpecModel):
    """Where Prometheus answers, and how to authenticate to it."""

    address: Annotated[str, StringConstraints(pattern=URL_PATTERN, max_length=2048)] = Field(
        description="Base URL of the Prometheus HTTP API (http://prometheus.monitoring:9090); "
        "/api/v1/query is appended. No credentials here: use secretRef."
    )
    secret_ref: SecretReference | None = Field(
        None,
        description="A Secret with `token` (bearer), or `username` and `password` (basic "
        "auth), and/or `ca.crt` (a PEM CA bundle for https). Read at every run, never "
        "logged or written to status.",
    )
    timeout: QueryTimeout = Field("5s", description="Timeout of one query attempt.")


class UnreachableSpec(SpecModel):
    """Prometheus does not answer: the rollout holds; after timeout the policy decides."""

    timeout: Wait = Field(
        "5m", description="How long Prometheus may be unreachable before the policy applies."
    )
    policy: UnreachablePolicy = Field(
        UnreachablePolicy.HOLD,
        description="hold keeps waiting (never advances); rollback rolls back.",
    )


class EventTemplate(SpecModel):
    """The message of one event."""

    event: NotificationEvent = Field(description="The event.")
    template: MessageTemplate = Field(description="Its message, with $variables.")


class Webhook(SpecModel):
    """An HTTP endpoint told about the events it names (docs/notifications.md)."""

    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            (
                "has(self.url) != has(self.urlSecretRef)",
                "exactly one of url and urlSecretRef must be set",
            ),
            (
                "has(self.body) == (self.type == 'generic')",
                "body is set for a generic webhook, and only for one",
            ),
            (
                "self.type == 'generic' || (!has(self.method) && !has(self.headersSecretRef))",
                "method and headersSecretRef are for a generic webhook",
            ),
        )
    )

    name: DnsLabel = Field(description="Name of the webhook (for logs and status).")
    type: WebhookType = Field(
        WebhookType.JSON,
        description='json posts our JSON document (with the message as "text"); slack posts '
        '{"text": ...} (Slack, Mattermost, Rocket.Chat incoming webhooks); teams posts an '
        "Adaptive Card message (a Microsoft Teams Workflows webhook); generic sends body.",
    )
    url: Annotated[str, StringConstraints(pattern=WEBHOOK_URL_PATTERN, max_length=2048)] | None = (
        Field(None, description="Where to send; exactly one of url and urlSecretRef.")
    )
    url_secret_ref: SecretKeyReference | None = Field(
        None,
        description="A Secret key holding the URL (a Slack or Teams webhook URL is a credential).",
    )
    events: list[NotificationEvent] = Field(
        default_factory=lambda: list(DEFAULT_NOTIFICATION_EVENTS),
        min_length=1,
        max_length=len(NotificationEvent),
        description="The events told: " + ", ".join(e.value for e in NotificationEvent) + ".",
        json_schema_extra={"default": [e.value for e in DEFAULT_NOTIFICATION_EVENTS]},
    )
    template: MessageTemplate | None = Field(
        None,
        description="The message, with $variables (docs/notifications.md); unset: a "
        "one-line summary of the event ($summary).",
    )
    templates: list[EventTemplate] = Field(
        default_factory=list,
        max_length=len(NotificationEvent),
        description="A message per event, in place of template for that event.",
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["event"],
        },
    )
    body: BodyTemplate | None = Field(
        None,
        description="generic: the JSON body, with $variables; each value is escaped "
        'for a JSON string ("text": "$message"), and $text is the rendered message.',
    )
    method: WebhookMethod | None = Field(
        None, description="generic: POST (when unset), PUT or PATCH."
    )
    headers_secret_ref: SecretReference | None = Field(
        None,
        description="generic: a Secret whose every key is a header name and value sent "
        "(Authorization, say); read at every delivery, never logged or written to status.",
    )

    @model_validator(mode="after")
    def _one_url(self) -> Self:
        if (self.url is None) == (self.url_secret_ref is None):
            raise ValueError("exactly one of url and urlSecretRef must be set")
        if (self.body is not None) != (self.type is WebhookType.GENERIC):
            raise ValueError("body is set for a generic webhook, and only for one")
        if self.type is not WebhookType.GENERIC and (
            self.method is not None or self.headers_secret_ref is not None
        ):
            raise ValueError("method and headersSecretRef are for a generic webhook")
        if len({t.event for t in self.templates}) != len(self.templates):
            raise ValueError("one template per event")
        if self.body is not None:
            _check_json_body(self.body)
        return self


def _check_json_body(body: str) -> None:
    """A generic body is JSON once its variables are filled in: tried with every
    variable set to a sample (values are escaped for a JSON string, so any value
    gives JSON when the sample does)."""
    sample = {v: "x" for v in (*MESSAGE_VARIABLES, "text")}
    sample.update(weight="0", step="0")
    try:
        json.loads(string.Template(body).safe_substitute(sample))
    except ValueError as exc:
        raise ValueError(
            f"body is not JSON once its variables are filled in: {exc}; a text variable "
            'goes inside quotes ("$message"), only $weight and $step may stand alone'
        ) from None


class NotificationSpec(SpecModel):
    """Webhooks, with a cooldown so that an outage does not spam them."""

    webhooks: list[Webhook] = Field(
        min_length=1,
        max_length=10,
        description="Where to send notifications.",
        json_schema_extra=cel_rules(
            (
                "self.all(w, self.exists_one(v, v.name == w.name))",
                "webhook names must be unique",
            ),
        ),
    )
    cooldown: Wait = Field(
        "5m",
        description="The same notification (event, route, revision and step, check or "
        "reason) is sent at most once per cooldown.",
    )
    hold_after: Wait = Field(
        "1m",
        description="A hold (AnalysisHealthy False, or Unknown with NoData, while a rollout "
        "runs) is told once it has lasted this long: the first runs of a step often have "
        "no data yet.",
    )

    @field_validator("webhooks")
    @classmethod
    def _names_unique(cls, webhooks: list[Webhook]) -> list[Webhook]:
        names = [w.name for w in webhooks]
        if len(names) != len(set(names)):
            raise ValueError("webhook names must be unique")
        return webhooks


NOTIFICATION_RULES: list[Rule] = [
    Rule(
        "set spec.notifications or spec.analysis.notifications (its deprecated spelling), not both",
        ".notifications",
        when=(Has("notifications"),),
        must=Lacks("analysis.notifications"),
    ),
]


class AnalysisSpec(SpecModel):
    """The health checks asked of Prometheus at every stage."""

    prometheus: PrometheusSpec | None = Field(
        None,
        description="The Prometheus to ask; unset means the operator's SHADOWROUTE_PROMETHEUS_URL.",
    )
    interval: PositiveDuration = Field("30s", description="How often the checks run.")
    failure_limit: int = Field(
        2,
        ge=0,
        le=100,
        description="Failed runs in a row tolerated; one more rolls back.",
    )
    window: PositiveDuration = Field(
        "1m",
        description="Range of the rates in presets ({{ window }}): at least two scrape intervals.",
    )
    convention: MetricConvention = Field(
        MetricConvention.HTTP,
        description="Metric names the presets query: http (http_requests_total, "
        "http_request_duration_seconds), istio, linkerd or nginx (ingress-nginx).",
    )
    unreachable: UnreachableSpec = Field(
        default_factory=UnreachableSpec,
        description="What happens while Prometheus does not answer.",
        json_schema_extra={"default": {}},
    )
    notifications: NotificationSpec | None = Field(
        None,
        description="Deprecated: the same as spec.notifications (set one of them).",
    )
    metrics: list[MetricCheck] = Field(
        default_factory=list,
        max_length=MAX_METRICS,
        description="The checks; all must pass for the rollout to advance.",
        json_schema_extra=cel_rules(
            (
                "self.all(m, self.exists_one(n, n.name == m.name))",
                "metric names must be unique",
            ),
        ),
    )

    @field_validator("metrics")
    @classmethod
    def _names_unique(cls, metrics: list[MetricCheck]) -> list[MetricCheck]:
        names = [metric.name for metric in metrics]
        if len(names) != len(set(names)):
            raise ValueError("metric names must be unique")
        return metrics


def _routed_port_is_tcp(spec: Any) -> bool:
    traffic, ports = spec.traffic, spec.service.ports
    return traffic.port is None or any(
        p.port == traffic.port and p.protocol == Protocol.TCP for p in ports
    )


SPEC_TRAFFIC_RULES: list[Rule] = [
    Rule(
        "spec.strategy.shadow needs a traffic provider that can mirror requests (gatewayapi, "
        "nginx or istio): spec.traffic.provider none moves whole requests between pods and "
        "cannot copy them",
        ".strategy.shadow",
        when=(Is("traffic.provider", "none"),),
        must=Lacks("strategy.shadow"),
    ),
    Rule(
        "spec.strategy.shadow.mirrorPercent must be 100 with spec.traffic.provider nginx: "
        "ingress-nginx's mirror-target annotation copies every request",
        ".strategy.shadow.mirrorPercent",
        cel="self.traffic.provider != 'nginx' || !has(self.strategy.shadow) || "
        "self.strategy.shadow.mirrorPercent == 100",
        check=lambda spec: (
            spec.traffic.provider != TrafficProvider.NGINX
            or spec.strategy.shadow is None
            or spec.strategy.shadow.mirror_percent == 100
        ),
    ),
    Rule(
        "spec.traffic.port must be the port of a TCP entry of spec.service.ports",
        ".traffic.port",
        cel="!has(self.traffic.port) || "
        "self.service.ports.exists(p, p.port == self.traffic.port && p.protocol == 'TCP')",
        check=_routed_port_is_tcp,
    ),
    Rule(
        "spec.traffic.port is required when the first port of spec.service.ports is not TCP: "
        "routes carry HTTP",
        ".traffic.port",
        cel="self.traffic.provider == 'none' || has(self.traffic.port) || "
        "self.service.ports[0].protocol == 'TCP'",
        check=lambda spec: (
            spec.traffic.provider == TrafficProvider.NONE
            or spec.traffic.port is not None
            or spec.service.ports[0].protocol == Protocol.TCP
        ),
    ),
]
"""Traffic rules that need more of the spec than spec.traffic (see TRAFFIC_RULES)."""


# --------------------------------------------------------------------------- checks

MAX_CHECKS = 20
MAX_CHECK_NAME_LENGTH = 40
"""Short enough that ``<name>-check-<check>-…`` Jobs rarely need a hashed name."""
MAX_CHECK_RETRIES = 10
CHECK_HEADER_VALUE_PATTERN = r"^[^\r\n]*$"
CHECK_PATH_PATTERN = r"^/[^\s]*$"
HTTP_TOKEN_PATTERN = r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$"
CheckTimeout = BoundedDuration("1s", "24h")
MaxLatency = BoundedDuration("1ms", "5m")
_ANY_JSON: dict[str, Any] = {"x-kubernetes-preserve-unknown-fields": True}


class CheckHeader(SpecModel):
    """A request header: a literal value, or one read from a Secret at request time."""

    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            (
                "has(self.value) != has(self.secretKeyRef)",
                "a header has exactly one of value and secretKeyRef",
            )
        )
    )

    name: HeaderName = Field(description="Header name, lowercase (HTTP ignores case).")
    value: (
        Annotated[str, StringConstraints(pattern=CHECK_HEADER_VALUE_PATTERN, max_length=4096)]
        | None
    ) = Field(None, description="The value, as written (not for secrets).")
    secret_key_ref: SecretKeyReference | None = Field(
        None, description="The value is this key of a Secret (tokens): never in status or logs."
    )

    @model_validator(mode="after")
    def _one_value(self) -> Self:
        if (self.value is None) == (self.secret_key_ref is None):
            raise ValueError("a header has exactly one of value and secretKeyRef")
        return self


def _usable_json_path(path: str) -> str:
    canonical_json_path(path)  # ValueError: a path the checks could not read
    return path


class JsonExpectation(SpecModel):
    """The JSON value the answer's body holds at a path."""

    path: Annotated[
        str,
        StringConstraints(pattern=JSON_PATH_PATTERN, max_length=256),
        AfterValidator(_usable_json_path),
    ] = Field(description='A path into the body: body.items[0].price, body["odd key"].')
    value: Annotated[Any, WithJsonSchema(_ANY_JSON)] = Field(
        description="The JSON value expected there (a whole object or array compares whole; "
        "numbers by value)."
    )


class HttpExpectation(SpecModel):
    """What the answer must be to pass: every expectation given must hold."""

    status_codes: list[Annotated[int, Field(ge=100, le=599)]] | None = Field(
        None,
        min_length=1,
        max_length=50,
        description="The statuses that pass; unset means any 2xx.",
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )
    body_contains: Annotated[str, StringConstraints(min_length=1, max_length=1024)] | None = Field(
        None, description="A text the body (as UTF-8) contains."
    )
    json_: list[JsonExpectation] = Field(
        default_factory=list,
        alias="json",
        max_length=20,
        description="Values the JSON body holds at paths.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["path"]},
    )
    max_latency: MaxLatency | None = Field(None, description="The answer took at most this long.")

    @field_validator("status_codes")
    @classmethod
    def _codes_unique(cls, codes: list[int] | None) -> list[int] | None:
        if codes is not None and len(codes) != len(set(codes)):
            raise ValueError("statusCodes lists each code once")
        return codes

    @field_validator("json_")
    @classmethod
    def _paths_unique(cls, expected: list[JsonExpectation]) -> list[JsonExpectation]:
        # body["a"] and body.a name one field: unique as the check reads them.
        paths = [canonical_json_path(e.path) for e in expected]
        if len(paths) != len(set(paths)):
            raise ValueError('json lists each path once (body["a"] and body.a are one path)')
        return expected


class HttpCheckSpec(SpecModel):
    """One request to the new version's Service, and what its answer must be."""

    method: Annotated[str, StringConstraints(pattern=HTTP_TOKEN_PATTERN, max_length=32)] = Field(
        "GET", description="The request's method."
    )
    path: Annotated[str, StringConstraints(pattern=CHECK_PATH_PATTERN, max_length=2048)] = Field(
        "/", description="The request's path and query."
    )
    port: int | None = Field(
        None,
        ge=1,
        le=65535,
        description="The Service port asked; unset means the port traffic is routed to.",
    )
    headers: list[CheckHeader] = Field(
        default_factory=list,
        max_length=20,
        description="Request headers.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    body: Annotated[str, StringConstraints(max_length=65536)] = Field(
        "", description="The request's body."
    )
    expect: HttpExpectation = Field(
        default_factory=HttpExpectation,
        description="What passes; unset means any 2xx.",
        json_schema_extra={"default": {}},
    )

    @field_validator("headers")
    @classmethod
    def _header_names_unique(cls, headers: list[CheckHeader]) -> list[CheckHeader]:
        names = [h.name for h in headers]
        if len(names) != len(set(names)):
            raise ValueError("headers lists each name once")
        return headers


_JOB_POD_SPEC_SCHEMA: dict[str, Any] = {
    **_POD_SPEC_SCHEMA,
    "properties": {
        **_POD_SPEC_SCHEMA["properties"],
        "restartPolicy": {
            "type": "string",
            "enum": ["Never"],
            "description": "Never (or unset): a failed attempt is the check's to retry, and "
            "its pod's last lines stay readable.",
        },
    },
}


class JobPodTemplate(PodTemplate):
    """A pod template for a check's Job: its pods end and are not restarted in place
    (restartPolicy Never): the check's retries are the only ones."""

    spec: Annotated[dict[str, Any], WithJsonSchema(_JOB_POD_SPEC_SCHEMA)] = Field(
        description="The pod spec (a Kubernetes PodSpec), at least one container."
    )

    @field_validator("spec")
    @classmethod
    def _pods_end(cls, spec: dict[str, Any]) -> dict[str, Any]:
        if spec.get("restartPolicy", "Never") != "Never":
            raise ValueError("restartPolicy is Never (or unset): retries are the check's")
        return spec


class JobCheckSpec(SpecModel):
    """A Job from this pod template (a suite in a container of yours): passes when the
    Job succeeds."""

    template: JobPodTemplate = Field(description="The pod template of the Job.")


class AcceptanceCheck(SpecModel):
    """A test the new version must pass at one moment of its rollout."""

    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            ("has(self.http) != has(self.job)", "a check has exactly one of http and job")
        )
    )

    name: Annotated[
        str, StringConstraints(pattern=DNS_LABEL_PATTERN, max_length=MAX_CHECK_NAME_LENGTH)
    ] = Field(description="Name of the check (a DNS label), unique in the list.")
    when: CheckHook = Field(
        description="BeforeTraffic (before any traffic or mirror), EachStep (before each "
        "canary step advances), BeforePromotion (before the switch), AfterPromotion (while "
        "the old version is warm: a failure undoes the promotion)."
    )
    timeout: CheckTimeout = Field("30s", description="How long one attempt may take.")
    retries: int = Field(
        0,
        ge=0,
        le=MAX_CHECK_RETRIES,
        description="Attempts allowed after a failed one, before the check fails.",
    )
    http: HttpCheckSpec | None = Field(None, description="Ask the new version over HTTP.")
    job: JobCheckSpec | None = Field(None, description="Run a Job.")

    @model_validator(mode="after")
    def _one_action(self) -> Self:
        if (self.http is None) == (self.job is None):
            raise ValueError("a check has exactly one of http and job")
        return self


class ShadowRouteSpec(SpecModel):
    """The service and the version it should run; the operator never writes it."""

    model_config = ConfigDict(
        json_schema_extra=validations([*SPEC_TRAFFIC_RULES, *NOTIFICATION_RULES])
    )

    replicas: int = Field(1, ge=0, le=1000, description="Pods of the primary version.")
    template: PodTemplate = Field(
        description="The desired version's pod template; changing it starts a rollout."
    )
    service: ServiceSpec = Field(description="The Services in front of the pods.")
    strategy: Strategy = Field(description="How a new version is delivered.")
    progress_deadline: PositiveDuration = Field(
        "10m",
        description="A new version not ready within this long is rolled back.",
    )
    keep_warm: Wait = Field(
        "5m",
        description="After promotion the previous version stays scaled up this long.",
    )
    rollback: RollbackSpec = Field(
        default_factory=RollbackSpec,
        description="What happens after a rollback.",
        json_schema_extra={"default": {}},
    )
    paused: bool = Field(False, description="Hold any rollout where it is.")
    traffic: TrafficSpec = Field(
        default_factory=TrafficSpec,
        description="The data plane that shifts and mirrors traffic.",
        # Spelled out: the API server checks a default against the CEL rules as written.
        json_schema_extra={"default": {"provider": "none"}},
    )
    analysis: AnalysisSpec | None = Field(
        None, description="Prometheus checks; unset means readiness alone gates progress."
    )
    checks: list[AcceptanceCheck] = Field(
        default_factory=list,
        max_length=MAX_CHECKS,
        description="Acceptance checks the new version must pass (docs/checks.md).",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    notifications: NotificationSpec | None = Field(
        None,
        description="Webhooks told about the rollout's events (docs/notifications.md).",
    )

    @field_validator("checks")
    @classmethod
    def _check_names_unique(cls, checks: list[AcceptanceCheck]) -> list[AcceptanceCheck]:
        names = [c.name for c in checks]
        if len(names) != len(set(names)):
            raise ValueError("check names must be unique")
        return checks

    @model_validator(mode="after")
    def _traffic_fits_the_spec(self) -> Self:
        enforce(self, [*SPEC_TRAFFIC_RULES, *NOTIFICATION_RULES])
        return self


# --------------------------------------------------------------------------- status


class GateStatus(StatusModel):
    """The last acknowledged token of each gate annotation, so a gate acts only once."""

    promote: str = Field("", description="Last promote token acted on.")
    abort: str = Field("", description="Last abort token acted on.")
    pause: str = Field("", description="Last pause token acted on.")
    resume: str = Field("", description="Last resume token acted on.")
    retry: str = Field("", description="Last retry token acted on.")
    resume_noted: str = Field(
        "",
        description="A resume token seen at a step that waits for a person while another "
        "hold (the analysis, a check) keeps the step; not acted on yet: the step advances "
        "once that hold lifts. Unset otherwise.",
    )


class Condition(StatusModel):
    """A condition as in the Kubernetes API conventions."""

    type: str = Field(min_length=1, max_length=316, description="Condition type.")
    status: ConditionStatus = Field(description="True, False or Unknown.")
    reason: str = Field(
        "",
        max_length=1024,
        pattern=CONDITION_REASON_PATTERN,
        description="Why, in one CamelCase word.",
    )
    message: str = Field("", max_length=32768, description="Why, for people.")
    last_transition_time: Timestamp | None = Field(
        None, description="When the status last changed."
    )
    observed_generation: int | None = Field(
        None, ge=0, description="The spec generation the condition describes."
    )


class MetricResult(StatusModel):
    """The last result of one metric check."""

    name: str = Field(description="Name of the check.")
    value: MetricValue = Field(
        None, description="Value returned; unset when there was none or it was not finite."
    )
    verdict: Verdict = Field(Verdict.INCONCLUSIVE, description="Pass, Fail or Inconclusive.")
    reason: str = Field(
        "",
        max_length=128,
        pattern=CONDITION_REASON_PATTERN,
        description="Why, in one CamelCase word: WithinBounds, AboveMax, BelowMin, NoData, "
        "NaN, Infinite, MultipleSeries, TooFewRequests, InvalidQuery.",
    )
    requests: MetricValue = Field(
        None, description="Requests counted for minRequests, when it is set."
    )
    query: str = Field("", description="The query as sent, placeholders resolved.")
    checked_at: Timestamp | None = Field(None, description="When the query was answered.")
    message: str = Field("", description="Why the verdict, for people.")


class AnalysisStatus(StatusModel):
    """The last analysis run."""

    consecutive_failures: int = Field(0, ge=0, description="Failed runs in a row.")
    last_run_at: Timestamp | None = Field(None, description="When the checks last ran.")
    verdict: Verdict | None = Field(
        None, description="Of the last run: Pass (every check passed), Fail or Inconclusive."
    )
    reason: str = Field(
        "",
        max_length=128,
        pattern=CONDITION_REASON_PATTERN,
        description="Of the last run, in one CamelCase word (the AnalysisHealthy reason).",
    )
    message: str = Field("", description="Of the last run, for people.")
    revision: str = Field("", description="The revision the last run looked at.")
    target: str = Field("", description="The Service of that revision the presets queried.")
    traffic_since: Timestamp | None = Field(
        None,
        description="Since when that Service carries that revision's traffic: "
        "{{ window }} never reaches back further, so the samples of an earlier revision "
        "behind the same Service do not dilute the new one's.",
    )
    window_start: Timestamp | None = Field(
        None,
        description="Where the range of the last run's rates began ({{ window }} before "
        "lastRunAt): a run passes only if it began half a window after the traffic at "
        "the current weight did; before, checks within bounds are PartialWindow.",
    )
    unreachable_since: Timestamp | None = Field(
        None, description="Since when Prometheus has not answered; unset when it answers."
    )
    metrics: list[MetricResult] = Field(
        default_factory=list, description="Result of each check in the last run."
    )


class ComparisonVerdict(StrEnum):
    """What the shadow comparison concluded so far."""

    PASS = "Pass"
    FAIL = "Fail"
    NOT_ENOUGH_DATA = "NotEnoughData"
    UNKNOWN = "Unknown"


MAX_TOP_FIELDS = 5


class FieldDifference(StatusModel):
    """One response field that differed between the shadow and the stable version."""

    name: str = Field(
        max_length=256, description="The field: status, header:<name> or body.<path>."
    )
    raw: int = Field(ge=0, description="Compared requests where it differed old vs new.")
    noise: int = Field(ge=0, description="Compared requests where it differed old vs old.")
    real: bool = Field(description="It differs beyond noise: it counts towards the mismatch rate.")


class ComparisonStatus(StatusModel):
    """The last look at the shadow comparison of the revision on trial."""

    revision: str = Field("", description="The revision compared.")
    verdict: ComparisonVerdict | None = Field(
        None, description="Pass, Fail, NotEnoughData, or Unknown (the counts could not be read)."
    )
    reason: str = Field(
        "",
        max_length=128,
        pattern=CONDITION_REASON_PATTERN,
        description="Why, in one CamelCase word.",
    )
    message: str = Field("", description="Why, for people: counts, rate and top fields.")
    compared: int = Field(0, ge=0, description="Requests compared so far.")
    mismatched: int = Field(0, ge=0, description="Of those, answers that differ beyond noise.")
    mismatch_rate: MetricValue = Field(None, description="mismatched / compared.")
    shadow_p95: MetricValue = Field(None, description="The shadow's p95 latency, seconds.")
    baseline_p95: MetricValue = Field(None, description="The baseline's p95 latency, seconds.")
    top_fields: list[FieldDifference] = Field(
        default_factory=list,
        max_length=MAX_TOP_FIELDS,
        description="The fields differing most beyond noise.",
    )
    checked_at: Timestamp | None = Field(None, description="When the counts were read.")


class HistoryEntry(StatusModel):
    """How one rollout ended."""

    revision: str = Field(description="The revision rolled out.")
    outcome: Outcome = Field(description="Promoted, RolledBack, Cancelled or Superseded.")
    reason: str = Field("", description="Why, in one CamelCase word.")
    message: str = Field("", description="Why, for people.")
    at: Timestamp | None = Field(None, description="When it ended.")
    images: str = Field(
        "",
        max_length=IMAGES_LIMIT,
        description="The revision's container images, `name=image` (registry host left "
        "out), when its template was known.",
    )
    changes: str = Field(
        "",
        max_length=CHANGES_LIMIT,
        description="What its template changed from the revision it replaced (promoted) or "
        "was tried against (the stable one): images, env names, other container fields, "
        "other top-level fields; never values.",
    )


OUTBOX_LIMIT = 32


class PendingEvent(StatusModel):
    """An Event decided with a status change and not yet confirmed as recorded.

    Written with the status that decided it, before the operator acts, so that a crash
    at any instant loses no Event: the next reconcile posts what is still pending. The
    Event's name is `<name>.<id>`, so posting it twice records it once."""

    id: str = Field(pattern=r"^[0-9a-f]{16}$", description="Names the Event: `<name>.<id>`.")
    type: str = Field("Normal", pattern=r"^(Normal|Warning)$", description="Normal or Warning.")
    reason: str = Field(max_length=128, description="The Event's reason.")
    message: str = Field("", max_length=1024, description="The Event's note.")


class PendingNotification(StatusModel):
    """A webhook notification decided with a status change and not yet delivered (or
    given up on); delivered again after a crash, so at least once."""

    id: str = Field(pattern=r"^[0-9a-f]{16}$", description="Identifies it across restarts.")
    kind: NotificationEvent = Field(description="The event.")
    revision: str = Field("", description="The revision it is about.")
    reason: str = Field("", max_length=1024, description="Why, in one CamelCase word.")
    message: str = Field("", description="Why, for people.")
    at: Timestamp | None = Field(None, description="When it happened.")
    stage: str = Field("", max_length=64, description="The stage then.")
    weight: int = Field(0, ge=0, le=100, description="The canary weight then.")
    step: int = Field(0, ge=0, description="The canary step then.")
    check: str = Field("", max_length=253, description="The acceptance check (CheckFailed).")
    images: list[str] = Field(
        default_factory=list,
        max_length=32,
        description="The revision's container images, when the spec still holds it.",
    )


class CheckState(StrEnum):
    PENDING = "Pending"
    RUNNING = "Running"
    PASSED = "Passed"
    FAILED = "Failed"


class CheckStatus(StatusModel):
    """One acceptance check's state for one revision (and canary step)."""

    name: str = Field(description="Name of the check.")
    hook: CheckHook = Field(description="When it runs.")
    revision: str = Field(description="The revision it checks.")
    state: CheckState = Field(description="Pending (a retry is due), Running, Passed or Failed.")
    attempts: int = Field(0, ge=0, description="Attempts begun so far.")
    step: int | None = Field(None, ge=0, description="The canary step (EachStep checks).")
    started_at: Timestamp | None = Field(None, description="When the latest attempt began.")
    finished_at: Timestamp | None = Field(None, description="When the latest attempt ended.")
    message: str = Field("", max_length=4096, description="Why, for people.")


class ShadowRouteStatus(StatusModel):
    """What the operator observed and decided; all progress lives here."""

    observed_generation: int = Field(0, ge=0, description="The spec generation acted on.")
    replicas: int = Field(
        0,
        ge=0,
        description="Pods the primary Deployment has (its status.replicas): the scale "
        "subresource's current count, which an HorizontalPodAutoscaler reads.",
    )
    selector: str = Field(
        "",
        description="Label selector of the primary pods, as a string: the scale "
        "subresource's selector, which an HorizontalPodAutoscaler reads.",
    )
    phase: Phase = Field(
        Phase.INITIALIZING, description="Where the current revision is, as people see it."
    )
    stage: Stage | None = Field(
        None, description="The stage the rollout is in; phase shows Paused over it while held."
    )
    stable_revision: str = Field(
        "", description="Revision (template hash) that serves the live traffic when stable."
    )
    primary_revision: str = Field(
        "",
        description="Revision the primary Deployment runs; differs from stableRevision "
        "while a promotion hands over.",
    )
    canary_revision: str = Field(
        "", description="Revision being rolled out; empty when there is no rollout."
    )
    stable_image: str = Field(
        "",
        max_length=IMAGES_LIMIT,
        description="The container images of stableRevision, `name=image` (registry host "
        "left out); `kubectl get -o wide` shows it.",
    )
    canary_image: str = Field(
        "",
        max_length=IMAGES_LIMIT,
        description="The container images of canaryRevision; unset when there is no rollout.",
    )
    canary_changes: str = Field(
        "",
        max_length=CHANGES_LIMIT,
        description="What canaryRevision's template changes from stableRevision's "
        "(`image app: web:1 → web:2; env FOO changed`; names, never values).",
    )
    current_step: int = Field(0, ge=0, description="Index of the current canary step.")
    canary_weight: int = Field(
        0, ge=0, le=100, description="Percent of traffic on the new version."
    )
    mirror_percent: int = Field(
        0, ge=0, le=100, description="Percent of traffic mirrored to the shadow."
    )
    stage_started_at: Timestamp | None = Field(
        None, description="When the current stage began (the progress deadline)."
    )
    stage_ready_at: Timestamp | None = Field(
        None, description="When the current stage's pods became ready (the pause timer)."
    )
    waiting_for_promotion: bool = Field(
        False, description="The rollout holds at a step that waits for the promote gate."
    )
    user_paused: bool = Field(False, description="Held by the pause gate until resumed.")
    rollout_started_at: Timestamp | None = Field(
        None, description="When the current rollout began."
    )
    promoted_at: Timestamp | None = Field(
        None, description="When the last promotion finished (the keep-warm timer)."
    )
    previous_revision: str = Field("", description="Revision kept warm after the last promotion.")
    rolled_back_revision: str = Field(
        "", description="Revision last rolled back (the cooldown applies to it)."
    )
    rolled_back_at: Timestamp | None = Field(None, description="When it was rolled back.")
    rollback_reason: str = Field(
        "",
        max_length=1024,
        pattern=CONDITION_REASON_PATTERN,
        description="Why it was rolled back, in one CamelCase word.",
    )
    gates: GateStatus = Field(
        default_factory=GateStatus, description="Gate tokens already acted on."
    )
    message: str = Field("", description="One-line summary for people.")
    conditions: list[Condition] = Field(
        default_factory=list,
        description=(
            "Ready (the spec's template serves all traffic: False during a rollout and "
            "after a rollback), Available, Reconciling, Stalled, Progressing, Degraded and "
            "AnalysisHealthy."
        ),
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["type"],
        },
    )
    analysis: AnalysisStatus = Field(
        default_factory=AnalysisStatus, description="The last analysis run."
    )
    comparison: ComparisonStatus | None = Field(
        None, description="The shadow comparison of the revision on trial, when it compares."
    )
    checks: list[CheckStatus] = Field(
        default_factory=list,
        max_length=2 * MAX_CHECKS * (MAX_CANARY_STEPS + 1),
        description="The acceptance checks of the revisions rolled out and serving.",
    )
    history: list[HistoryEntry] = Field(
        default_factory=list,
        max_length=HISTORY_LIMIT,
        description=f"The last {HISTORY_LIMIT} rollouts, newest first.",
    )
    pending_events: list[PendingEvent] = Field(
        default_factory=list,
        max_length=OUTBOX_LIMIT,
        description="Events decided and not yet confirmed as recorded (normally empty).",
    )
    pending_notifications: list[PendingNotification] = Field(
        default_factory=list,
        max_length=OUTBOX_LIMIT,
        description="Webhook notifications decided and not yet delivered (normally empty).",
    )

    @classmethod
    def from_body(cls, status: Mapping[str, Any] | None) -> ShadowRouteStatus:
        """Read a stored status; unknown keys (a newer operator's, kopf's) are ignored."""
        return cls.model_validate(_plain(status or {}))

    def condition(self, condition_type: str) -> Condition | None:
        """The condition of that type, if reported."""
        return next((c for c in self.conditions if c.type == condition_type), None)

    def set_condition(
        self,
        condition_type: str,
        status: ConditionStatus,
        reason: str,
        message: str,
        now: str,
        observed_generation: int | None = None,
    ) -> Condition:
        """Report a condition, keeping lastTransitionTime unless its status changes."""
        previous = self.condition(condition_type)
        changed = previous is None or previous.status != status
        updated = Condition(
            type=condition_type,
            status=status,
            reason=reason,
            message=message,
            last_transition_time=now if changed else previous.last_transition_time,
            observed_generation=observed_generation,
        )
        others = [c for c in self.conditions if c.type != condition_type]
        position = next(
            (i for i, c in enumerate(self.conditions) if c.type == condition_type),
            len(others),
        )
        self.conditions = [*others[:position], updated, *others[position:]]
        return updated

    def record(self, entry: HistoryEntry) -> None:
        """Add to the front of the history, dropping the oldest entries past the limit."""
        self.history = [entry, *self.history][:HISTORY_LIMIT]


# --------------------------------------------------------------------------- the resource

_NAME_TOO_LONG = (
    f"metadata.name must be at most {MAX_NAME_LENGTH} characters: the operator names its "
    "Services <name>-primary, <name>-canary and <name>-shadow, which must fit in 63"
)
_COMPARED_NAME_TOO_LONG = (
    f"metadata.name must be at most {MAX_COMPARED_NAME_LENGTH} characters with "
    "spec.strategy.shadow.compare: the operator names its Services <name>-baseline and "
    "<name>-comparator, which must fit in 63"
)
_NAME_NOT_DNS_1035 = (
    "metadata.name must be a DNS-1035 label (lowercase letters, digits and '-', "
    "starting with a letter): it names Services"
)


class ShadowRoute(_WireModel):
    """ShadowRoute shadows, canaries and promotes new versions of a service, gated by
    Prometheus."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="ignore",
        json_schema_extra=cel_rules(
            (f"size(self.metadata.name) <= {MAX_NAME_LENGTH}", _NAME_TOO_LONG),
            (
                "!has(self.spec.strategy.shadow) || !has(self.spec.strategy.shadow.compare) "
                f"|| size(self.metadata.name) <= {MAX_COMPARED_NAME_LENGTH}",
                _COMPARED_NAME_TOO_LONG,
            ),
            (f"self.metadata.name.matches('{DNS_1035_LABEL_PATTERN}')", _NAME_NOT_DNS_1035),
        ),
    )

    api_version: str = Field(
        API_VERSION, description="The versioned schema of this object: shadowroute.io/v1alpha1."
    )
    kind: str = Field(KIND, description="The kind of this object: ShadowRoute.")
    metadata: Annotated[dict[str, Any], WithJsonSchema({"type": "object"})] = Field(
        default_factory=dict, description="Standard object metadata."
    )
    spec: ShadowRouteSpec = Field(description="The service and the version it should run.")
    status: ShadowRouteStatus = Field(
        default_factory=ShadowRouteStatus,
        description="What the operator observed and decided.",
    )

    @field_validator("metadata")
    @classmethod
    def _name_fits_child_names(cls, metadata: dict[str, Any]) -> dict[str, Any]:
        name = metadata.get("name")
        if name is None:  # not yet named (generateName); the API server checks later
            return metadata
        if len(name) > MAX_NAME_LENGTH:
            raise ValueError(_NAME_TOO_LONG)
        if not re.fullmatch(DNS_1035_LABEL_PATTERN, name):
            raise ValueError(_NAME_NOT_DNS_1035)
        return metadata

    @model_validator(mode="after")
    def _name_fits_comparison_names(self) -> Self:
        name = self.metadata.get("name")
        shadow = self.spec.strategy.shadow
        compares = shadow is not None and shadow.compare is not None
        if compares and name is not None and len(name) > MAX_COMPARED_NAME_LENGTH:
            raise ValueError(_COMPARED_NAME_TOO_LONG)
        return self

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> ShadowRoute:
        """Parse a whole object as kopf or the API server hands it over."""
        plain = _plain(body)
        plain["status"] = ShadowRouteStatus.from_body(plain.get("status"))
        return cls.model_validate(plain)

    @staticmethod
    def spec_from_body(body: Mapping[str, Any]) -> ShadowRouteSpec:
        """The validated spec of an object as kopf or the API server hands it over."""
        return ShadowRouteSpec.model_validate(_plain(body.get("spec") or {}))
