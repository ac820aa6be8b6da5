"""Command line: ``serve``, ``query``, ``status``, ``demo``, ``evaluate``. Parses flags, sets up logging, delegates."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence

from scaler import __version__, config, configvalues, extras, logs, statustable

logger = logging.getLogger("scaler.cli")


_ZAP_LEVELS = {"debug": "debug", "info": "info", "error": "error", "panic": "error"}
_ZAP_STACKTRACE_LEVELS = ("info", "error", "panic")
_ZAP_ENCODERS = {"json": "json", "console": "text"}
_ZAP_TIME_ENCODINGS = ("epoch", "millis", "nano", "iso8601", "rfc3339", "rfc3339nano")


def _serve_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    serve = sub.add_parser(
        "serve",
        help="run the scaler (OTLP receiver, KEDA external scaler, HTTP API)",
        description="Run the scaler. Every flag also reads the environment variable shown; flag > env > default. "
        "Arguments without a command (e.g. kedify/otel-add-on's chart's --zap-log-level=info) mean serve.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_setting_flags(serve)
    zap = serve.add_argument_group(
        "kedify/otel-add-on's logging flags (controller-runtime zap), mapped onto --log-level and --log-format",
        "Go's -flag spelling works too. --log-level/--log-format win over these; these win over the environment.",
    )
    zap.add_argument("--zap-log-level", metavar="LEVEL", help="debug, info, error, panic (= error), or N > 0 (= debug)")
    zap.add_argument("--zap-encoder", metavar="ENCODER", help="json (= --log-format json) or console (= text)")
    zap.add_argument(
        "--zap-devel", metavar="BOOL", nargs="?", const="true", help="development defaults: debug level, text format"
    )
    zap.add_argument(
        "--zap-stacktrace-level", metavar="LEVEL", help="info, error or panic; accepted (tracebacks come with errors)"
    )
    zap.add_argument("--zap-time-encoding", metavar="ENCODING", help="accepted (timestamps are ISO 8601 UTC)")


def zap_flags(args: argparse.Namespace) -> tuple[dict[str, str], list[str]]:
    """kedify/otel-add-on's controller-runtime logging flags as setting flags (``log_level``,
    ``log_format``) and notes for the log; ValueError names a flag whose value zap would refuse."""
    mapped: dict[str, str] = {}
    notes: list[str] = []
    devel = args.zap_devel
    if devel is not None:
        try:
            if configvalues.parse_bool(devel):
                mapped.update(log_level="debug", log_format="text")
        except ValueError:
            raise ValueError(f"--zap-devel={devel!r}: must be true or false") from None
    level = args.zap_log_level
    if level is not None:
        lowered = level.strip().lower()
        if lowered in _ZAP_LEVELS:
            mapped["log_level"] = _ZAP_LEVELS[lowered]
        elif lowered.isdigit() and int(lowered) > 0:
            mapped["log_level"] = "debug"
        else:
            raise ValueError(f"--zap-log-level={level!r}: use debug, info, error, panic or an integer > 0")
    encoder = args.zap_encoder
    if encoder is not None:
        if encoder.strip().lower() not in _ZAP_ENCODERS:
            raise ValueError(f"--zap-encoder={encoder!r}: use json or console")
        mapped["log_format"] = _ZAP_ENCODERS[encoder.strip().lower()]
    stacktrace = args.zap_stacktrace_level
    if stacktrace is not None:
        if stacktrace.strip().lower() not in _ZAP_STACKTRACE_LEVELS:
            raise ValueError(f"--zap-stacktrace-level={stacktrace!r}: use info, error or panic")
        notes.append(f"--zap-stacktrace-level={stacktrace} accepted: tracebacks are logged with unexpected errors")
    encoding = args.zap_time_encoding
    if encoding is not None:
        if encoding.strip().lower() not in _ZAP_TIME_ENCODINGS:
            raise ValueError(f"--zap-time-encoding={encoding!r}: use one of {', '.join(_ZAP_TIME_ENCODINGS)}")
        notes.append(f"--zap-time-encoding={encoding} accepted: log timestamps are ISO 8601 UTC")
    if mapped:
        spelled = " ".join(f"--{name.replace('_', '-')}={value}" for name, value in mapped.items())
        notes.insert(0, f"kedify/otel-add-on logging flags mapped to {spelled}")
    return mapped, notes


def normalize_argv(argv: Sequence[str]) -> list[str]:
    """Arguments without a command mean ``serve`` (kedify/otel-add-on's chart passes only
    ``--zap-*`` flags), and Go's single-dash long flags (``-zap-log-level=info``) are spelled
    with two dashes."""
    args = ["-" + a if a.startswith("-zap-") else a for a in argv]
    if not args or (args[0].startswith("-") and args[0] not in ("-h", "--help", "--version")):
        args.insert(0, "serve")
    return args


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
    q.add_argument("--explain", action="store_true", help="also print the PromQL a compat query runs (on stderr)")


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


def _evaluate_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from scaler.lab import evaluate

    e = sub.add_parser(
        "evaluate",
        help="score autoscaling recipes against each other and a clairvoyant bound, in virtual time",
        description=evaluate.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    evaluate.add_arguments(e)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="keda-otel-scaler", description=__doc__)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", help="serve (the default), query, demo"
    )
    _serve_parser(sub)
    _query_parser(sub)
    _status_parser(sub)
    _demo_parser(sub)
    _evaluate_parser(sub)
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
    if args.explain and not args.promql:
        _explain(args)
    for kind in ("warnings", "infos"):
        for text in reply.get(kind, []):
            print(text, file=sys.stderr)
    if reply.get("error"):
        print(f"{reply['error']} (value {reply['value']})")
        return 3
    print(reply["value"])
    return 0


def _explain(args: argparse.Namespace) -> None:
    """The PromQL text a compat query compiles to, with the server's retention as the default window."""
    from scaler import trigger

    with urllib.request.urlopen(args.url.rstrip("/") + "/info", timeout=10) as response:
        retention = float(json.load(response)["config"]["retention_seconds"])
    compiled = trigger.compile_compat(args.query, args.op, args.window, retention)
    print(f"PromQL: {compiled.text}", file=sys.stderr)


