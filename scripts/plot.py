#!/usr/bin/env python3
"""Turn benchmark results into SVG plots and the generated parts of docs/benchmarks.md.

Inputs: the comparison harness's CSV (compare/, `--csv`), and optionally criterion's output directory
(target/criterion). Outputs: docs/plots/*.svg, and the text between `<!-- BEGIN generated: NAME -->` and
`<!-- END generated: NAME -->` markers in the document (plots, machine, comparison, criterion); everything
outside the markers is left as written. Python 3 standard library only.

    python3 scripts/plot.py --csv docs/benchmarks.csv --criterion target/criterion \
        --doc docs/benchmarks.md --plots docs/plots
"""

import argparse
import csv
import json
import math
import os
import re
import sys

ENGINES = ["foldlog", "raw", "sqlite", "redb", "fjall"]
PEERS = ["sqlite", "redb", "fjall"]
COLORS = {
    "foldlog": "#1f6fb4",
    "raw": "#8c8c8c",
    "sqlite": "#3a9a3a",
    "redb": "#c9423a",
    "fjall": "#8a63b8",
    "never": "#1f6fb4",
    "group": "#e08a1e",
    "always": "#c9423a",
    "fresh_checkpoint": "#1f6fb4",
    "stale_checkpoint": "#e08a1e",
    "no_checkpoint": "#c9423a",
    "torn_tail": "#3a9a3a",
}
SCENARIO_TITLES = {
    "append_group": "Append, 1 event per call, group commit every 1,000 calls",
    "append_nosync": "Append, 1 event per call, no sync",
    "append_always": "Append, 1 event per call, sync every call (time-bounded)",
    "batch100_nosync": "Append, 100 events (100-byte payloads) per call, no sync",
    "batch100_group": "Append, 100 events (100-byte payloads) per call, sync every 10 calls",
    "read_stream": "1,000 random stream reads (whole stream)",
    "read_100": "1,000 reads of the first 100 events of a random stream with at least 100",
    "replay": "Full replay in global order",
    "reopen": "Reopen and read the first event of the hottest stream",
    "disk": "Bytes on disk after the 1,000,000-event group-commit run (allocated blocks)",
}
SCENARIO_ORDER = list(SCENARIO_TITLES)


# ----------------------------------------------------------------------------------------------------------
# Inputs


def read_csv(path):
    meta, rows = {}, []
    with open(path, newline="") as f:
        lines = []
        for line in f:
            if line.startswith("#"):
                key, _, value = line[1:].strip().partition(":")
                meta[key.strip()] = value.strip()
            else:
                lines.append(line)
    for r in csv.DictReader(lines):
        for k in ("median", "min", "max"):
            r[k] = float(r[k])
        r["runs"] = int(r["runs"])
        r["higher_is_better"] = r["higher_is_better"] == "true"
        rows.append(r)
    return meta, rows


def read_criterion(root):
    """{full_id: {"group", "function", "value", "median_ns", "elements", "bytes"}} from criterion's output."""
    out = {}
    if not root or not os.path.isdir(root):
        return out
    for dirpath, _, files in os.walk(root):
        if not dirpath.endswith(os.sep + "new") or "benchmark.json" not in files:
            continue
        try:
            with open(os.path.join(dirpath, "benchmark.json")) as f:
                b = json.load(f)
            with open(os.path.join(dirpath, "estimates.json")) as f:
                e = json.load(f)
        except (OSError, ValueError):
            continue
        t = b.get("throughput") or {}
        elements = bytes_ = None
        if "Elements" in t:
            elements = t["Elements"]
        if "Bytes" in t:
            bytes_ = t["Bytes"]
        if "ElementsAndBytes" in t:
            elements, bytes_ = t["ElementsAndBytes"]["elements"], t["ElementsAndBytes"]["bytes"]
        out[b["full_id"]] = {
            "group": b["group_id"],
            "function": b.get("function_id") or "",
            "value": b.get("value_str") or "",
            "median_ns": e["median"]["point_estimate"],
            "low_ns": e["median"]["confidence_interval"]["lower_bound"],
            "high_ns": e["median"]["confidence_interval"]["upper_bound"],
            "elements": elements,
            "bytes": bytes_,
        }
    return out


# ----------------------------------------------------------------------------------------------------------
# Number formatting


