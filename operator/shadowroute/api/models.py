"""The ShadowRoute resource as pydantic models: the single source of truth for its shape.

The CRD's OpenAPI schema, CEL rules included, is generated from these classes
(``shadowroute.api.crd``), and the operator parses what the API server hands it with
the same classes, so Python and the API server agree on what a valid ShadowRoute is.
Every CEL rule placed on a model here has a Python twin (a validator) so that a spec
built in Python is held to the same rules as one applied with kubectl.

Field names are snake_case in Python and camelCase on the wire (``to_k8s``).
Timestamps are RFC 3339 strings, as the API server stores them, so dumping a status
that was read gives back exactly what was read.
"""

from __future__ import annotations

import itertools
import math
import re
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

from .duration import DURATION_MAX_LENGTH, DURATION_PATTERN

GROUP = "shadowroute.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "ShadowRoute"
LIST_KIND = "ShadowRouteList"
PLURAL = "shadowroutes"
SINGULAR = "shadowroute"
SHORT_NAMES = ("sr",)
CATEGORIES = ("shadowroute",)
CRD_NAME = f"{PLURAL}.{GROUP}"

CHILD_SUFFIXES = ("-primary", "-canary", "-shadow")
MAX_NAME_LENGTH = 63 - max(len(suffix) for suffix in CHILD_SUFFIXES)
"""55: the children's Service names (``<name>-primary``) must stay DNS-1035 labels."""

HISTORY_LIMIT = 20
MAX_CANARY_STEPS = 20
MAX_SERVICE_PORTS = 16
MAX_METRICS = 20

DNS_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_1035_LABEL_PATTERN = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"
CONDITION_REASON_PATTERN = r"^([A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?)?$"
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")


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


class Phase(StrEnum):
    """Where the ShadowRoute is in the life of a revision."""

    INITIALIZING = "Initializing"
    STABLE = "Stable"
    SHADOWING = "Shadowing"
    PROGRESSING = "Progressing"
    PAUSED = "Paused"
    PROMOTING = "Promoting"
    SUCCEEDED = "Succeeded"
    ROLLED_BACK = "RolledBack"
    FAILED = "Failed"


class Stage(StrEnum):
    """The stage a revision is in; the phase shows Paused over it while it is held."""

    INITIALIZING = "Initializing"
    STABLE = "Stable"
    SHADOWING = "Shadowing"
    PROGRESSING = "Progressing"
    PROMOTING = "Promoting"
    SUCCEEDED = "Succeeded"
    ROLLED_BACK = "RolledBack"
    FAILED = "Failed"


class ConditionStatus(StrEnum):
    """Status of a condition, as in every Kubernetes API."""

    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class ConditionType(StrEnum):
    """The condition types every module reports under (see DESIGN.md)."""

    READY = "Ready"
    PROGRESSING = "Progressing"
    DEGRADED = "Degraded"
    ANALYSIS_HEALTHY = "AnalysisHealthy"


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


def parse_timestamp(text: str) -> datetime:
    """An RFC 3339 timestamp as an aware UTC datetime; ValueError if it is not one."""
    if not isinstance(text, str) or not _RFC3339.fullmatch(text):
        raise ValueError(f"not an RFC 3339 timestamp: {text!r} (like 2026-11-25T05:00:00Z)")
    return datetime.fromisoformat(text.upper().replace("Z", "+00:00")).astimezone(UTC)


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
"""A Go-style duration string ("500ms", "30s", "5m", "1h30m"); see ``parse_duration``."""

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