def load_serve_settings(args: argparse.Namespace, environ: Mapping[str, str]) -> tuple[config.Settings, list[str]]:
    """``serve``'s settings (flags > kedify's zap flags > environment > defaults) and the lines
    start-up logs about kedify/otel-add-on's flags and variables; raises SettingsError."""
    try:
        zapped, notes = zap_flags(args)
    except ValueError as exc:
        raise config.SettingsError(str(exc)) from None
    flags = setting_flags(args)
    for name, value in zapped.items():
        if flags.get(name) is None:
            flags[name] = value
    settings = config.load(flags, environ)
    keda_tls = settings.keda_tls
    if keda_tls.enabled is False and keda_tls.cert_file:
        notes.append(
            "KEDA_TLS_ENABLED=false: the KEDA port serves plaintext gRPC and KEDA_TLS_CERT_FILE/KEY_FILE are not "
            "used (kedify/otel-add-on's chart fills them from the OTLP certificate)"
        )
    return settings, notes + config.accepted_notes(environ)


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
    args = build_parser().parse_args(normalize_argv(sys.argv[1:] if argv is None else argv))
    if args.command == "serve":
        try:
            settings, notes = load_serve_settings(args, os.environ)
        except config.SettingsError as exc:
            print(f"keda-otel-scaler serve: invalid configuration: {exc}", file=sys.stderr)
            sys.exit(2)
        logs.configure(settings.log.level, settings.log.format)
        for note in notes:
            logger.info("%s", note)
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
    if args.command == "evaluate":
        logs.configure(os.environ.get("LOG_LEVEL", "warning").lower(), os.environ.get("LOG_FORMAT", "text"))
        from scaler.lab import evaluate

        sys.exit(evaluate.main(args))
