#!/usr/bin/env python3
"""Plots `streamdiff_bench soak`'s CSVs: latency and resident memory against frames (the API
phase) and against connections (the server phase), two panels per phase, into one PNG.

    python3 -m venv tools/.venv-plot && tools/.venv-plot/bin/pip install matplotlib
    tools/.venv-plot/bin/python bench/plot_soak.py [--csv-dir build/soak] [--out docs/soak.png]

A phase whose CSV is missing is left out. The shaded band is the warm-up (the first 5%), which
the soak's RSS check does not count.
"""
import argparse
import csv
import os
import sys


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def num(s):
    return float(s) if s not in ("", None) else None


def rolling_percentiles(values, window, qs):
    """Per block of `window` values: (block centre, [percentile q for q in qs])."""
    out = []
    for start in range(0, len(values) - window + 1, window):
        block = sorted(values[start:start + window])
        out.append((start + window / 2,
                    [block[min(len(block) - 1, int(q * len(block)))] for q in qs]))
    return out


def rss_after_warmup(xs, rss, total):
    """The first RSS sample at or after the warm-up (the first 5%), as the soak takes it."""
    return next((r for x, r in zip(xs, rss) if x >= total * 0.05), rss[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--csv-dir", default=os.environ.get("SD_SOAK_CSV_DIR", "build/soak"))
    ap.add_argument("--out", default="docs/soak.png")
    ap.add_argument("--title", default="", help="a line above the panels (machine, date)")
    args = ap.parse_args()
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        sys.exit("plot_soak.py needs matplotlib: python3 -m venv tools/.venv-plot && "
                 "tools/.venv-plot/bin/pip install matplotlib")

    phases = []
    api_path = os.path.join(args.csv_dir, "api.csv")
    serve_path = os.path.join(args.csv_dir, "serve.csv")
    if os.path.exists(api_path):
        phases.append("api")
    if os.path.exists(serve_path):
        phases.append("serve")
    if not phases:
        sys.exit(f"no api.csv or serve.csv in {args.csv_dir}")

    fig, axes = plt.subplots(len(phases), 2, figsize=(10, 3.3 * len(phases)), squeeze=False)
    for row, phase in zip(axes, phases):
        lat_ax, rss_ax = row
        if phase == "api":
            rows = read_csv(api_path)
            frames = [int(r["frame"]) for r in rows]
            lat = [float(r["latency_ms"]) for r in rows]
            total = len(frames)
            blocks = rolling_percentiles(lat, 100, (0.5, 0.99))
            top = 1.3 * max([b[1][1] for b in blocks] or lat)
            above = sum(v > top for v in lat)
            lat_ax.plot(frames, lat, ".", ms=1, color="0.6", alpha=0.4, rasterized=True,
                        label=f"each frame ({above} above the axis)" if above else "each frame")
            lat_ax.set_ylim(0, top)
            lat_ax.plot([b[0] for b in blocks], [b[1][0] for b in blocks], label="p50 per 100")
            lat_ax.plot([b[0] for b in blocks], [b[1][1] for b in blocks], label="p99 per 100")
            sampled = [r for r in rows if r["rss_mib"]]
            xs = [int(r["frame"]) for r in sampled]
            unit = "frames"
            title = f"API: {total:,} frames, img2img 256², tiny model"
        else:
            rows = read_csv(serve_path)
            conns = [int(r["connection"]) for r in rows]
            total = conns[-1]
            timed = [r for r in rows if r["latency_p50_ms"]]
            tx = [int(r["connection"]) for r in timed]
            lat_ax.plot(tx, [float(r["latency_p50_ms"]) for r in timed], label="p50 per 50 conn.")
            lat_ax.plot(tx, [float(r["latency_p99_ms"]) for r in timed], label="p99 per 50 conn.")
            sampled = rows
            xs = conns
            unit = "connections"
            title = (f"Server: {total:,} WebSocket connections, ≤ 4 at a time, "
                     f"{rows[-1]['frames']} frames")
        rss = [num(r["rss_mib"]) for r in sampled]
        fds = [int(r["fds"]) for r in sampled]
        for ax in row:
            ax.axvspan(0, total * 0.05, color="0.92", lw=0)
            ax.set_xlabel(unit)
            ax.grid(alpha=0.3)
        lat_ax.set_ylabel("latency (ms)")
        lat_ax.set_ylim(bottom=0)  # api: capped above at 1.3x the highest p99 (outliers noted)
        lat_ax.set_title(title, fontsize=9)
        lat_ax.legend(fontsize=7, loc="upper right", markerscale=8)
        base = rss_after_warmup(xs, rss, total)
        rss_ax.plot(xs, rss, color="C2", label="RSS")
        rss_ax.axhline(base * 1.01, color="C3", ls="--", lw=1, label="+1% of after warm-up")
        rss_ax.set_ylabel("RSS (MiB)")
        lo, hi = min(rss), max(max(rss), base * 1.01)
        pad = max(2.0, (hi - lo) * 0.2)
        rss_ax.set_ylim(lo - pad, hi + pad)
        rss_ax.legend(fontsize=7, loc="lower right")
        rss_ax.set_title(f"RSS {base:.1f} → {rss[-1]:.1f} MiB after warm-up "
                         f"({100 * (rss[-1] / base - 1):+.2f}%); fds {fds[0]} → {fds[-1]}",
                         fontsize=9)
    if args.title:
        fig.suptitle(args.title, fontsize=10)
    fig.tight_layout()
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    fig.savefig(args.out, dpi=80)
    print(f"wrote {args.out} ({os.path.getsize(args.out) // 1024} KiB)")


if __name__ == "__main__":
    main()
