#!/usr/bin/env python3
"""Draw the results of tools/bench.py --json as a hand-written SVG.

One block per (test, metric); in it one horizontal bar per scenario: the ratio of its median to the
classic baseline (classic-ptp), on a log scale centred on 1.0, so 2x better and 2x worse are the
same length.  Bars to the right of the 1.0 line are larger values; each block says whether larger
is better.  Scenarios that failed or are not available are listed with their status instead of a
bar.

    python3 tools/chart.py results.json -o chart.svg

Python 3.11 standard library only.
"""

import argparse
import json
import math
import sys
from xml.sax.saxutils import escape

# (test, metric) pairs drawn, in order (bench.py's list); others in the JSON are ignored
import os

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench import CHART_METRICS as METRICS  # noqa: E402

PALETTE = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7", "#9c755f"]

W = 900
LABEL_W = 230
VALUE_W = 190
ROW_H = 18
GAP = 14
TITLE_H = 22
FONT = "font-family='DejaVu Sans, Arial, sans-serif'"


def _fmt(v):
    if v is None:
        return "-"
    if v == 0:
        return "0"
    if abs(v) >= 100:
        return "%.0f" % v
    if abs(v) >= 10:
        return "%.1f" % v
    return "%.3g" % v


def _text(x, y, s, size=12, anchor="start", weight="normal", fill="#222"):
    return "<text x='%.1f' y='%.1f' %s font-size='%d' text-anchor='%s' font-weight='%s' fill='%s'>%s</text>" % (
        x,
        y,
        FONT,
        size,
        anchor,
        weight,
        fill,
        escape(str(s), {"'": "&apos;"}),
    )


def _has_data(result, scenario, test=None):
    """Did any sample of SCENARIO (and TEST) succeed?"""
    return any(r["metrics"] for r in result.get("samples", []) if r["scenario"] == scenario and (test is None or r["test"] == test))


