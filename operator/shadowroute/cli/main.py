"""`kubectl shadowroute`: look at and act on ShadowRoute rollouts.

Installed as the console script `kubectl-shadowroute`, which kubectl finds on PATH and
runs for `kubectl shadowroute ...`. kubectl does not pass its own flags to plugins, so
-n/--namespace, --kubeconfig and --context are the plugin's own and work anywhere on
the command line.

A call imports only what its command needs: the read commands (get, status, history,
diff) and the gates load neither pydantic nor the operator's modules beyond
kube/apiserver.py (docs/operations.md); plan and status --watch validate the spec with the
models, so they load them when they run.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TextIO

from .. import __version__
from ..names import KIND, ConditionType, Stage
from . import diff, exit_codes, gates, view
from .kube import CliError, Cluster

if TYPE_CHECKING:  # plan's types only: importing plan loads the models
    from .plan import DryRun, Plan

EPILOG = "exit codes:\n" + "\n".join(f"  {c}  {m}" for c, m in exit_codes.ALL.items())


class Parser(argparse.ArgumentParser):
    """argparse, with a bad flag or command said in one line (not usage plus error)."""

    def error(self, message: str) -> NoReturn:
        self.exit(exit_codes.USAGE, f"error: {message} (see {self.prog} --help)\n")


def _common() -> argparse.ArgumentParser:
    """Flags every command takes, before or after its name (SUPPRESS: the one given
    last wins, and an absent one does not overwrite a given one)."""
    p = Parser(add_help=False)
    p.add_argument("-n", "--namespace", default=argparse.SUPPRESS, help="namespace")
    p.add_argument("--kubeconfig", default=argparse.SUPPRESS, help="path of the kubeconfig")
    p.add_argument("--context", default=argparse.SUPPRESS, help="kubeconfig context")
    return p


def build_parser() -> argparse.ArgumentParser:
    common = _common()
    parser = Parser(
        prog="kubectl shadowroute",
        description=__doc__.splitlines()[0],
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=f"shadowroute {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help_: str) -> argparse.ArgumentParser:
        return sub.add_parser(
            name,
            help=help_,
            description=help_,
            parents=[common],
            epilog=EPILOG,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )

    p = command("get", "list ShadowRoutes (or show one) with phase, revisions and weights")
    p.add_argument("name", nargs="?")
    p.add_argument("-A", "--all-namespaces", action="store_true")
    p.add_argument("-o", "--output", choices=("table", "wide", "json", "yaml"), default="table")

    p = command("status", "stage, weights, analysis and recent events of one ShadowRoute")
    p.add_argument("name")
    p.add_argument(
        "-w",
        "--watch",
        action="store_true",
        help="keep showing it until the rollout ends: exit 0 when the new revision serves "
        "(Succeeded or Stable), 5 when it was rolled back",
    )
    p.add_argument("--interval", type=float, default=1.0, help="seconds between looks (watch)")
    p.add_argument("--timeout", type=float, default=0, help="give up after this many seconds")
    p.add_argument("-o", "--output", choices=("text", "json"), default="text")

    helps = {
        "promote": "skip the remaining stages of the running rollout and promote it",
        "abort": "roll the running rollout back now (or undo a promotion in its warm period)",
        "pause": "hold the rollout (or the next one) where it is",
        "resume": "release a pause, or advance past a step that waits for a person",
        "retry": "start the rolled-back revision again, ignoring its cooldown",
    }
    for gate in gates.GATES:
        p = command(gate, helps[gate])
        p.add_argument("name")
        p.add_argument(
            "--force",
            action="store_true",
            help="write the gate even when it does nothing in the current phase",
        )
        p.add_argument(
            "--wait", action="store_true", help="wait until the operator acknowledged the gate"
        )
        p.add_argument("--timeout", type=float, default=60, help="seconds --wait waits")

    p = command(
        "diff",
        "the shadow comparison of the revision shadowing now: differing fields with "
        "their noise, and redacted sample pairs side by side",
    )
    p.add_argument("name")
    p.add_argument("--samples", type=int, default=3, help="sample pairs to show (text)")
    p.add_argument("-o", "--output", choices=("text", "json"), default="text")

    p = command("history", "the last rollouts of one ShadowRoute: outcome, reason, time")
    p.add_argument("name")
    p.add_argument("-o", "--output", choices=("table", "json"), default="table")

    p = command(
        "plan",
        "what applying a changed ShadowRoute would do (new revision? stages? which "
        "objects change?) — changes nothing",
    )
    p.add_argument("-f", "--filename", required=True, help="manifest file, or - for stdin")
    p.add_argument(
        "--exit-code",
        action="store_true",
        help=f"exit {exit_codes.CHANGES} when applying would change something",
    )
    p.add_argument(
        "--no-dry-run",
        action="store_true",
        help="do not ask the API server for a server-side dry run of the manifest",
    )
    p.add_argument("-o", "--output", choices=("text", "json"), default="text")
    return parser


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class App:
    def __init__(self, args: argparse.Namespace, out: TextIO, err: TextIO) -> None:
        self.args, self.out, self.err = args, out, err
        self._cluster: Cluster | None = None

    @property
    def cluster(self) -> Cluster:
        if self._cluster is None:
            self._cluster = Cluster(
                getattr(self.args, "kubeconfig", None), getattr(self.args, "context", None)
            )
        return self._cluster

    @property
    def namespace(self) -> str:
        return getattr(self.args, "namespace", None) or self.cluster.default_namespace

    def print(self, text: str = "") -> None:
        print(text, file=self.out, flush=True)

    # ------------------------------------------------------------------ get

    def cmd_get(self) -> int:
        a = self.args
        if a.name and a.all_namespaces:
            raise CliError("a NAME and --all-namespaces do not go together", exit_codes.USAGE)
        if a.name:
            objs = [self.cluster.get_route(self.namespace, a.name)]
        else:
            objs = self.cluster.list_routes(None if a.all_namespaces else self.namespace)
        if a.output in ("json", "yaml"):
            data: Any = objs[0] if a.name else {"apiVersion": "v1", "kind": "List", "items": objs}
            self.print(_dump(data, a.output))
        elif not objs:
            where = "any namespace" if a.all_namespaces else f"namespace {self.namespace}"
            self.print(f"No ShadowRoutes in {where}.")
        else:
            self.print(view.get_rows(objs, now(), a.all_namespaces, a.output == "wide"))
        return exit_codes.OK

    # ------------------------------------------------------------------ status

    def _look(self, name: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        obj = self.cluster.get_route(self.namespace, name)
        return obj, view.sort_events(self.cluster.events(self.namespace, name))

    def cmd_status(self) -> int:
        a = self.args
        if a.interval <= 0 or a.timeout < 0:
            raise CliError("--interval must be positive and --timeout not negative", 2)
        deadline = time.monotonic() + a.timeout if a.timeout else None
        tty = self.out.isatty()
        shown: tuple[Any, ...] | None = None
        while True:
            obj, events = self._look(a.name)
            if a.output == "json":
                text = json.dumps({"object": obj, "events": events}, indent=2)
            else:
                text = view.status_view(obj, events, now())
            key = (
                obj["metadata"].get("resourceVersion"),
                len(events),
                events[-1:] and events[-1].get("metadata", {}).get("resourceVersion"),
            )
            if not a.watch:
                self.print(text)
                return exit_codes.OK
            if tty or key != shown:
                if tty:
                    self.out.write("\033[H\033[2J")  # home, clear: redraw in place
                elif shown is not None:
                    self.print("")
                self.print(text)
                shown = key
            ended, why = rollout_ended(obj)
            if ended is not None:
                self.print(f"\n{why}")
                return ended
            if deadline is not None and time.monotonic() >= deadline:
                self.err.write(f"timed out after {a.timeout:g}s; the rollout has not ended\n")
                return exit_codes.TIMEOUT
            time.sleep(a.interval)

    # ------------------------------------------------------------------ diff

    def cmd_diff(self) -> int:
        a = self.args
        obj = self.cluster.get_route(self.namespace, a.name)
        shadow = ((obj.get("spec") or {}).get("strategy") or {}).get("shadow") or {}
        if "compare" not in shadow:
            raise CliError(
                f"ShadowRoute {a.name!r} does not compare its shadow "
                "(spec.strategy.shadow.compare is unset)",
                exit_codes.NOT_FOUND,
            )
        summary = self.cluster.comparator_summary(self.namespace, a.name)
        if a.output == "json":
            self.print(json.dumps(summary, indent=2))
        else:
            self.print(diff.diff_view(summary, max(a.samples, 0)))
        return exit_codes.OK

    # ------------------------------------------------------------------ gates

    def cmd_gate(self) -> int:
        a = self.args
        gate, ns = a.command, self.namespace
        obj = self.cluster.get_route(ns, a.name)
        status = obj.get("status") or {}
        verdict = gates.check(gate, status, obj.get("spec"))
        if not verdict.ok and not a.force:
            self.err.write(f"refused: {verdict.message} (--force writes the gate anyway)\n")
            return exit_codes.REFUSED
        if verdict.ok and not verdict.write and not a.force:
            self.print(f"{ns}/{a.name}: {verdict.message}; nothing written")
            return exit_codes.OK
        value = gates.token()
        self.cluster.annotate(ns, a.name, gates.annotation(gate), value)
        self.print(f"{ns}/{a.name}: {verdict.message}")
        self.print(f"wrote {gates.annotation(gate)}={value}")
        if not a.wait:
            return exit_codes.OK
        deadline = time.monotonic() + a.timeout
        while time.monotonic() < deadline:
            status = self.cluster.get_route(ns, a.name).get("status") or {}
            answer = gates.seen(gate, value, status)
            if answer is not None:
                self.print(answer)
                return exit_codes.OK
            time.sleep(0.5)
        self.err.write(
            f"the operator did not acknowledge the {gate} gate within {a.timeout:g}s: is it "
            "running and watching this namespace?\n"
        )
        return exit_codes.TIMEOUT

    # ------------------------------------------------------------------ history

    def cmd_history(self) -> int:
        obj = self.cluster.get_route(self.namespace, self.args.name)
        if self.args.output == "json":
            self.print(json.dumps((obj.get("status") or {}).get("history") or [], indent=2))
        else:
            self.print(view.history_view(obj, now()))
        return exit_codes.OK

    # ------------------------------------------------------------------ plan

    def cmd_plan(self) -> int:
        from .. import traffic  # plan validates with the models and renders: the slow path
        from . import plan

        a = self.args
        docs = _read_manifests(a.filename)
        routes = [d for d in docs if isinstance(d, dict) and d.get("kind") == KIND]
        if not routes:
            raise CliError(f"{a.filename}: no {KIND} in it", exit_codes.USAGE)
        results, changed, refused = [], False, False
        for body in routes:
            ns = self._manifest_namespace(body)
            try:
                spec = plan.parse_spec(body)
            except plan.PlanError as exc:
                raise CliError(f"{a.filename}: {exc}", exit_codes.USAGE) from exc
            name = body["metadata"]["name"]
            dry = None
            if not a.no_dry_run:
                dry = self._dry_run(ns, body)
            live = self.cluster.find_route(ns, name)
            children: dict[str, list] = {}
            if live is not None:
                kinds = ("Deployment", "Service", *traffic.ROUTE_KINDS[spec.traffic.provider])
                children = self.cluster.children(ns, name, kinds)
            result = plan.make_plan(body, ns, live, children, now())
            if not a.no_dry_run:
                result.dry_runs = self._dry_run_children(result)
            refused = refused or bool(result.refused)
            changed = changed or result.changes
            if a.output == "json":
                out = dataclasses.asdict(result)
                for key in ("writes", "live_edits"):  # whole manifests: the changes say it
                    out.pop(key)
                results.append({**out, "changes": result.changes})
            else:
                results.append(plan.render(result, dry))
        if a.output == "json":
            self.print(json.dumps(results if len(results) > 1 else results[0], indent=2))
        else:
            self.print("\n\n".join(results))
        if refused:
            self.err.write("error: the API server refuses what the operator would write (above)\n")
            return exit_codes.USAGE
        return exit_codes.CHANGES if a.exit_code and changed else exit_codes.OK

    def _manifest_namespace(self, body: dict[str, Any]) -> str:
        in_file = (body.get("metadata") or {}).get("namespace")
        given = getattr(self.args, "namespace", None)
        if in_file and given and in_file != given:
            raise CliError(
                f"the manifest says namespace {in_file!r} but -n says {given!r}", exit_codes.USAGE
            )
        return in_file or self.namespace

    def _dry_run(self, ns: str, body: dict[str, Any]) -> str:
        try:
            self.cluster.dry_run_apply(ns, body)
        except CliError as exc:
            if exc.status == 403:
                return f"skipped: a dry run needs the rights of a write ({exc})"
            raise
        return "accepted by the API server (schema and CEL rules)"

    def _dry_run_children(self, result: Plan) -> list[DryRun]:
        """The server-side dry run of each write of the next reconcile, in its order:
        accepted, refused (every cause the API server gave), or skipped when this
        identity may not write that kind (a dry run needs the rights of a write)."""
        from .. import traffic
        from . import plan

        out = []
        bodies = list(result.writes)
        for edit in result.live_edits:
            meta = edit["metadata"]
            kind, name = edit["kind"], meta["name"]
            try:
                live = self.cluster.find(edit["kind"], meta["namespace"], meta["name"])
                patch = edit.apply_to(live)
            except traffic.RouteError as exc:
                out.append(
                    plan.DryRun(edit["kind"], meta["name"], "update", "refused", exc.message)
                )
                continue
            except CliError as exc:
                out.append(plan.DryRun(kind, name, "update", "skipped", str(exc)))
                continue
            if patch is not None:
                bodies.append((patch, True))
        for obj, force in bodies:
            kind, name = obj["kind"], obj["metadata"]["name"]
            action = "update" if force else "create"
            try:
                self.cluster.dry_run_child(obj, force)
            except CliError as exc:
                if exc.status is None:
                    raise  # the API server did not answer
                verdict = "skipped" if exc.status in (401, 403) else "refused"
                message = str(exc).removeprefix(f"{kind} {name}: ")
                message = message.removeprefix("rejected by the API server: ")
                if verdict == "skipped":
                    message = f"a dry run needs the rights of a write: {message}"
                out.append(plan.DryRun(kind, name, action, verdict, message))
                continue
            out.append(plan.DryRun(kind, name, action, "accepted"))
        return out


def rollout_ended(obj: dict[str, Any]) -> tuple[int | None, str]:
    """(exit code, why) once the rollout of the current template has ended, else None:
    kubectl rollout status for ShadowRoutes."""
    meta, status = obj["metadata"], obj.get("status") or {}
    if status.get("observedGeneration") != meta.get("generation"):
        return None, ""
    phase = status.get("phase")
    degraded = view.condition(status, ConditionType.DEGRADED) or {}
    if degraded.get("reason") == "InvalidSpec" and degraded.get("status") == "True":
        return exit_codes.ROLLED_BACK, f"the spec is invalid: {degraded.get('message')}"
    from pydantic import ValidationError  # --watch only: the revision is the models' hash

    from ..api.models import ShadowRouteSpec
    from ..rollout.machine import desired_revision

    try:
        desired = desired_revision(ShadowRouteSpec.model_validate(obj.get("spec") or {}))
    except ValidationError:
        return None, ""
    if phase in (Stage.SUCCEEDED, Stage.STABLE) and status.get("stableRevision") == desired:
        return exit_codes.OK, f"revision {desired} serves all traffic (phase {phase})"
    if phase in (Stage.ROLLED_BACK, Stage.FAILED) or (
        phase == Stage.STABLE and status.get("rolledBackRevision") == desired
    ):
        return (
            exit_codes.ROLLED_BACK,
            f"revision {desired} did not make it: {status.get('message')}",
        )
    return None, ""


def _read_manifests(filename: str) -> list[Any]:
    import yaml

    try:
        text = sys.stdin.read() if filename == "-" else Path(filename).read_text()
        return [d for d in yaml.safe_load_all(text) if d is not None]
    except OSError as exc:
        raise CliError(f"cannot read {filename}: {exc.strerror}", exit_codes.USAGE) from exc
    except yaml.YAMLError as exc:
        raise CliError(f"{filename} is not YAML: {exc}", exit_codes.USAGE) from exc


def _dump(data: Any, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(data, indent=2)
    import yaml

    return yaml.safe_dump(data, sort_keys=False).rstrip()


def main(
    argv: list[str] | None = None, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: 0 for --help, 2 for bad usage
        return int(exc.code or 0)
    app = App(args, out, err)
    handler = app.cmd_gate if args.command in gates.GATES else getattr(app, f"cmd_{args.command}")
    try:
        return handler()
    except CliError as exc:
        err.write(f"error: {exc}\n")
        return exc.code
    except KeyboardInterrupt:
        return 130
