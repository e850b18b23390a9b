"""The children's own LIST-then-WATCH (kube/watch.py) against the real API server, for
what the session's cluster cannot show through the operator (every route kind's CRD
is installed before the tests start): a kind whose CRD is not installed is reported
missing, waited for by a watch of that CRD, then listed and watched once the CRD is
added, with nothing polled meanwhile. A CRD of its own, made and deleted here."""

from __future__ import annotations

import threading
import uuid
from typing import Any

import pytest
import yaml
from shadowroute.kube import apiserver
from shadowroute.kube.watch import KindWatch

from .conftest import Cluster, KubectlFn, wait_for

pytestmark = pytest.mark.e2e
GROUP = "watchtest.shadowroute.io"


def crd(plural: str) -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {"plural": plural, "singular": plural[:-1], "kind": "Widget" + plural[1:-1]},
            "versions": [{
                "name": "v1", "served": True, "storage": True,
                "schema": {"openAPIV3Schema": {"type": "object",
                                               "x-kubernetes-preserve-unknown-fields": True}},
            }],
        },
    }  # fmt: skip


def test_a_kind_whose_crd_comes_later_is_watched_once_it_is_added(
    cluster: Cluster, kubectl: KubectlFn, own_namespace: str
) -> None:
    ns = own_namespace
    plural = f"w{uuid.uuid4().hex[:8]}s"
    definition = crd(plural)
    kind = definition["spec"]["names"]["kind"]
    said: list[tuple[str, Any]] = []
    lock = threading.Lock()
    reads: list[str] = []

    def sink(what: str, payload: Any) -> None:
        with lock:
            said.append((what, payload))

    def seen(what: str) -> list[Any]:
        with lock:
            return [p for w, p in said if w == what]

    endpoint = apiserver.load(cluster.kubeconfig, env={})
    path = f"/apis/{GROUP}/v1/namespaces/{ns}/{plural}"
    watch = KindWatch(
        endpoint, kind, path, sink, selector="app.kubernetes.io/managed-by=shadowroute",
        crd=f"{plural}.{GROUP}", count_read=reads.append,
    )  # fmt: skip
    watch.start()
    try:
        wait_for(lambda: seen("missing") and len(reads) >= 2, 30, what="the kind missing")
        # One LIST of the kind, one LIST of CRDs by name: then it waits on a watch.
        kubectl("get", "crd", "-o", "name")  # a moment in which a poll would show
        assert reads == [kind, kind], reads
        kubectl("apply", "-f", "-", input=yaml.safe_dump(definition))
        kubectl("wait", "--for=condition=Established", f"crd/{plural}.{GROUP}", "--timeout=60s")
        wait_for(lambda: seen("listed"), 60, what="the kind listed once its CRD was added")
        assert seen("listed")[0][0] == set()
        widget = {
            "apiVersion": f"{GROUP}/v1", "kind": kind,
            "metadata": {"name": "web", "namespace": ns, "labels": {
                "app.kubernetes.io/managed-by": "shadowroute", "shadowroute.io/name": "web"}},
        }  # fmt: skip
        kubectl("apply", "-f", "-", input=yaml.safe_dump(widget))
        wait_for(lambda: seen("put"), 30, what="the object's watch event")
        assert seen("put")[0]["metadata"]["name"] == "web"
        kubectl("delete", f"{plural}.{GROUP}", "web", "-n", ns)
        wait_for(lambda: seen("deleted"), 30, what="the deletion's watch event")
    finally:
        watch.stop()
        watch.join(10)
        kubectl("delete", "crd", f"{plural}.{GROUP}", "--wait=false", check=False)
    assert not watch._thread.is_alive(), "stop ends the watch's thread"
