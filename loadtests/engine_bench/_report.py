"""The report: the targets and their PASS/MISS, the text report, the latency CDF plot and the
result files (JSON with the raw samples reduced to CDF points, PNG, ``-latest`` copies)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from loadtests.engine_bench._measure import Json, pct

# The targets for this 2-core machine: (key, label, goal text, check).
TARGETS: list[tuple[str, str, str, Callable[[float], bool]]] = [
    ("dispatch_p99_us", "dispatch p99 at {n:,} waiting (core)", "< 50 us", lambda v: v < 50),
    ("events_per_s", "offers+resolutions per second (core, 1 core)", ">= 20,000/s",
     lambda v: v >= 20_000),
    ("bytes_per_operator", "core memory per waiting operator", "<= 1,024 B",
     lambda v: v <= 1024),
    ("speedup_p50", "speed-up over linear scan at {n:,} (p50)", ">= 100x", lambda v: v >= 100),
    ("resort_speedup_p50", "  same, over the original's re-sort + scan", ">= 100x",
     lambda v: v >= 100),
]


def evaluate(doc: Json) -> list[Json]:
    core, base = doc["core"], doc["baseline"]
    values = {
        "dispatch_p99_us": core["calls"]["dispatch"]["p99_us"],
        "events_per_s": core["events_per_s_wall"],
        "bytes_per_operator": core["memory"]["core_bytes_per_operator"],
        "speedup_p50": base["speedup_p50"],
        "resort_speedup_p50": base["resort_speedup_p50"],
    }
    out = []
    for key, label, goal, ok in TARGETS:
        v = values[key]
        if v is None:
            continue
        out.append({"key": key, "label": label.format(n=doc["config"]["operators"]),
                    "value": v, "goal": goal, "pass": v is not None and ok(v)})
    return out


def _us(v: float | None) -> str:
    return "-" if v is None else f"{v:,.2f}"


def text_report(doc: Json) -> str:
    cfg, env = doc["config"], doc["environment"]
    core, base, rt = doc["core"], doc["baseline"], doc.get("runtime")
    lines = [
        f"engine_bench {doc['started']}: {cfg['operators']:,} operators, {cfg['pools']} pools, "
        f"{cfg['grades']} grades, {cfg['tasks']:,} tasks (answers: {cfg['reject']:.0%} reject, "
        f"{cfg['ignore']:.0%} expire, rest assign); Python {env['python']}, "
        f"{env['cpus']} CPUs; gc {core['gc']} in the timed loops",
        "",
        f"core, per call (us)              {'calls':>9} {'p50':>8} {'p90':>8} {'p99':>8} "
        f"{'max':>9} {'mean':>8}",
    ]
    names = {"dispatch": "dispatch (add_task -> offer)", "add_pending": "add_task -> pending",
             "assign": "assign", "confirm": "confirm (host ok)",
             "reject": "reject (+ re-offer)", "expire": "advance (expiries + re-offer)",
             "rewait": "rewait (open_tab)"}

    def row(label: str, s: Json) -> str:
        return (f"  {label:<31}{s['n']:>9,} {_us(s['p50_us']):>8} {_us(s['p90_us']):>8} "
                f"{_us(s['p99_us']):>8} {_us(s['max_us']):>9} {_us(s['mean_us']):>8}")

    for k, s in core["calls"].items():
        if s["n"]:
            lines.append(row(names.get(k, k), s))
    lines.append(row("all calls with an event", core["all_event_calls"]))
    if doc.get("core_gc_on"):
        g = doc["core_gc_on"]
        lines.append(row("dispatch, gc enabled", g["calls"]["dispatch"]))
        lines.append(row("all calls, gc enabled", g["all_event_calls"]))
    lines += [
        f"  throughput: {core['events']:,} offers+resolutions in {core['loop_wall_s']:.2f} s of "
        f"loop = {core['events_per_s_wall']:,}/s wall (driver included); "
        f"{core['events_per_s_core']:,}/s counting core calls only",
    ]
    if doc.get("core_gc_on"):
        g = doc["core_gc_on"]
        lines.append(f"  with gc enabled: {g['events_per_s_wall']:,}/s wall, "
                     f"{g['events_per_s_core']:,}/s core only")
    m = core["memory"]
    lines += [
        f"  memory: {m['core_bytes_per_operator']:,.0f} B of core per waiting operator "
        f"({m['waiting_operators']:,} waiting; {m['total_bytes_per_operator']:,.0f} B with the "
        f"Operator objects; RSS delta {m['rss_delta_per_operator']} B incl. tracemalloc)",
        f"  waiting at the end of the loop: {core['waiting_at_end_of_loop']:,}",
        "",
        f"baseline at {base['waiting']:,} waiting, {base['tasks']:,} tasks, same inputs to both "
        f"(per dispatch, us)   {'p50':>8} {'p99':>8} {'mean':>8}",
    ]
    for label, s in (("linear scan (first eligible)", base["linear_scan_dispatch"]),
                     ("core add_task", base["core_dispatch"]),
                     (f"original's re-sort + scan (first {base['resort_tasks']:,} tasks)",
                      base["resort_scan_dispatch"]),
                     ("linear scan, re-dispatch", base["linear_scan_redispatch_after_reject"]),
                     ("core reject + re-offer", base["core_redispatch_after_reject"])):
        lines.append(f"  {label:<57}{_us(s['p50_us']):>8} {_us(s['p99_us']):>8} "
                     f"{_us(s['mean_us']):>8}")
    cc, depth = base["crosscheck"], base["scan_depth"]
    lines += [
        f"  speed-up over the linear scan: {base['speedup_p50']:,.1f}x at p50, "
        f"{base['speedup_mean']:,.1f}x mean; the scan examined {depth['mean']:,} operators per "
        f"dispatch on average (p50 {depth['p50']:,}, p99 {depth['p99']:,}, max {depth['max']:,})",
        f"  speed-up over the re-sort + scan: {base['resort_speedup_p50'] or 0:,.1f}x at p50, "
        f"{base['resort_speedup_mean'] or 0:,.1f}x mean",
        f"  same operator chosen: {cc['compared'] - cc['mismatches']:,}/{cc['compared']:,} "
        f"(core vs linear scan), re-sort disagreed {base['resort_mismatches']} times",
    ]
    if rt:
        c = rt["calls"]
        lines += [
            "",
            f"runtime (trio Engine, MockClock, default Hooks): {rt['operators']:,} streams, "
            f"{rt['tasks']:,} tasks",
            f"  dispatch (engine.add_task) p50 {_us(c['dispatch']['p50_us'])} us, p99 "
            f"{_us(c['dispatch']['p99_us'])} us, max {_us(c['dispatch']['max_us'])} us; "
            f"assign p50 {_us(c['assign']['p50_us'])} us; open_stream p50 "
            f"{_us(c['rewait']['p50_us'])} us",
            f"  throughput: {rt['events']:,} offers+resolutions in {rt['loop_wall_s']:.2f} s = "
            f"{rt['events_per_s_wall']:,}/s (stream reads, re-opens and trio scheduling included)",
            f"  memory: {rt['memory']['bytes_per_operator']:,.0f} B per waiting operator "
            f"(core + TabStream + engine maps)",
        ]
    lines += ["", f"{'target':<48} {'measured':>12}  {'goal':<12} result"]
    for t in doc["targets"]:
        v = t["value"]
        if t["key"] == "dispatch_p99_us":
            shown = f"{v:,.2f} us"
        elif t["key"] == "events_per_s":
            shown = f"{v:,}/s"
        elif t["key"] == "bytes_per_operator":
            shown = f"{v:,.0f} B"
        else:
            shown = f"{v:,.1f}x"
        lines.append(f"{t['label']:<48} {shown:>12}  {t['goal']:<12} "
                     f"{'PASS' if t['pass'] else 'MISS'}")
    v = doc["verify"]
    lines += ["", f"correctness: {'OK' if v['ok'] else 'FAILED'} - {v['text']}"]
    return "\n".join(lines)


def draw_plot(doc: Json, path: Path) -> bool:
    try:
        import matplotlib
    except ImportError:
        return False
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = [
        ("core add_task, main loop", doc["core"]["dispatch_ns"], "tab:blue", "-"),
        ("core add_task, same inputs as the scan", doc["baseline"]["core_ns"], "tab:blue", "--"),
        ("linear scan (first eligible)", doc["baseline"]["linear_scan_ns"], "tab:red", "-"),
        ("original's re-sort + scan", doc["baseline"]["resort_scan_ns"], "tab:purple", "-"),
    ]
    if doc.get("core_gc_on"):
        series.append(("core add_task, gc enabled", doc["core_gc_on"]["dispatch_ns"],
                       "tab:cyan", ":"))
    if doc.get("runtime"):
        series.append(("Engine.add_task (trio runtime)", doc["runtime"]["dispatch_ns"],
                       "tab:green", "-"))
    fig, ax = plt.subplots(figsize=(8, 4.8))
    for label, ns, color, style in series:
        if not ns:
            continue
        xs = sorted(x / 1000 for x in ns)
        ys = [(i + 1) / len(xs) for i in range(len(xs))]
        ax.plot(xs, ys, label=f"{label} (n={len(xs):,})", color=color, linestyle=style)
    ax.axvline(50, color="grey", linestyle=":", linewidth=1)
    ax.text(50, 0.02, " 50 us", color="grey", fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("time per dispatch (us, log)")
    ax.set_ylabel("fraction of dispatches")
    cfg = doc["config"]
    ax.set_title(f"Dispatch latency CDF at {cfg['operators']:,} waiting operators "
                 f"({cfg['pools']} pools, {cfg['grades']} grades)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


CDF_QUANTILES = (0.1, 0.5, 1, 2, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95, 98, 99, 99.5, 99.9,
                 100)


def for_json(doc: Any) -> Any:
    """The document without the raw samples (``*_ns`` lists): each becomes ``*_cdf_us``, a list
    of [quantile %, microseconds]."""
    if isinstance(doc, dict):
        out = {}
        for k, v in doc.items():
            if k.endswith("_ns") and isinstance(v, list):
                out[k[:-3] + "_cdf_us"] = [[q, round(x / 1000, 3)] for q in CDF_QUANTILES
                                           if (x := pct(v, q)) is not None]
            else:
                out[k] = for_json(v)
        return out
    if isinstance(doc, list):
        return [for_json(v) for v in doc]
    return doc


def write_results(doc: Json, out: Path, plot: bool) -> list[Path]:
    """``engine-bench-<stamp>.json`` (and ``.png``) in ``out``, with ``-latest`` copies."""
    out.mkdir(parents=True, exist_ok=True)
    stamp = doc["stamp"]
    paths = [out / f"engine-bench-{stamp}.json"]
    paths[0].write_text(json.dumps(for_json(doc), indent=1))
    if plot:
        png = out / f"engine-bench-{stamp}.png"
        if draw_plot(doc, png):
            paths.append(png)
    for p in list(paths):
        shutil.copyfile(p, out / p.name.replace(stamp, "latest"))
    return paths
