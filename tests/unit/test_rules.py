"""A rule declared once gives the CEL the API server runs and the check the models
run; both say the same on every object (the API server's side is checked against the
real one in tests/e2e/test_crd_validation.py)."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from shadowroute.api.rules import Has, Is, Lacks, Rule


class Wire:
    def __init__(self, d: dict[str, Any]) -> None:
        self.d = d

    def to_k8s(self) -> dict[str, Any]:
        return self.d


def test_the_cel_spelling() -> None:
    r = Rule("m", when=(Is("provider", "nginx"),), must=Lacks("preview.pathPrefix"))
    assert (
        r.rule()
        == "self.provider != 'nginx' || !has(self.preview) || !has(self.preview.pathPrefix)"
    )
    r = Rule("m", when=(Has("gatewayAPI.httpRoute"),), must=Lacks("stickiness"))
    assert r.rule() == (
        "!has(self.gatewayAPI) || !has(self.gatewayAPI.httpRoute) || !has(self.stickiness)"
    )
    assert Rule("m", when=(Has("nginx"),), must=Is("provider", "nginx")).rule() == (
        "!has(self.nginx) || self.provider == 'nginx'"
    )


def cel_eval(rule: str, d: dict[str, Any]) -> bool:
    """A tiny evaluator of the generated shape: `||` of has / !has / == / != terms."""

    def term(t: str) -> bool:
        t = t.strip()
        if t.startswith("!has(self.") or t.startswith("has(self."):
            path = t[t.index("self.") + 5 : -1]
            node: Any = d
            for key in path.split("."):
                node = node.get(key) if isinstance(node, dict) else None
            return (node is None) if t.startswith("!") else (node is not None)
        field, op, value = t.replace("self.", "").split(" ", 2)
        return (d.get(field) == value.strip("'")) == (op == "==")

    return any(term(t) for t in rule.split("||"))


wire = st.fixed_dictionaries(
    {"provider": st.sampled_from(["none", "nginx", "gatewayapi"])},
    optional={
        "preview": st.fixed_dictionaries({}, optional={"pathPrefix": st.just("/p")}),
        "nginx": st.just({}),
        "gatewayAPI": st.fixed_dictionaries({}, optional={"httpRoute": st.just({"name": "r"})}),
    },
)


@given(wire)
def test_the_python_check_is_the_cel_rule(d: dict[str, Any]) -> None:
    for r in (
        Rule("a", when=(Is("provider", "nginx"),), must=Lacks("preview.pathPrefix")),
        Rule("b", when=(Has("gatewayAPI.httpRoute"),), must=Lacks("preview")),
        Rule("c", when=(Has("nginx"),), must=Is("provider", "nginx")),
        Rule("d", when=(Is("provider", "gatewayapi"),), must=Has("gatewayAPI")),
    ):
        assert r.broken(Wire(d)) == (not cel_eval(r.rule(), d)), (r.rule(), d)
