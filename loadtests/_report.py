"""Report of a scale run: JSON, a Markdown table with ratios to the baselines, PNG plots."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

Json = dict[str, Any]
BASES = ("bare-hypercorn", "sse-starlette")
COLORS = {"queuetasks": "tab:blue", "bare-hypercorn": "tab:orange", "sse-starlette": "tab:green"}


def _get(res: Json, *path: str) -> Any:
    cur: Any = res
    for key in path:
        if not isinstance(cur, dict) or key not in cur:
            return None
        cur = cur[key]
    return cur


# (label, getter, format, lower is better)
Metric = tuple[str, Callable[[Json], Any], str, bool]
METRICS: list[Metric] = [
    ("streams held (of requested)", lambda r: _get(r, "ramp", "held_after_settle"), "{:,}", False),
    ("connect failures", lambda r: _get(r, "ramp", "failed"), "{:,}", True),
    ("connection setup rate (/s)", lambda r: _get(r, "ramp", "rate_per_s"), "{:,.0f}", False),
    (
        "server RSS per stream (KiB)",
        lambda r: (
            None if _get(r, "ramp", "rss_per_conn") is None else r["ramp"]["rss_per_conn"] / 1024
        ),
        "{:.1f}",
        True,
    ),
    (
        "server RSS at peak (MiB)",
        lambda r: None if _get(r, "ramp", "rss_after") is None else r["ramp"]["rss_after"] / 2**20,
        "{:,.0f}",
        True,
    ),
    ("idle server CPU (% of a core)", lambda r: _get(r, "idle", "server_cpu_pct"), "{:.1f}", True),
    (
        "keep-alives received / expected",
        lambda r: (
            None
            if not _get(r, "idle", "keepalives_expected")
            else r["idle"]["keepalives"] / r["idle"]["keepalives_expected"]
        ),
        "{:.2f}",
        False,
    ),
    ("server CPU under load (%)", lambda r: _get(r, "load", "server_cpu_pct"), "{:.1f}", True),
    ("tasks or pushes sent", lambda r: _get(r, "load", "sent"), "{:,}", False),
    ("time-to-offer p50 (ms)", lambda r: _get(r, "time_to_offer", "p50_ms"), "{:.2f}", True),
    ("time-to-offer p99 (ms)", lambda r: _get(r, "time_to_offer", "p99_ms"), "{:.2f}", True),
    ("time-to-offer max (ms)", lambda r: _get(r, "time_to_offer", "max_ms"), "{:.1f}", True),
    ("operators reached by an offer", lambda r: r.get("operators_reached"), "{:,}", False),
    ("vanished at once", lambda r: _get(r, "vanish", "vanished"), "{:,}", False),
    ("vanished out of queue (s)", lambda r: _get(r, "vanish", "left_queue_s"), "{:.3f}", True),
    ("held offers back in queue (s)", lambda r: _get(r, "vanish", "offers_back_s"), "{:.2f}", True),
    (
        "tasks lost / assigned twice",
        lambda r: (
            None
            if "integrity" not in r
            else f"{r['integrity']['lost']} / {r['integrity']['assigned_twice']}"
        ),
        "{}",
        True,
    ),
]


def _fmt(value: Any, fmt: str) -> str:
    if value is None:
        return "-"
    try:
        return fmt.format(value)
    except (ValueError, TypeError):
        return str(value)


def markdown(doc: Json) -> str:
    cfg = doc["config"]
    targets = [t for t, r in doc["targets"].items() if "skipped" not in r]
    main = "queuetasks" if "queuetasks" in targets else (targets[0] if targets else None)
    bases = [b for b in BASES if b in targets and b != main]
    head = ["metric", *targets, *(f"{main} / {b}" for b in bases)]
    lines = [
        f"Scale run {doc['started']}: {cfg['operators']:,} operators, {cfg['duration']:.0f} s "
        f"hold, keep-alive {cfg['keepalive_interval']:g} s, {cfg['task_rate']:g} tasks/s, "
        f"{doc['host_cpus']} CPUs shared by client and server.",
        "",
        "| " + " | ".join(head) + " |",
        "| " + " | ".join(["---"] + ["---:"] * (len(head) - 1)) + " |",
    ]
    for label, get, fmt, _ in METRICS:
        values = [get(doc["targets"][t]) for t in targets]
        row = [label, *(_fmt(v, fmt) for v in values)]
        for b in bases:
            mv, bv = get(doc["targets"][main]), get(doc["targets"][b])
            ok = isinstance(mv, int | float) and isinstance(bv, int | float) and bv
            row.append(f"{mv / bv:.2f}x" if ok else "-")
        lines.append("| " + " | ".join(row) + " |")
    for t, r in doc["targets"].items():
        if "skipped" in r:
            lines.append(f"\n{t}: skipped ({r['skipped']}).")
        lim = _get(r, "ramp", "server_fd_limit")
        if lim:
            lines.append(
                f"\n{t}: server fd limit {lim:,}; fds in use after ramp "
                f"{r['ramp']['server_fds']:,}."
            )
        if r.get("integrity"):
            lines.append(
                f"{t}: final task states {r['integrity']['states']}; "
                f"integrity {'OK' if r['integrity']['ok'] else 'FAILED'}."
            )
        errs = _get(r, "client", "errors")
        if errs:
            lines.append(f"{t}: client errors {errs}.")
    return "\n".join(lines) + "\n"


def draw_plots(doc: Json, out: Path, stamp: str) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    targets = {t: r for t, r in doc["targets"].items() if "skipped" not in r}
    paths: list[Path] = []

    def memory(ax: Any) -> None:
        for t, r in targets.items():
            rows = [s for s in r.get("series", []) if s["phase"] in ("ramp", "settle") and s["rss"]]
            ax.plot(
                [s["connected"] for s in rows],
                [s["rss"] / 2**20 for s in rows],
                label=t,
                color=COLORS.get(t),
            )
        ax.set_xlabel("open SSE streams")
        ax.set_ylabel("server RSS (MiB)")
        ax.set_title("Server memory over connections")
        ax.grid(alpha=0.3)
        ax.legend()

    def latency(ax: Any) -> None:
        for t, r in targets.items():
            series = r.get("latency_series") or []
            if not series:
                continue
            buckets: dict[int, list[float]] = {}
            for at, ms in series:
                buckets.setdefault(int(at), []).append(ms)
            xs = sorted(buckets)
            p50 = [sorted(buckets[x])[len(buckets[x]) // 2] for x in xs]
            p99 = [
                sorted(buckets[x])[min(len(buckets[x]) - 1, int(len(buckets[x]) * 0.99))]
                for x in xs
            ]
            mx = [max(buckets[x]) for x in xs]
            c = COLORS.get(t)
            ax.plot(xs, p50, color=c, label=f"{t} p50")
            ax.plot(xs, p99, color=c, linestyle="--", label=f"{t} p99")
            ax.scatter(xs, mx, color=c, s=4, alpha=0.5)
        ax.set_yscale("log")
        ax.set_xlabel("seconds into the load phase (dots: max per second)")
        ax.set_ylabel("time-to-offer / push latency (ms)")
        ax.set_title("Latency over time, per second")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)

    for name, draw in (("memory_over_connections", memory), ("latency_over_time", latency)):
        fig, ax = plt.subplots(figsize=(7, 4.5))
        draw(ax)
        fig.tight_layout()
        path = out / f"{name}-{stamp}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(13, 4.5))
    memory(a1)
    latency(a2)
    cfg = doc["config"]
    fig.suptitle(
        f"{cfg['operators']:,} SSE operators, {cfg['task_rate']:g} tasks/s "
        f"({doc['host_cpus']} CPUs shared by client and server)"
    )
    fig.tight_layout()
    path = out / f"scale-{stamp}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    paths.append(path)
    return paths


def write_all(doc: Json, out: Path, *, plots: bool = True) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    json_path = out / f"scale-{stamp}.json"
    json_path.write_text(json.dumps(doc, indent=1))
    md_path = out / f"scale-{stamp}.md"
    md_path.write_text(markdown(doc))
    paths = [json_path, md_path]
    if plots:
        paths += draw_plots(doc, out, stamp)
    for p in list(paths):
        latest = out / p.name.replace(stamp, "latest")
        shutil.copyfile(p, latest)
    return paths
