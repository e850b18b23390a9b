"""The plugin's API calls, synchronous (a CLI waits anyway), with errors turned into
`CliError`s that carry a message for people and the exit code."""

from __future__ import annotations

from typing import Any

from ..api_errors import ApiError, api_reason
from ..kube import apiserver
from ..names import CLI_FIELD_MANAGER as FIELD_MANAGER
from ..names import FIELD_MANAGER as OPERATOR_FIELD_MANAGER
from ..names import GROUP, KIND, MANAGED_BY, MANAGER, NAME_LABEL, PLURAL, VERSION
from .exit_codes import ERROR, NOT_FOUND, USAGE

ROUTES = f"/apis/{GROUP}/{VERSION}"


class CliError(Exception):
    def __init__(self, message: str, code: int = ERROR, status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.status = status  # the HTTP status, when the API server answered


def api_error(exc: ApiError, what: str, path: str = "") -> CliError:
    """A CliError with the API server's own words and a hint for the usual causes."""
    reason, message = api_reason(exc, "Error")
    message = " ".join(message.split())  # one line, whatever the server wrote
    code, status = ERROR, exc.status
    if status == 403:
        text = f"{what}: forbidden: {message}"
    elif status == 401:
        text = f"{what}: unauthorized: check your kubeconfig's credentials"
    elif status == 404 and path.startswith(ROUTES) and "could not find the requested" in message:
        text = (
            f"{what}: the API server does not serve {PLURAL}.{GROUP}: is the CRD installed? "
            "(kubectl apply --server-side -f crds/)"
        )
    elif status == 404:
        text, code = f"{what}: {message}", NOT_FOUND
    elif status in (400, 422):
        text, code = f"{what}: rejected by the API server: {message}", USAGE
    else:
        text = f"{what}: {reason} ({status}): {message}"
    return CliError(text, code, status)


class Cluster:
    """One API server, as named by the kubeconfig (or the pod's service account),
    through the plugin's own small client (kube/apiserver.py)."""

    def __init__(self, kubeconfig: str | None = None, context: str | None = None) -> None:
        try:
            endpoint = apiserver.load(kubeconfig, context)
        except apiserver.ConfigError as exc:
            raise CliError(str(exc)) from None
        self.default_namespace = endpoint.namespace
        self.server = endpoint.server
        self.api = apiserver.ApiServer(endpoint, timeout=30)

    def request(
        self,
        method: str,
        path: str,
        *,
        query: list[tuple[str, Any]] | None = None,
        body: Any = None,
        content_type: str | None = None,
        what: str = "",
    ) -> Any:
        try:
            return self.api.request(method, path, query=query, body=body, content_type=content_type)
        except apiserver.Unreachable as exc:
            raise CliError(f"cannot reach the API server at {self.server}: {exc}") from None
        except ApiError as exc:
            raise api_error(exc, what or f"{method} {path}", path) from None

    # ------------------------------------------------------------------ ShadowRoutes

    def get_route(self, namespace: str, name: str) -> dict[str, Any]:
        try:
            return self.request(
                "GET",
                f"{ROUTES}/namespaces/{namespace}/{PLURAL}/{name}",
                what=f"{KIND} {namespace}/{name}",
            )
        except CliError as exc:
            if exc.code == NOT_FOUND:
                raise self.missing_namespace(namespace) or CliError(
                    f"{KIND} {name!r} not found in namespace {namespace!r}", NOT_FOUND, 404
                ) from None
            raise

    def missing_namespace(self, namespace: str) -> CliError | None:
        """The error to give when `namespace` does not exist; None when it does, or
        when this identity may not tell (asked only after a 404 or an empty list)."""
        try:
            self.request("GET", f"/api/v1/namespaces/{namespace}", what=f"namespace {namespace}")
        except CliError as exc:
            if exc.status == 404:
                return CliError(f"namespace {namespace!r} not found", NOT_FOUND, 404)
            if exc.status in (401, 403):
                return None
            raise
        return None

    def find_route(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return self.get_route(namespace, name)
        except CliError as exc:
            if exc.code == NOT_FOUND:
                return None
            raise

    def comparator_summary(self, namespace: str, name: str) -> dict[str, Any]:
        """The comparator's /summary, through the API server's service proxy (needs get
        on services/proxy): it answers only while a revision shadows."""
        service = f"{name}-comparator"
        path = f"/api/v1/namespaces/{namespace}/services/http:{service}:admin/proxy/summary"
        try:
            return self.request("GET", path, what=f"the comparator of {name}")
        except CliError as exc:
            if exc.status in (404, 502, 503):
                raise CliError(
                    f"no comparator answers for {name!r}: it runs only while a revision "
                    f"shadows (status.comparison keeps the last verdict) [{exc}]",
                    NOT_FOUND,
                    exc.status,
                ) from None
            raise

    def list_routes(self, namespace: str | None) -> list[dict[str, Any]]:
        path = (
            f"{ROUTES}/{PLURAL}"
            if namespace is None
            else f"{ROUTES}/namespaces/{namespace}/{PLURAL}"
        )
        data = self.request("GET", path, what=f"list {PLURAL}")
        items = data.get("items") or []
        if not items and namespace is not None:
            missing = self.missing_namespace(namespace)
            if missing is not None:
                raise missing
        return sorted(
            items, key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"]["name"])
        )

    def annotate(self, namespace: str, name: str, key: str, value: str) -> dict[str, Any]:
        """Set one annotation (a merge patch of metadata only: .spec is never touched)."""
        return self.request(
            "PATCH",
            f"{ROUTES}/namespaces/{namespace}/{PLURAL}/{name}",
            query=[("fieldManager", FIELD_MANAGER)],
            body={"metadata": {"annotations": {key: value}}},
            content_type="application/merge-patch+json",
            what=f"annotate {KIND} {namespace}/{name}",
        )

    def dry_run_apply(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        """Server-side apply with dryRun=All: the API server validates (schema, CEL) and
        defaults the object, and stores nothing."""
        from ..kube.client import APPLY_PATCH, apply_query  # plan only: the operator's client

        name = body["metadata"]["name"]
        obj = {**body, "metadata": {**body["metadata"], "namespace": namespace}}
        return self.request(
            "PATCH",
            f"{ROUTES}/namespaces/{namespace}/{PLURAL}/{name}",
            query=apply_query(FIELD_MANAGER, True, dry_run=True),
            body=obj,
            content_type=APPLY_PATCH,
            what=f"server-side dry run of {KIND} {namespace}/{name}",
        )

    def dry_run_child(self, obj: dict[str, Any], force: bool) -> None:
        """The operator's server-side apply of one child (its field manager, its
        force), with dryRun=All: nothing is stored; a refusal is a CliError with every
        cause the API server gave."""
        from ..kube.client import APPLY_PATCH, apply_query, resource_path  # plan only

        meta = obj["metadata"]
        self.request(
            "PATCH",
            resource_path(obj),
            query=apply_query(OPERATOR_FIELD_MANAGER, force, dry_run=True),
            body=obj,
            content_type=APPLY_PATCH,
            what=f"{obj['kind']} {meta['name']}",
        )

    def find(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        """One object of a kind the operator writes; None when it does not exist."""
        from ..kube.client import resource_path  # plan only: the operator's client

        path = resource_path({"kind": kind, "metadata": {"namespace": namespace, "name": name}})
        try:
            return self.request("GET", path, what=f"{kind} {namespace}/{name}")
        except CliError as exc:
            if exc.code == NOT_FOUND:
                return None
            raise

    # ------------------------------------------------------------------ around them

    def children(self, namespace: str, name: str, kinds: tuple[str, ...]) -> dict[str, list]:
        selector = f"{NAME_LABEL}={name},{MANAGED_BY}={MANAGER}"
        from ..kube.client import collection_path  # plan only: it loads the operator's client

        out: dict[str, list] = {}
        for kind in kinds:
            try:
                data = self.request(
                    "GET",
                    collection_path(kind, namespace),
                    query=[("labelSelector", selector)],
                    what=f"list {kind}s",
                )
            except CliError as exc:
                if exc.status == 404:
                    out[kind] = []  # that provider's CRD is not installed
                    continue
                raise
            out[kind] = list(data.get("items") or [])
        return out

    def events(self, namespace: str, name: str) -> list[dict[str, Any]]:
        """Events about the ShadowRoute (the core/v1 view also shows events.k8s.io ones)."""
        data = self.request(
            "GET",
            f"/api/v1/namespaces/{namespace}/events",
            query=[("fieldSelector", f"involvedObject.kind={KIND},involvedObject.name={name}")],
            what="list events",
        )
        return list(data.get("items") or [])