def fmt(v):
    a = abs(v)
    if a >= 1e6:
        return f"{v / 1e6:.2f} M"
    if a >= 1e4:
        return f"{v / 1e3:.0f} k"
    if a >= 100:
        return f"{v:.0f}"
    if a >= 1:
        return f"{v:.2f}"
    return f"{v:.3f}"


def fmt_tick(v):
    for div, suffix in ((1e6, " M"), (1e3, " k")):
        if abs(v) >= div:
            return f"{v / div:g}{suffix}"
    return f"{v:g}"


def fmt_ns(ns):
    if ns >= 1e9:
        return f"{ns / 1e9:.2f} s"
    if ns >= 1e6:
        return f"{ns / 1e6:.2f} ms"
    if ns >= 1e3:
        return f"{ns / 1e3:.2f} µs"
    return f"{ns:.0f} ns"


def esc(s):
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# ----------------------------------------------------------------------------------------------------------
# SVG charts


class Axis:
    """A value axis, linear from zero or logarithmic, with tick values."""

    def __init__(self, lo, hi, log, pad=True):
        self.log = log
        if log:
            self.lo = 10 ** math.floor(math.log10(max(lo, 1e-12)))
            self.hi = 10 ** math.ceil(math.log10(max(hi, self.lo * 10)))
            if pad and self.hi / self.lo < 100 and lo > 0:
                self.hi *= 10
        else:
            self.lo = 0.0
            step = nice_step(hi / 5 if hi > 0 else 1)
            self.hi = step * math.ceil(hi / step) if hi > 0 else 1

    def frac(self, v):
        if self.log:
            v = max(v, self.lo)
            return (math.log10(v) - math.log10(self.lo)) / (math.log10(self.hi) - math.log10(self.lo))
        return (v - self.lo) / (self.hi - self.lo)

    def ticks(self):
        if self.log:
            t, v = [], self.lo
            while v <= self.hi * 1.0001:
                t.append(v)
                v *= 10
            return t
        step = nice_step(self.hi / 5)
        return [i * step for i in range(int(round(self.hi / step)) + 1)]


def nice_step(raw):
    mag = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1
    for m in (1, 2, 2.5, 5, 10):
        if raw <= m * mag:
            return m * mag
    return 10 * mag


def svg_frame(width, height, title, subtitle):
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="Helvetica, Arial, sans-serif" font-size="12">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{width / 2}" y="22" text-anchor="middle" font-size="15" font-weight="bold">{esc(title)}</text>',
    ]
    if subtitle:
        parts.append(f'<text x="{width / 2}" y="40" text-anchor="middle" fill="#555">{esc(subtitle)}</text>')
    return parts


def draw_value_axis(parts, axis, x0, y0, plot_w, plot_h, unit):
    for t in axis.ticks():
        y = y0 + plot_h - axis.frac(t) * plot_h
        parts.append(f'<line x1="{x0}" y1="{y:.1f}" x2="{x0 + plot_w}" y2="{y:.1f}" stroke="#e4e4e4"/>')
        parts.append(f'<text x="{x0 - 6}" y="{y + 4:.1f}" text-anchor="end" fill="#333">{esc(fmt_tick(t))}</text>')
    parts.append(f'<line x1="{x0}" y1="{y0}" x2="{x0}" y2="{y0 + plot_h}" stroke="#333"/>')
    parts.append(f'<line x1="{x0}" y1="{y0 + plot_h}" x2="{x0 + plot_w}" y2="{y0 + plot_h}" stroke="#333"/>')
    cy = y0 + plot_h / 2
    label = unit + (" (log scale)" if axis.log else "")
    parts.append(
        f'<text x="16" y="{cy}" text-anchor="middle" transform="rotate(-90 16 {cy})" fill="#333">{esc(label)}</text>'
    )


def draw_legend(parts, names, x, y):
    xx = x
    for n in names:
        parts.append(f'<rect x="{xx}" y="{y - 10}" width="12" height="12" fill="{COLORS.get(n, "#444")}"/>')
        parts.append(f'<text x="{xx + 17}" y="{y}">{esc(n)}</text>')
        xx += max(100, 7 * len(n) + 40)


