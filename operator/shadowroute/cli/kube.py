"""The plugin's API calls, synchronous (a CLI waits anyway), with errors turned into
`CliError`s that carry a message for people and the exit code."""

from __future__ import annotations

from typing import Any

import kubernetes
import urllib3
import yaml
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from ..api.models import GROUP, KIND, PLURAL, VERSION
from ..api_errors import api_reason
from ..kube.client import APPLY_PATCH, apply_query, collection_path, raw_request, resource_path
from ..names import CLI_FIELD_MANAGER as FIELD_MANAGER
from ..names import FIELD_MANAGER as OPERATOR_FIELD_MANAGER
from ..names import MANAGED_BY, MANAGER, NAME_LABEL
from .exit_codes import ERROR, NOT_FOUND, USAGE

ROUTES = f"/apis/{GROUP}/{VERSION}"


class CliError(Exception):
    def __init__(self, message: str, code: int = ERROR, status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.status = status  # the HTTP status, when the API server answered


def api_error(exc: ApiException, what: str, path: str = "") -> CliError:
    """A CliError with the API server's own words and a hint for the usual causes."""
    reason, message = api_reason(exc, "Error")
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
    """One API server, as named by the kubeconfig (or the pod's service account)."""

    def __init__(self, kubeconfig: str | None = None, context: str | None = None) -> None:
        self.default_namespace = "default"
        config = kubernetes.client.Configuration()
        try:
            kubernetes.config.load_kube_config(
                config_file=kubeconfig, context=context, client_configuration=config
            )
            _, active = kubernetes.config.list_kube_config_contexts(config_file=kubeconfig)
            if context:
                contexts, _ = kubernetes.config.list_kube_config_contexts(config_file=kubeconfig)
                active = next((c for c in contexts if c["name"] == context), active)
            self.default_namespace = (active or {}).get("context", {}).get("namespace") or "default"
        except (kubernetes.config.ConfigException, FileNotFoundError) as exc:
            if kubeconfig or context:
                raise CliError(f"cannot load kubeconfig: {exc}") from exc
        except (yaml.YAMLError, TypeError, AttributeError, KeyError, ValueError) as exc:
            # Not YAML, or YAML that is not a kubeconfig (the client's loader assumes
            # its shape): one line, never the loader's traceback.
            where = kubeconfig or "the kubeconfig ($KUBECONFIG or ~/.kube/config)"
            if isinstance(exc, yaml.YAMLError):
                mark = getattr(exc, "problem_mark", None)
                line = f" at line {mark.line + 1}" if mark is not None else ""
                why = f"not YAML{line}"
            else:
                why = "YAML, but not a Config with clusters, contexts and users"
            raise CliError(f"cannot load kubeconfig: {where} is {why}") from exc
            try:
                kubernetes.config.load_incluster_config(client_configuration=config)
            except kubernetes.config.ConfigException:
                raise CliError(
                    f"no cluster to talk to: {exc} (set KUBECONFIG or pass --kubeconfig)"
                ) from exc
        config.retries = 1
        self.server = config.host
        self.api = ApiClient(config)
        self.core = kubernetes.client.CoreV1Api(self.api)

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
            return raw_request(
                self.api, method, path, query=query, body=body, content_type=content_type,
                timeout=30,
            )  # fmt: skip
        except urllib3.exceptions.HTTPError as exc:
            raise CliError(f"cannot reach the API server at {self.server}: {exc}") from exc
        except ApiException as exc:
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
                raise CliError(
                    f"{KIND} {name!r} not found in namespace {namespace!r}", NOT_FOUND, 404
                ) from None
            raise

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