def render(result):
    baseline = result["meta"].get("baseline", "classic-ptp")
    scenarios = result["scenarios"]
    colors = {sc["name"]: PALETTE[i % len(PALETTE)] for i, sc in enumerate(scenarios)}
    tests = result["tests"]
    # scenarios that never ran are listed once under the chart, not in every block
    shown = [sc for sc in scenarios if sc["status"] == "ok" or _has_data(result, sc["name"])]
    blocks = []
    ratios = []
    for test, metric in METRICS:
        if test not in tests:
            continue
        minfo = next((m for m in tests[test]["metrics"] if m["name"] == metric), None)
        if minfo is None:
            continue
        rows = []
        for sc in shown:
            st = result["summary"].get(sc["name"], {}).get(test, {}).get(metric)
            r = st.get("ratio_classic") if st else None
            if r is not None and r > 0:
                ratios.append(r)
            rows.append((sc, st, r))
        blocks.append((test, metric, minfo, rows))

    # log2 axis, symmetric around 1.0, at least 0.5..2
    span = max([1.0] + [abs(math.log2(r)) for r in ratios])
    span = math.ceil(span + 0.15)
    plot_x0 = LABEL_W
    plot_w = W - LABEL_W - VALUE_W
    mid = plot_x0 + plot_w / 2.0

    def xof(r):
        # a ratio of 0 (a median of 0 against a baseline above it, e.g. a zero-loss rate no
        # probe reached) or beyond the axis is drawn at the axis' end
        r = min(max(r, 2.0**-span), 2.0**span)
        return mid + (math.log2(r) / span) * (plot_w / 2.0)

    out = []
    y = 20
    meta = result["meta"]
    out.append(_text(10, y, "vdens-fast side-by-side benchmark: median ratio to %s (log scale)" % baseline, 15, weight="bold"))
    y += 18
    out.append(
        _text(
            10,
            y,
            "%s, %s CPUs, kernel %s; %s round(s) x %s s; whiskers: min..max" % (meta.get("started"), meta.get("cpus"), meta.get("kernel"), meta.get("rounds"), meta.get("duration_s")),
            11,
            fill="#555",
        )
    )
    y += 16
    # axis ticks
    ticks = [2.0**k for k in range(-span, span + 1)]
    axis_y = y + 4
    for t in ticks:
        x = xof(t)
        lab = ("%gx" % t) if t >= 1 else ("1/%gx" % (1 / t))
        out.append(_text(x, axis_y + 10, lab, 10, anchor="middle", fill="#555"))
    y = axis_y + 18
    body_top = y

    for test, metric, minfo, rows in blocks:
        better = "higher is better" if minfo["higher_is_better"] else "lower is better"
        out.append(_text(10, y + 15, "%s - %s (%s)" % (tests[test]["label"], minfo["unit"], better), 13, weight="bold"))
        y += TITLE_H
        for sc, st, r in rows:
            cy = y + ROW_H / 2.0
            out.append(_text(LABEL_W - 8, cy + 4, sc["name"], 11, anchor="end"))
            if st is None or r is None:
                if st is None and _has_data(result, sc["name"], test):
                    note = "n/a (no forwarding process: kernel only)" if sc["name"] == "veth" else "n/a"
                elif st is None:
                    note = "no data (every sample failed)"
                else:
                    note = "%s %s (no baseline to compare)" % (_fmt(st["median"]), minfo["unit"])
                out.append(_text(plot_x0 + 4, cy + 4, note, 11, fill="#888"))
            else:
                x = xof(r)
                x0, x1 = min(mid, x), max(mid, x)
                out.append("<rect x='%.1f' y='%.1f' width='%.1f' height='%.1f' fill='%s'/>" % (x0, y + 2, max(x1 - x0, 1.5), ROW_H - 4, colors[sc["name"]]))
                base = st["median"] / r if r > 0 else 0  # the baseline's median
                if base > 0 and st["min"] > 0 and st["max"] > 0:
                    lo, hi = (xof(min(max(v / base, 2.0**-span), 2.0**span)) for v in (st["min"], st["max"]))
                    out.append("<line x1='%.1f' y1='%.1f' x2='%.1f' y2='%.1f' stroke='#333' stroke-width='1'/>" % (lo, cy, hi, cy))
                out.append(_text(W - VALUE_W + 6, cy + 4, "%sx  (%s %s)" % (_fmt(r), _fmt(st["median"]), minfo["unit"]), 11))
            y += ROW_H
        y += GAP

    # 1.0 line and faint grid over the body
    grid = []
    for t in ticks:
        x = xof(t)
        grid.append("<line x1='%.1f' y1='%.1f' x2='%.1f' y2='%.1f' stroke='%s' stroke-width='%s'/>" % (x, body_top, x, y - GAP, "#333" if t == 1.0 else "#ddd", "1.5" if t == 1.0 else "1"))

    # status legend for scenarios that did not run
    notes = [sc for sc in scenarios if sc["status"] != "ok"]
    for sc in notes:
        status = "not available" if sc["status"] == "not available" else "failed: %s" % (sc.get("reason") or "")
        if len(status) > 120:
            status = status[:117] + "..."
        out.append(_text(10, y + 12, "%s: %s" % (sc["name"], status), 10, fill="#a33" if sc["status"] == "failed" else "#777"))
        y += 14
    h = y + 10
    head = "<svg xmlns='http://www.w3.org/2000/svg' width='%d' height='%d' viewBox='0 0 %d %d'>" % (W, h, W, h)
    bg = "<rect x='0' y='0' width='%d' height='%d' fill='white'/>" % (W, h)
    return "\n".join([head, bg] + grid + out + ["</svg>"]) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description="SVG bar chart (ratio vs classic) from tools/bench.py --json output")
    ap.add_argument("json", help="results file written by bench.py --json")
    ap.add_argument("-o", "--output", default="chart.svg", help="SVG file to write (default chart.svg)")
    args = ap.parse_args(argv)
    try:
        with open(args.json) as f:
            result = json.load(f)
    except (OSError, ValueError) as e:
        why = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        print("chart: reading %s: %s (pass a file written by bench.py --json)" % (args.json, why), file=sys.stderr)
        return 1
    svg = render(result)
    with open(args.output, "w") as f:
        f.write(svg)
    print("chart: wrote %s" % args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