def bar_chart(path, title, subtitle, groups, series, get, unit, log=True):
    """Grouped bars: one group per label in `groups`, one bar per series; get(g, s) -> (median, lo, hi)."""
    vals = [v for g in groups for s in series if (v := get(g, s))]
    if not vals:
        return False
    width = max(640, 90 + len(groups) * (len(series) * 22 + 36))
    height = 420
    x0, y0, plot_w, plot_h = 80, 60, width - 100, 250
    axis = Axis(min(v[1] for v in vals), max(v[2] for v in vals), log)
    parts = svg_frame(width, height, title, subtitle)
    draw_value_axis(parts, axis, x0, y0, plot_w, plot_h, unit)
    gw = plot_w / len(groups)
    bw = min(22, (gw - 16) / len(series))
    for gi, g in enumerate(groups):
        gx = x0 + gi * gw + (gw - bw * len(series)) / 2
        for si, s in enumerate(series):
            v = get(g, s)
            if not v:
                continue
            x = gx + si * bw
            top = y0 + plot_h - axis.frac(v[0]) * plot_h
            parts.append(
                f'<rect x="{x:.1f}" y="{top:.1f}" width="{bw - 2:.1f}" height="{y0 + plot_h - top:.1f}" '
                f'fill="{COLORS.get(s, "#444")}"><title>{esc(s)} {esc(g)}: {esc(fmt(v[0]))} {esc(unit)}</title></rect>'
            )
            if v[2] > v[1]:
                ylo = y0 + plot_h - axis.frac(v[1]) * plot_h
                yhi = y0 + plot_h - axis.frac(v[2]) * plot_h
                cx = x + (bw - 2) / 2
                parts.append(f'<line x1="{cx:.1f}" y1="{ylo:.1f}" x2="{cx:.1f}" y2="{yhi:.1f}" stroke="#111"/>')
        label_lines = g.split("\n")
        for li, line in enumerate(label_lines):
            parts.append(
                f'<text x="{x0 + gi * gw + gw / 2:.1f}" y="{y0 + plot_h + 18 + li * 14}" text-anchor="middle">'
                f"{esc(line)}</text>"
            )
    draw_legend(parts, series, x0, height - 24)
    parts.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(parts) + "\n")
    return True


def line_chart(path, title, subtitle, series, x_label, unit, xlog=True, ylog=True):
    """series: {name: [(x, y), ...]}."""
    pts = [p for s in series.values() for p in s]
    if not pts:
        return False
    width, height = 680, 420
    x0, y0, plot_w, plot_h = 80, 60, width - 110, 260
    yaxis = Axis(min(p[1] for p in pts), max(p[1] for p in pts), ylog)
    xaxis = Axis(min(p[0] for p in pts), max(p[0] for p in pts), xlog, pad=False)
    parts = svg_frame(width, height, title, subtitle)
    draw_value_axis(parts, yaxis, x0, y0, plot_w, plot_h, unit)
    for t in xaxis.ticks():
        x = x0 + xaxis.frac(t) * plot_w
        parts.append(f'<line x1="{x:.1f}" y1="{y0}" x2="{x:.1f}" y2="{y0 + plot_h}" stroke="#f0f0f0"/>')
        parts.append(f'<text x="{x:.1f}" y="{y0 + plot_h + 18}" text-anchor="middle">{esc(fmt_tick(t))}</text>')
    parts.append(f'<text x="{x0 + plot_w / 2}" y="{y0 + plot_h + 40}" text-anchor="middle">{esc(x_label)}</text>')
    for name, ps in series.items():
        ps = sorted(ps)
        coords = [(x0 + xaxis.frac(x) * plot_w, y0 + plot_h - yaxis.frac(y) * plot_h) for x, y in ps]
        color = COLORS.get(name, "#444")
        d = " ".join(f"{cx:.1f},{cy:.1f}" for cx, cy in coords)
        parts.append(f'<polyline points="{d}" fill="none" stroke="{color}" stroke-width="2"/>')
        for (cx, cy), (x, y) in zip(coords, ps):
            parts.append(
                f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="4" fill="{color}"><title>{esc(name)} {esc(fmt(x))}: '
                f"{esc(fmt(y))} {esc(unit)}</title></circle>"
            )
    draw_legend(parts, list(series), x0, height - 24)
    parts.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(parts) + "\n")
    return True


# ----------------------------------------------------------------------------------------------------------
# The document


