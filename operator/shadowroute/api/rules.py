"""Cross-field rules written once: the CRD's CEL rule and the models' Python check both
come from one declaration, so the API server and the operator can never disagree.

A rule reads "whenever every condition of `when` holds, `must` holds", over the wire
form of the object (camelCase keys, defaults filled in, unset fields absent), which is
what CEL sees after the API server defaulted it:

    Rule(when=(Is("provider", "none"),), must=Lacks("port"), message=..., field=".port")

gives the CEL `self.provider != 'none' || !has(self.port)` and the same test in Python.
A rule no condition can say (a list quantifier, say) spells its CEL by hand and carries
its Python twin in the same declaration (`cel=`, `check=`), never paired by position.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Has:
    """The field at this dotted path is set."""

    path: str

    def cel(self) -> str:
        return " && ".join(f"has(self.{p})" for p in _prefixes(self.path))

    def negated(self) -> str:
        return " || ".join(f"!has(self.{p})" for p in _prefixes(self.path))

    def holds(self, wire: dict[str, Any]) -> bool:
        return _lookup(wire, self.path) is not None


@dataclass(frozen=True)
class Lacks:
    """The field at this dotted path is not set."""

    path: str

    def cel(self) -> str:
        return Has(self.path).negated()

    def negated(self) -> str:
        return Has(self.path).cel()

    def holds(self, wire: dict[str, Any]) -> bool:
        return not Has(self.path).holds(wire)


@dataclass(frozen=True)
class Is:
    """The field has this string value."""

    field: str
    value: str

    def cel(self) -> str:
        return f"self.{self.field} == '{self.value}'"

    def negated(self) -> str:
        return f"self.{self.field} != '{self.value}'"

    def holds(self, wire: dict[str, Any]) -> bool:
        return _lookup(wire, self.field) == self.value


Condition = Has | Lacks | Is


@dataclass(frozen=True)
class Rule:
    message: str
    field: str = ""
    """The rule's fieldPath (".strategy.shadow"): where the API server reports it."""
    when: tuple[Condition, ...] = ()
    must: Condition | None = None
    cel: str = ""
    """Only for a rule the conditions cannot say; `check` is then its Python twin."""
    check: Callable[[Any], bool] | None = None

    def rule(self) -> str:
        if self.cel:
            return self.cel
        assert self.must is not None, "a rule needs `must`, or `cel` and `check`"
        return " || ".join([*(c.negated() for c in self.when), self.must.cel()])

    def broken(self, model: Any) -> bool:
        if self.check is not None:
            return not self.check(model)
        assert self.must is not None
        wire = model.to_k8s()
        return all(c.holds(wire) for c in self.when) and not self.must.holds(wire)


def validations(rules: Sequence[Rule]) -> dict[str, Any]:
    """``x-kubernetes-validations`` for a model's json_schema_extra."""
    out = []
    for r in rules:
        entry = {"rule": r.rule(), "message": r.message}
        if r.field:
            entry["fieldPath"] = r.field
        out.append(entry)
    return {"x-kubernetes-validations": out}


def enforce(model: Any, rules: Sequence[Rule]) -> None:
    """Raise the message of the first rule the model breaks, as the API server would."""
    for r in rules:
        if r.broken(model):
            raise ValueError(r.message)


def _prefixes(path: str) -> list[str]:
    parts = path.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


def _lookup(wire: dict[str, Any], path: str) -> Any:
    value: Any = wire
    for key in path.split("."):
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value
