"""One Prometheus query for the custom queries of many routes: pure.

A custom template is PromQL the author wrote; nothing says which of its labels tell one
route from another, so it cannot be regrouped the way a preset is (presets.Family).
What can be shared is the request: the routes' own queries, each tagged with a label
that names it, joined by `or` into one query evaluated at the tick, and split back by
that label. Each member's samples are exactly what its own query answers (the tag
label is taken off; `or` keeps every series of every member, since no two members'
series share the tag). Prometheus still evaluates each member's expression; what
batching saves is N-1 requests per tick (bench/scale.py counts them).

A member whose query answers a scalar or a string (label_replace takes a vector)
makes Prometheus refuse the union; the batcher then asks each member alone, and keeps
the one refused alone out of later unions (prometheus.Client).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from .judge import Sample

TAG = "shadowroute_member"
"""The label naming a member in the union's answer."""
MAX_MEMBERS = 100
"""Members of one union at most: the query holds each member's text."""


@dataclass(frozen=True)
class Union:
    """The family of custom queries (a member's key: its query text)."""

    labels: tuple[str, ...] = ()
    max_members: int = MAX_MEMBERS

    def query(self, members: Iterable[tuple[str, ...]]) -> str:
        """The members' queries, each tagged with its position, joined by `or`."""
        return " or ".join(
            f'label_replace(({text}), "{TAG}", "{i}", "", "")' for i, (text,) in enumerate(members)
        )

    def split(
        self, samples: Iterable[Sample], members: list[tuple[str, ...]]
    ) -> dict[tuple[str, ...], tuple[Sample, ...]]:
        """Each member's samples, the tag taken off; a member absent: no samples."""
        out: dict[tuple[str, ...], list[Sample]] = {}
        for s in samples:
            labels = dict(s.labels)
            tag = labels.pop(TAG, None)
            if tag is None or not tag.isdigit() or int(tag) >= len(members):
                continue  # not ours: a series cannot lose the tag in label_replace
            out.setdefault(members[int(tag)], []).append(
                Sample(tuple(sorted(labels.items())), s.value)
            )
        return {k: tuple(v) for k, v in out.items()}


UNION = Union()


def key_of(query: str) -> tuple[str, ...]:
    """A custom query's key in the union: its text."""
    return (query,)