class Results:
    def __init__(self, rows):
        self.rows = rows
        self.engines = [e for e in ENGINES if any(r["engine"] == e for r in rows)]

    def get(self, engine, scenario, metric):
        for r in self.rows:
            if r["engine"] == engine and r["scenario"] == scenario and r["metric"] == metric:
                return r
        return None

    def metrics(self, scenario):
        seen = []
        for r in self.rows:
            if r["scenario"] == scenario and r["metric"] not in seen:
                seen.append(r["metric"])
        return seen


def advantage(f, o):
    """How many times better foldlog is than `o` (> 1: foldlog better)."""
    if not f or not o or f["median"] == 0 or o["median"] == 0:
        return None
    return f["median"] / o["median"] if f["higher_is_better"] else o["median"] / f["median"]


def targets(res):
    """(scenario, metric, text, met) for each target of issue 5 that the comparison measures."""
    out = []

    def val(e, s, m):
        r = res.get(e, s, m)
        return r["median"] if r else None

    def add(s, m, text, ok):
        if ok is not None:
            out.append((s, m, text, ok))

    f = val("foldlog", "append_group", "throughput")
    raw = val("raw", "append_group", "throughput")
    peers = [v for p in PEERS if (v := val(p, "append_group", "throughput"))]
    if f and raw:
        add("append_group", "throughput", f"≥ 1.0 × raw (is {f / raw:.2f} ×)", f >= raw)
    if f and peers:
        best = max(peers)
        add("append_group", "throughput", f"≥ 6 × best peer (is {f / best:.1f} ×)", f >= 6 * best)
    f, raw = val("foldlog", "append_always", "throughput"), val("raw", "append_always", "throughput")
    if f and raw:
        add("append_always", "throughput", f"≥ 0.95 × raw (is {f / raw:.2f} ×)", f >= 0.95 * raw)
    f, raw = val("foldlog", "append_always", "p50"), val("raw", "append_always", "p50")
    if f and raw:
        add("append_always", "p50", f"≤ 1.1 × a bare write+fdatasync (raw p50; is {f / raw:.2f} ×)", f <= 1.1 * raw)
    f = val("foldlog", "append_nosync", "throughput")
    if f:
        add("append_nosync", "throughput", f"≥ 2 M events/s (is {fmt(f)})", f >= 2e6)
    f = val("foldlog", "batch100_nosync", "throughput")
    if f:
        add("batch100_nosync", "throughput", f"≥ 5 M events/s (is {fmt(f)})", f >= 5e6)
    f, raw = val("foldlog", "replay", "throughput"), val("raw", "replay", "throughput")
    if f:
        add("replay", "throughput", f"≥ 20 M events/s (is {fmt(f)})", f >= 20e6)
    if f and raw:
        add("replay", "throughput", f"≥ 1.3 × raw framed read (is {f / raw:.2f} ×)", f >= 1.3 * raw)
    f = val("foldlog", "read_100", "p50")
    if f:
        add("read_100", "p50", f"< 5 µs (is {fmt(f)} µs)", f < 5)
    f = val("foldlog", "read_100", "p99")
    if f:
        add("read_100", "p99", f"< 20 µs (is {fmt(f)} µs)", f < 20)
    f = val("foldlog", "reopen", "open_first_read")
    if f:
        add("reopen", "open_first_read", f"≤ 2 ms at 1 M events (is {fmt(f)} ms)", f <= 2)
    f = val("foldlog", "disk", "per_logical")
    if f:
        add("disk", "per_logical", f"≤ 1.15 × logical bytes (is {f:.2f} ×)", f <= 1.15)
    return out