def cel_rules(*rules: tuple[str, str]) -> dict[str, Any]:
    """``x-kubernetes-validations`` for json_schema_extra, from (rule, message) pairs."""
    return {"x-kubernetes-validations": [{"rule": rule, "message": msg} for rule, msg in rules]}


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
        description="Ports the Services expose.",
        json_schema_extra=cel_rules(
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


class ShadowStage(SpecModel):
    """Mirror a share of live requests to the new version before any user sees it."""

    duration: Duration = Field(description="How long to shadow before the canary starts.")
    mirror_percent: int = Field(
        100, ge=0, le=100, description="Percent of live requests copied to the shadow."
    )


class StepPause(SpecModel):
    """A wait after a canary step; without a duration it waits for a person to promote."""

    duration: Duration | None = Field(
        None,
        description="How long to hold this step; unset means wait for the promote gate.",
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

    preview_duration: Duration | None = Field(
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

    cooldown: Duration = Field(
        "5m",
        description="How long a rolled-back revision is left alone before it may be "
        "retried automatically.",
    )


class TrafficSpec(SpecModel):
    """The data plane that carries the weights and the mirror."""

    provider: TrafficProvider = Field(
        TrafficProvider.NONE,
        description="gatewayapi, nginx or istio; none weights by replica ratio behind "
        "one Service and cannot mirror.",
    )


class MetricCheck(SpecModel):
    """One Prometheus query whose value must stay within bounds."""

    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            ("has(self.min) || has(self.max)", "at least one of min or max must be set"),
            (
                "!has(self.min) || !has(self.max) || self.min <= self.max",
                "min must not be greater than max",
            ),
        )
    )

    name: DnsLabel = Field(description="Name of the check (a DNS label), unique in the list.")
    query: str = Field(min_length=1, description="PromQL query returning one value.")
    min: float | None = Field(None, description="Lowest passing value.")
    max: float | None = Field(None, description="Highest passing value.")

    @model_validator(mode="after")
    def _bounded(self) -> Self:
        if self.min is None and self.max is None:
            raise ValueError("at least one of min or max must be set")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("min must not be greater than max")
        return self


class AnalysisSpec(SpecModel):
    """The health checks asked of Prometheus at every stage."""

    interval: Duration = Field("30s", description="How often the checks run.")
    failure_limit: int = Field(
        2,
        ge=0,
        le=100,
        description="Failed runs in a row tolerated; one more rolls back.",
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


class ShadowRouteSpec(SpecModel):
    """The service and the version it should run; the operator never writes it."""

    replicas: int = Field(1, ge=0, le=1000, description="Pods of the primary version.")
    template: PodTemplate = Field(
        description="The desired version's pod template; changing it starts a rollout."
    )
    service: ServiceSpec = Field(description="The Services in front of the pods.")
    strategy: Strategy = Field(description="How a new version is delivered.")
    progress_deadline: Duration = Field(
        "10m",
        description="A new version not ready within this long is rolled back.",
    )
    keep_warm: Duration = Field(
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
        json_schema_extra={"default": {}},
    )
    analysis: AnalysisSpec | None = Field(
        None, description="Prometheus checks; unset means readiness alone gates progress."
    )


# --------------------------------------------------------------------------- status


class GateStatus(StatusModel):
    """The last acknowledged token of each gate annotation, so a gate acts only once."""

    promote: str = Field("", description="Last promote token acted on.")
    abort: str = Field("", description="Last abort token acted on.")
    pause: str = Field("", description="Last pause token acted on.")
    resume: str = Field("", description="Last resume token acted on.")
    retry: str = Field("", description="Last retry token acted on.")


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
    query: str = Field("", description="The query as sent, placeholders resolved.")
    checked_at: Timestamp | None = Field(None, description="When the query was answered.")
    message: str = Field("", description="Why the verdict, for people.")


class AnalysisStatus(StatusModel):
    """The last analysis run."""

    consecutive_failures: int = Field(0, ge=0, description="Failed runs in a row.")
    last_run_at: Timestamp | None = Field(None, description="When the checks last ran.")
    metrics: list[MetricResult] = Field(
        default_factory=list, description="Result of each check in the last run."
    )


class HistoryEntry(StatusModel):
    """How one rollout ended."""

    revision: str = Field(description="The revision rolled out.")
    outcome: Outcome = Field(description="Promoted, RolledBack, Cancelled or Superseded.")
    reason: str = Field("", description="Why, in one CamelCase word.")
    message: str = Field("", description="Why, for people.")
    at: Timestamp | None = Field(None, description="When it ended.")


class ShadowRouteStatus(StatusModel):
    """What the operator observed and decided; all progress lives here."""

    observed_generation: int = Field(0, ge=0, description="The spec generation acted on.")
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
        description="Ready, Progressing, Degraded and AnalysisHealthy.",
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["type"],
        },
    )
    analysis: AnalysisStatus = Field(
        default_factory=AnalysisStatus, description="The last analysis run."
    )
    history: list[HistoryEntry] = Field(
        default_factory=list,
        max_length=HISTORY_LIMIT,
        description=f"The last {HISTORY_LIMIT} rollouts, newest first.",
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
