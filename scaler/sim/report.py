"""The demo's results: a summary (dict + plain words), ``report.json``, ``replicas.png``, ``summary.md``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from scaler.sim.demo_run import DemoRun
from scaler.sim.fleet import ROLES
from scaler.sim.recorder import percentile, weighted_percentile


def _r(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def _fmt(value: float) -> str:
    if abs(value) >= 1000:
        return f"{value / 1000:.1f}k"
    return f"{value:.3g}"


def _phase_rows(run: DemoRun) -> list[dict[str, Any]]:
    rec, s = run.recorder, run.scenario
    rows = []
    starts = s.phase_starts()
    for i, phase in enumerate(s.phases):
        start, end = starts[i], starts[i] + phase.seconds
        idx = [k for k, t in enumerate(rec.t) if start <= t < end or (i == len(s.phases) - 1 and t >= end)]
        stats = rec.phases[i]
        row: dict[str, Any] = {
            "name": phase.name,
            "start": round(start, 1),
            "end": round(end, 1),
            "rate": phase.rate,
            "prompt": phase.prompt,
            "requests": stats.arrived,
            "completed": stats.completed,
            "failed": stats.failed,
            "prefilled_remotely": stats.remote_prefills,
            "decode_only_fraction": _r(1 - stats.remote_prefills / stats.arrived) if stats.arrived else None,
            "ttft_p50": _r(percentile(stats.ttft, 0.5)),
            "ttft_p90": _r(percentile(stats.ttft, 0.9)),
            "itl_p50": _r(weighted_percentile(stats.itl.items(), 0.5), 4),
            "itl_p90": _r(weighted_percentile(stats.itl.items(), 0.9), 4),
            "slo_ttft_attainment": _r(sum(v <= s.slo.ttft_p90_seconds for v in stats.ttft) / len(stats.ttft))
            if stats.ttft
            else None,
            "slo_itl_attainment": _r(
                sum(n for v, n in stats.itl.items() if v <= s.slo.itl_p90_seconds) / sum(stats.itl.values())
            )
            if stats.itl
            else None,
            "roles": {},
        }
        for role in ROLES:
            series = rec.roles[role]
            if not idx:
                continue
            gpu = series["gpu_seconds"]
            before = gpu[idx[0] - 1] if idx[0] > 0 else 0.0
            row["roles"][role] = {
                "start_replicas": series["replicas"][idx[0]],
                "max_replicas": max(series["replicas"][k] for k in idx),
                "end_replicas": series["replicas"][idx[-1]],
                "max_desired": max(series["desired"][k] for k in idx),
                "gpu_seconds": round(gpu[idx[-1]] - before, 1),
                "trigger_peaks": {
                    name: max((v for v in (values[k] for k in idx) if v is not None), default=None)
                    for name, values in series["triggers"].items()
                },
            }
        rows.append(row)
    return rows


def _sentence(row: dict[str, Any], index: int) -> str:
    parts = [
        f"Phase {index + 1} '{row['name']}' ({row['start']:.0f}-{row['end']:.0f} s, {row['rate']:g} req/s, "
        f"{row['prompt']} prompts):"
    ]
    if row["decode_only_fraction"] is not None:
        parts.append(
            f"{row['decode_only_fraction']:.1%} of {row['requests']} requests were served decode-only "
            f"({row['prefilled_remotely']} went through a prefill pod)."
        )
    for role, r in row["roles"].items():
        peaks = ", ".join(f"{k} peaked at {_fmt(v)}" for k, v in r["trigger_peaks"].items() if v is not None)
        if r["max_replicas"] > r["start_replicas"]:
            move = f"{role} scaled {r['start_replicas']} -> {r['max_replicas']}"
            if r["end_replicas"] != r["max_replicas"]:
                move += f", ending at {r['end_replicas']}"
        elif r["end_replicas"] < r["start_replicas"]:
            move = f"{role} scaled down {r['start_replicas']} -> {r['end_replicas']}"
        else:
            move = f"{role} stayed at {r['start_replicas']}"
        parts.append(move + (f" ({peaks})." if peaks else "."))
    if row["ttft_p90"] is not None:
        itl = "-" if row["itl_p90"] is None else f"{row['itl_p90'] * 1000:.0f} ms"
        parts.append(f"Client TTFT p90 {row['ttft_p90']:.2f} s, ITL p90 {itl}.")
    return " ".join(parts)


def summarize(run: DemoRun) -> dict[str, Any]:
    s, rec = run.scenario, run.recorder
    rows = _phase_rows(run) if rec.t else []
    all_ttft = [v for p in rec.phases for v in p.ttft]
    all_itl: dict[float, int] = {}
    for p in rec.phases:
        for v, n in p.itl.items():
            all_itl[v] = all_itl.get(v, 0) + n
    events = [
        {"t": round(ev.t, 1), "scaledObject": ev.scaled_object, "change": ev.message}
        for ev in sorted((ev for e in run.emulators for ev in e.events), key=lambda ev: ev.t)
    ]
    summary: dict[str, Any] = {
        "scenario": s.name,
        "source": s.source,
        "seed": run.seed,
        "manifests": str(run.manifests_dir),
        "duration_seconds": round(s.duration, 1),
        "wall_seconds": round(run.wall_seconds, 1),
        "interrupted": run.interrupted,
        "time_scale": s.time_scale,
        "slowdown": s.slowdown,
        "hpa_sync_seconds_effective": round(s.hpa_sync_seconds * s.time_scale, 3),
        "profile": s.profile.name,
        "slo": {"ttft_p90_seconds": s.slo.ttft_p90_seconds, "itl_p90_seconds": s.slo.itl_p90_seconds},
        "slo_ttft_attainment": _r(sum(v <= s.slo.ttft_p90_seconds for v in all_ttft) / len(all_ttft))
        if all_ttft
        else None,
        "slo_itl_attainment": _r(
            sum(n for v, n in all_itl.items() if v <= s.slo.itl_p90_seconds) / sum(all_itl.values())
        )
        if all_itl
        else None,
        "gpu_seconds": {role: round(run.fleet.gpu_seconds[role], 1) for role in ROLES},
        "phases": rows,
        "events": events,
        "failures": rec.failures,
        "scaledObjects": [
            {
                "name": o.name,
                "target": o.target,
                "source": o.source,
                "min": o.min_replicas,
                "max": o.max_replicas,
                "triggers": [t.name for t in o.triggers],
            }
            for o in run.objects
        ],
        "otlp_exports": {
            "sent": run.pusher.sent if run.pusher else 0,
            "failed": run.pusher.failed if run.pusher else 0,
        },
    }
    text = [_sentence(row, i) for i, row in enumerate(rows)]
    gpu = summary["gpu_seconds"]
    text.append(f"GPU-seconds: prefill {gpu['prefill']:.0f}, decode {gpu['decode']:.0f}.")
    if summary["slo_ttft_attainment"] is not None:
        text.append(
            f"SLO (TTFT <= {s.slo.ttft_p90_seconds:g} s, ITL <= {s.slo.itl_p90_seconds * 1000:g} ms): "
            f"{summary['slo_ttft_attainment']:.1%} of requests met the TTFT target, "
            f"{(summary['slo_itl_attainment'] or 0):.1%} of tokens the ITL target."
        )
    summary["text"] = text
    return summary


def _plot(run: DemoRun, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rec, s = run.recorder, run.scenario
    fig, (ax1, ax2, ax3) = plt.subplots(3, 1, figsize=(11, 8.5), sharex=True, height_ratios=(3, 2, 2))
    colors = {"prefill": "tab:orange", "decode": "tab:blue"}
    for role in ROLES:
        r = rec.roles[role]
        ax1.step(rec.t, r["replicas"], where="post", color=colors[role], lw=2, label=f"{role} replicas")
        ax1.step(rec.t, r["ready"], where="post", color=colors[role], lw=1, ls=":", label=f"{role} ready")
        ax1.step(rec.t, r["desired"], where="post", color=colors[role], lw=1, ls="--", label=f"{role} desired")
    top = max(max(rec.roles[r]["replicas"] + rec.roles[r]["desired"]) for r in ROLES)
    ax1.set_ylim(-0.2, top + 1.6)
    ax1.yaxis.get_major_locator().set_params(integer=True)
    ax1.set_ylabel("pods")
    ax1.legend(loc="upper right", fontsize=7, ncol=3)
    ax1.set_title(f"{s.name}: prefill and decode scaled by KEDA from the repository's ScaledObjects")
    ax2.plot(rec.t, rec.load["requests_per_s"], color="tab:green", label="requests/s")
    ax2.set_ylabel("requests/s")
    twin = ax2.twinx()
    twin.plot(rec.t, rec.load["prompt_tokens_per_s"], color="tab:gray", lw=1, label="prompt tokens/s")
    twin.set_ylabel("prompt tokens/s")
    ax2.legend(loc="upper left", fontsize=7)
    twin.legend(loc="upper right", fontsize=7)
    ttft = [float("nan") if v is None else v for v in rec.roles["decode"]["ttft_p90"]]
    itl = [float("nan") if v is None else v * 1000 for v in rec.roles["decode"]["itl_p90"]]
    ax3.plot(rec.t, ttft, color="tab:red", label="client TTFT p90 (s)")
    ax3.axhline(s.slo.ttft_p90_seconds, color="tab:red", ls=":", lw=1)
    ax3.set_ylabel("TTFT p90 [s]")
    ax3.set_yscale("log")
    twin3 = ax3.twinx()
    twin3.plot(rec.t, itl, color="tab:purple", label="ITL p90 (ms)")
    twin3.axhline(s.slo.itl_p90_seconds * 1000, color="tab:purple", ls=":", lw=1)
    twin3.set_ylabel("ITL p90 [ms]")
    ax3.legend(loc="upper left", fontsize=7)
    twin3.legend(loc="upper right", fontsize=7)
    ax3.set_xlabel("seconds since start (dotted: SLO)")
    for start, phase in zip(s.phase_starts(), s.phases, strict=True):
        for ax in (ax1, ax2, ax3):
            ax.axvline(start, color="black", lw=0.8, alpha=0.5)
        ax1.text(start + 1, 0.98, phase.name, transform=ax1.get_xaxis_transform(), va="top", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _markdown(run: DemoRun, summary: dict[str, Any]) -> str:
    s = run.scenario
    lines = [
        f"# PD autoscaling demo: {s.name}",
        "",
        f"{s.description}",
        "",
        f"- Run: {summary['duration_seconds']:.0f} s simulated at 1x wall clock, seed {run.seed}"
        + (" (**interrupted**)" if run.interrupted else "")
        + ".",
        f"- ScaledObjects: `{run.manifests_dir}` ("
        + ", ".join(
            f"{o['name']} -> {o['target']} [{', '.join(o['triggers'])}], {o['min']}..{o['max']}"
            for o in summary["scaledObjects"]
        )
        + ").",
        f"- KEDA/HPA timers x{s.time_scale:.3g} (HPA sync every {summary['hpa_sync_seconds_effective']:g} s; "
        "pollingInterval, cooldownPeriod, stabilization windows, policy periods, pod start-up and drain likewise).",
        f"- Model: profile `{s.profile.name}`, latencies x{s.slowdown:g}.",
        f"- SLO: TTFT <= {s.slo.ttft_p90_seconds:g} s and ITL <= {s.slo.itl_p90_seconds * 1000:g} ms (client side).",
        "",
        "## Per phase",
        "",
        "| phase | req/s | decode-only | prefill replicas (start/max/end) | decode replicas (start/max/end) "
        "| TTFT p90 | ITL p90 | TTFT SLO | ITL SLO | GPU-s prefill/decode |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in summary["phases"]:
        r = row["roles"]

        def fmt(role: str, r: dict[str, Any] = r) -> str:
            return (
                f"{r[role]['start_replicas']}/{r[role]['max_replicas']}/{r[role]['end_replicas']}" if role in r else "-"
            )

        def pct(v: float | None) -> str:
            return "-" if v is None else f"{v:.1%}"

        gpu = "/".join(f"{r[k]['gpu_seconds']:.0f}" for k in ROLES if k in r)
        ttft = "-" if row["ttft_p90"] is None else f"{row['ttft_p90']:.2f} s"
        itl = "-" if row["itl_p90"] is None else f"{row['itl_p90'] * 1000:.0f} ms"
        lines.append(
            f"| {row['name']} | {row['rate']:g} | {pct(row['decode_only_fraction'])} | {fmt('prefill')} | "
            f"{fmt('decode')} | {ttft} | {itl} | {pct(row['slo_ttft_attainment'])} | {pct(row['slo_itl_attainment'])} "
            f"| {gpu} |"
        )
    lines += ["", "## What happened", ""] + [f"- {t}" for t in summary["text"]]
    lines += ["", "## Scaling events", ""]
    lines += [f"- {ev['t']:.1f} s `{ev['scaledObject']}`: {ev['change']}" for ev in summary["events"]] or ["- none"]
    if summary["failures"]:
        lines += ["", "Failed requests: " + ", ".join(f"{k}: {v}" for k, v in summary["failures"].items())]
    lines += [
        "",
        "![replicas](replicas.png)",
        "",
        "Simplifications versus real KEDA/HPA and vLLM are listed in the docstrings of "
        "`scaler/sim/keda_emulator.py`, `scaler/sim/hpa.py`, `scaler/sim/vllm_engine.py`, "
        "`scaler/sim/decode_engine.py` and `scaler/sim/fleet.py`.",
    ]
    return "\n".join(lines) + "\n"


def write(run: DemoRun, summary: dict[str, Any], directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    data = run.recorder.to_json() | {"summary": {k: v for k, v in summary.items()}}
    paths = [directory / "report.json", directory / "replicas.png", directory / "summary.md"]
    paths[0].write_text(json.dumps(data, separators=(",", ":")) + "\n")
    _plot(run, paths[1])
    paths[2].write_text(_markdown(run, summary))
    return paths