def comparison_section(meta, res):
    L = []
    cmd = meta.get("command", "cargo run --release --manifest-path compare/Cargo.toml --")
    L.append(f"Reproduce every table in this section: `{cmd}` (or `scripts/bench.sh`).")
    L.append("")
    L.append(
        "Each cell is the median of the runs, with min–max in brackets. The `fl ÷ X` columns say how many "
        "times better foldlog is than X in that row (> 1: foldlog wins, < 1: foldlog is behind), whichever "
        "direction is better for the metric."
    )
    L.append("")
    tg = targets(res)
    for scenario in SCENARIO_ORDER:
        metrics = res.metrics(scenario)
        if not metrics:
            continue
        L.append(f"#### {SCENARIO_TITLES[scenario]}")
        L.append("")
        others = [e for e in res.engines if e != "foldlog"]
        head = ["metric"] + res.engines + [f"fl ÷ {o}" for o in others]
        L.append("| " + " | ".join(head) + " |")
        L.append("|" + "---|" * len(head))
        for m in metrics:
            any_row = next(r for r in res.rows if r["scenario"] == scenario and r["metric"] == m)
            cells = [f"{m} ({any_row['unit']})"]
            for e in res.engines:
                r = res.get(e, scenario, m)
                if not r:
                    cells.append("–")
                elif r["runs"] > 1:
                    cells.append(f"{fmt(r['median'])} [{fmt(r['min'])}–{fmt(r['max'])}]")
                else:
                    cells.append(fmt(r["median"]))
            f = res.get("foldlog", scenario, m)
            for o in others:
                a = advantage(f, res.get(o, scenario, m))
                cells.append("–" if a is None else (f"**{a:.2f} ×**" if a < 1 else f"{a:.2f} ×"))
            L.append("| " + " | ".join(cells) + " |")
        L.append("")
        settings = [
            f"{e}: {r['setting']}"
            for e in res.engines
            if (r := res.get(e, scenario, metrics[0])) and scenario.startswith(("append", "batch"))
        ]
        if settings:
            L.append("Settings (the same durability promise in this row): " + "; ".join(settings) + ".")
            L.append("")
        mine = [t for t in tg if t[0] == scenario]
        for _, _, text, ok in mine:
            L.append(f"- Target {text}: **{'met' if ok else 'missed'}**.")
        if mine:
            L.append("")
    return "\n".join(L)


def machine_section(meta):
    keys = ["date", "cpu", "memory", "kernel", "filesystem", "rustc", "foldlog commit", "engines", "workload", "command"]
    L = ["| | |", "|---|---|"]
    for k in keys:
        if k in meta:
            L.append(f"| {k} | {esc(meta[k])} |")
    return "\n".join(L)


CRITERION_GROUPS = ["append/never", "append/group", "append/always", "streams", "read_stream", "replay", "recovery"]


def criterion_section(crit):
    if not crit:
        return "_No criterion results found; run `cargo bench --bench append` (etc.) and regenerate._"
    L = [
        "Median time per iteration (criterion's estimate) and the throughput it implies. Details, "
        "distributions and history: criterion's HTML report at `target/criterion/report/index.html` after "
        "`cargo bench` ([local link](../target/criterion/report/index.html)).",
        "",
    ]
    for group in CRITERION_GROUPS:
        items = sorted(
            (v for v in crit.values() if v["group"] == group),
            key=lambda v: (natural(v["function"]), natural(v["value"])),
        )
        if not items:
            continue
        L.append(f"**{group}**")
        L.append("")
        L.append("| benchmark | median time | events/s | MiB/s |")
        L.append("|---|---|---|---|")
        for v in items:
            secs = v["median_ns"] / 1e9
            eps = fmt(v["elements"] / secs) if v["elements"] else "–"
            mibs = f"{v['bytes'] / secs / (1 << 20):.0f}" if v["bytes"] else "–"
            name = "/".join(x for x in (v["function"], v["value"]) if x)
            L.append(f"| {name} | {fmt_ns(v['median_ns'])} | {eps} | {mibs} |")
        L.append("")
    return "\n".join(L)


def natural(s):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", s)]


