"""Command line: ``serve``, ``query``, ``status`` and ``demo``. Parses flags, configures logging, delegates."""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence

from scaler import __version__, config, extras, logs, statustable


def _serve_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    serve = sub.add_parser(
        "serve",
        help="run the scaler (OTLP receiver, KEDA external scaler, HTTP API)",
        description="Run the scaler. Every flag also reads the environment variable shown; flag > env > default.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_setting_flags(serve)


def add_setting_flags(parser: argparse.ArgumentParser) -> None:
    """One ``--<name>`` flag per setting (default None: "not given"), grouped as the settings are."""
    sections = {
        slot: parser.add_argument_group((group.__doc__ or slot).strip().splitlines()[0].rstrip("."))
        for slot, group, _ in config.slots()
    }
    for s in config.SETTINGS:
        text = f"{s.help} [env {s.env}; default {s.default_text}]".replace("`", "").replace("%", "%%")
        sections[s.slot].add_argument(s.flag, dest=s.name, metavar=s.env, default=None, help=text)


def setting_flags(namespace: argparse.Namespace) -> dict[str, str | None]:
    """The settings' flags as given (None where not given), by setting name."""
    return {s.name: getattr(namespace, s.name, None) for s in config.SETTINGS}


def _query_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    q = sub.add_parser(
        "query",
        help="evaluate a query against a running server",
        description="Evaluate a compat query (default) or PromQL (--promql) on a running scaler.",
    )
    q.add_argument("query", help="compat query, e.g. 'sum(vllm:num_requests_waiting{deployment=x})'")
    q.add_argument("--url", default="http://127.0.0.1:9090", help="the scaler's HTTP address")
    q.add_argument("--op", default="last_one", help="operationOverTime for the compat form")
    q.add_argument("--window", default=None, help="window for --op, e.g. 30s")
    q.add_argument("--promql", action="store_true", help="treat QUERY as PromQL")


def _status_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    s = sub.add_parser(
        "status",
        help="why each ScaledObject trigger answers what it does, and which pods export",
        description=(
            "Show every ScaledObject trigger KEDA asked a running scaler about (value, target, the replicas "
            "the HPA derives, activity, calls, errors, matched series and the reason) and the sources "
            "exporting to it, from GET /api/v1/scaledobjects. Exit status: 0 when no trigger is erroring, "
            "3 when one is (KEDA gets an error for it now; a warm-up hold is not an error), 2 when the "
            "scaler answers an HTTP error, 1 when it cannot be reached."
        ),
    )
    s.add_argument("--url", default="http://127.0.0.1:9090", help="the scaler's HTTP address")
    s.add_argument("--namespace", default=None, help="only ScaledObjects and sources in this namespace")
    s.add_argument("--json", action="store_true", help="print the JSON answer instead of tables")


def _demo_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    d = sub.add_parser("demo", help="simulate a PD fleet and watch prefill and decode scale independently")
    d.add_argument("--duration", type=float, default=None, help="wall-clock seconds (default: the scenario's)")
    d.add_argument("--scenario", default=None, help="scenario YAML file (default: the built-in PD scenario)")
    d.add_argument("--report", default=None, help="directory for report.json, replicas.png and summary.md")
    d.add_argument(
        "--manifests",
        default=None,
        metavar="DIR",
        help="directory with the ScaledObjects (default: <repo>/manifests/keda; env KEDA_OTEL_SCALER_MANIFESTS)",
    )
    d.add_argument("--seed", type=int, default=1, help="random seed")
    d.add_argument("--quiet", action="store_true", help="no live terminal view")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="keda-otel-scaler", description=__doc__)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _serve_parser(sub)
    _query_parser(sub)
    _status_parser(sub)
    _demo_parser(sub)
    return parser


def _run_query(args: argparse.Namespace) -> int:
    body: dict[str, str] = {"operationOverTime": args.op}
    if args.promql:
        body["promql"] = args.query
    else:
        body["query"] = args.query
    if args.window:
        body["window"] = args.window
    request = urllib.request.Request(
        args.url.rstrip("/") + "/memstore/query",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            reply = json.load(response)
    except urllib.error.HTTPError as exc:
        print(f"error: {json.load(exc).get('error', exc.reason)}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: cannot reach {args.url}: {exc}", file=sys.stderr)
        return 1
    for kind in ("warnings", "infos"):
        for text in reply.get(kind, []):
            print(text, file=sys.stderr)
    if reply.get("error"):
        print(f"{reply['error']} (value {reply['value']})")
        return 3
    print(reply["value"])
    return 0


def _run_status(args: argparse.Namespace) -> int:
    url = args.url.rstrip("/") + "/api/v1/scaledobjects"
    if args.namespace:
        url += "?" + urllib.parse.urlencode({"namespace": args.namespace})
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            reply = json.load(response)
    except urllib.error.HTTPError as exc:
        print(f"error: {args.url} answered HTTP {exc.code}: {exc.reason}", file=sys.stderr)
        return 2
    except (OSError, ValueError) as exc:
        print(f"error: cannot read the status from {args.url}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(reply, indent=2) if args.json else statustable.render(reply))
    erroring = [t for so in reply["scaledObjects"] for t in so["triggers"] if t["erroring"]]
    return 3 if erroring else 0


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        try:
            settings = config.load(setting_flags(args), os.environ)
        except config.SettingsError as exc:
            print(f"keda-otel-scaler serve: invalid configuration: {exc}", file=sys.stderr)
            sys.exit(2)
        logs.configure(settings.log.level, settings.log.format)
        from scaler import app

        sys.exit(app.run(settings))
    if args.command == "query":
        sys.exit(_run_query(args))
    if args.command == "status":
        sys.exit(_run_status(args))
    if args.command == "demo":
        if problem := extras.demo_problem(report=args.report is not None):
            print(f"keda-otel-scaler demo: {problem}", file=sys.stderr)
            sys.exit(2)
        logs.configure(os.environ.get("LOG_LEVEL", "warning").lower(), os.environ.get("LOG_FORMAT", "text"))
        from scaler.sim import demo

        sys.exit(demo.main(args))