def make_plots(res, crit, plots_dir, doc_dir):
    os.makedirs(plots_dir, exist_ok=True)
    made = []
    rel = os.path.relpath(plots_dir, doc_dir)

    def rng(e, s, m):
        r = res.get(e, s, m)
        return (r["median"], r["min"], r["max"]) if r else None

    groups = {
        "1/call\nno sync": "append_nosync",
        "100/call\nno sync": "batch100_nosync",
        "1/call\ngroup 1,000": "append_group",
        "100/call\ngroup 1,000 ev": "batch100_group",
        "1/call\nsync each": "append_always",
    }
    if bar_chart(
        os.path.join(plots_dir, "append_throughput.svg"),
        "Append throughput by batch size and durability",
        "comparison harness, one workload; median of runs, bars show min–max",
        list(groups),
        res.engines,
        lambda g, s: rng(s, groups[g], "throughput"),
        "events/s",
    ):
        made.append(("append_throughput.svg", "Append throughput by batch size and durability, every engine"))

    lat = {
        "read stream\np50": ("read_stream", "p50"),
        "read stream\np99": ("read_stream", "p99"),
        "first 100 ev\np50": ("read_100", "p50"),
        "first 100 ev\np99": ("read_100", "p99"),
        "append+sync\np50": ("append_always", "p50"),
        "append+sync\np99": ("append_always", "p99"),
    }
    if bar_chart(
        os.path.join(plots_dir, "latency.svg"),
        "Latency percentiles",
        "lower is better; median of runs, bars show min–max",
        list(lat),
        res.engines,
        lambda g, s: rng(s, *lat[g]),
        "µs",
    ):
        made.append(("latency.svg", "Read and durable-append latency percentiles"))

    if bar_chart(
        os.path.join(plots_dir, "replay.svg"),
        "Full replay in global order",
        "events/s, higher is better",
        ["replay"],
        res.engines,
        lambda g, s: rng(s, "replay", "throughput"),
        "events/s",
    ):
        made.append(("replay.svg", "Full replay throughput"))

    # Criterion: throughput by batch size per durability (128-byte payloads), and open time vs log size.
    series = {}
    for v in crit.values():
        if v["group"].startswith("append/") and v["function"] == "payload_128" and v["elements"]:
            batch = int(v["value"].split("_")[-1])
            series.setdefault(v["group"].split("/")[1], []).append((batch, v["elements"] / (v["median_ns"] / 1e9)))
    if series and line_chart(
        os.path.join(plots_dir, "append_batch.svg"),
        "foldlog append throughput by batch size (criterion, 128-byte payloads)",
        "one stream per call; durability never / group commit (defaults) / every append",
        {k: series[k] for k in ("never", "group", "always") if k in series},
        "events per append call",
        "events/s",
    ):
        made.append(("append_batch.svg", "foldlog append throughput by batch size and durability (criterion)"))
    series = {}
    for v in crit.values():
        if v["group"] == "recovery":
            series.setdefault(v["function"], []).append((int(v["value"]), v["median_ns"] / 1e6))
    if series and line_chart(
        os.path.join(plots_dir, "open_time.svg"),
        "foldlog open time versus log size (criterion)",
        "index checkpoint fresh / stale (half the log) / none; torn last batch",
        {k: series[k] for k in ("fresh_checkpoint", "stale_checkpoint", "no_checkpoint", "torn_tail") if k in series},
        "events in the log",
        "ms",
    ):
        made.append(("open_time.svg", "Open (recovery) time versus log size"))
    return "\n\n".join(f"![{alt}]({rel}/{name})" for name, alt in made)


TEMPLATE = """# foldlog benchmarks

<!-- BEGIN generated: plots -->
<!-- END generated: plots -->

## Machine

<!-- BEGIN generated: machine -->
<!-- END generated: machine -->

## Comparison

<!-- BEGIN generated: comparison -->
<!-- END generated: comparison -->

## Criterion

<!-- BEGIN generated: criterion -->
<!-- END generated: criterion -->
"""


def replace_section(doc, name, body):
    pat = re.compile(
        r"(<!-- BEGIN generated: " + re.escape(name) + r" -->\n).*?(<!-- END generated: " + re.escape(name) + r" -->)",
        re.S,
    )
    if not pat.search(doc):
        sys.exit(f"plot.py: no '{name}' markers in the document")
    return pat.sub(lambda m: m.group(1) + body.rstrip() + "\n" + m.group(2), doc)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--csv", required=True)
    ap.add_argument("--criterion", default=None)
    ap.add_argument("--doc", default="docs/benchmarks.md")
    ap.add_argument("--plots", default="docs/plots")
    a = ap.parse_args()
    meta, rows = read_csv(a.csv)
    res = Results(rows)
    crit = read_criterion(a.criterion)
    doc = open(a.doc).read() if os.path.exists(a.doc) else TEMPLATE
    plots = make_plots(res, crit, a.plots, os.path.dirname(os.path.abspath(a.doc)))
    doc = replace_section(doc, "plots", plots)
    doc = replace_section(doc, "machine", machine_section(meta))
    doc = replace_section(doc, "comparison", comparison_section(meta, res))
    if crit:
        doc = replace_section(doc, "criterion", criterion_section(crit))
    with open(a.doc, "w") as f:
        f.write(doc)
    print(f"wrote {a.doc} and {a.plots}/*.svg")


if __name__ == "__main__":
    main()
