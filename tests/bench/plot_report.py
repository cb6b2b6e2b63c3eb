#!/usr/bin/env python3
"""The plots of BENCHMARKS.md, drawn from the raw results of one benchmark run.

    python3 tests/bench/plot_report.py --results tests/bench/results [--out tests/bench/results]

Reads what the benchmarks wrote with --json into the results folder:

  relay.json     relay_bench.py: imapscope, HAProxy, nginx, the floor relay and
                 direct Dovecot side by side (FETCH MB/s and CPU s/GB, NOOP/FETCH
                 p50/p99, memory per idle session, new sessions per second)
  scaling.json   scaling_bench.py: 1 and 2 event loops against HAProxy
  load.json      tests/load/load_run.py: 10,000 idle sessions beside 50 active ones
  crypto.json    AES-256-GCM speed (`openssl speed -evp aes-256-gcm`, as run_report.sh
                 records it): the crypto-only cost per GB

and writes one PNG per figure next to them. matplotlib from Debian
(python3-matplotlib); installed with apt-get when missing, as root.
"""
import argparse
import json
import os
import subprocess
import sys

PATH_ORDER = ["direct", "imapscope", "haproxy", "nginx", "floor"]
COLORS = {"direct": "#9e9e9e", "imapscope": "#1f77b4", "haproxy": "#ff7f0e", "nginx": "#2ca02c", "floor": "#555555"}
SETUPS = [("tls-plain", "TLS→plain"), ("tls-tls", "TLS→TLS"), ("plain", "plain→plain")]


def matplotlib():
    try:
        import matplotlib as mpl
    except ImportError:
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", "python3-matplotlib"],
                       check=True, env=env)
        import matplotlib as mpl
    mpl.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def load(folder, name):
    path = os.path.join(folder, name)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def relay_value(relay, setup, path, *keys):
    value = relay.get(f"{setup}/{path}")
    for key in keys:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


def grouped_bars(plt, title, ylabel, groups, series, values, out, hline=None, note=None):
    """groups: x labels; series: bar names; values[series][group] (None: not measured)."""
    fig, ax = plt.subplots(figsize=(8, 4.2), dpi=110)
    width = 0.8 / max(1, len(series))
    for i, name in enumerate(series):
        xs, ys = [], []
        for g, _ in enumerate(groups):
            v = values[name][g]
            if v is not None:
                xs.append(g + (i - (len(series) - 1) / 2) * width)
                ys.append(v)
        bars = ax.bar(xs, ys, width, label=name, color=COLORS.get(name))
        ax.bar_label(bars, fmt="%.3g", fontsize=7, padding=1)
    ax.set_xticks(range(len(groups)), groups)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=11)
    if hline:
        for y, label in hline:
            ax.axhline(y, color="#d62728", linestyle="--", linewidth=1)
            ax.text(len(groups) - 0.5, y, label, color="#d62728", fontsize=7, ha="right", va="bottom")
    if note:
        fig.text(0.01, 0.01, note, fontsize=7, color="#555555")
    ax.legend(fontsize=8)
    fig.tight_layout(rect=(0, 0.04 if note else 0, 1, 1))
    fig.savefig(out)
    plt.close(fig)
    return out


def plots(folder, out):
    plt = matplotlib()
    relay = load(folder, "relay.json") or {}
    scaling = load(folder, "scaling.json")
    load_run = load(folder, "load.json")
    crypto = load(folder, "crypto.json")
    written = []
    groups = [title for _, title in SETUPS]
    paths = [p for p in PATH_ORDER if any(f"{s}/{p}" in relay for s, _ in SETUPS)]
    no_nginx = "nginx: no TLS towards the server, so no TLS→TLS bar"

    def per_path(*keys, scale=1.0):
        return {p: [(lambda v: None if v is None else v * scale)(relay_value(relay, s, p, *keys)) for s, _ in SETUPS]
                for p in paths}

    if relay:
        written.append(grouped_bars(plt, "Large FETCH throughput (10 MiB messages, 4 sessions)", "MB/s",
                                    groups, paths, per_path("fetch", "mb_s"), os.path.join(out, "fetch_mb_s.png"),
                                    note=no_nginx))
        crypto_lines = None
        if crypto:
            per_gb = 1e9 / (crypto["bytes_per_second"])  # one AES-GCM pass over a GB
            crypto_lines = [(2 * per_gb, f"crypto only, TLS→TLS: {2 * per_gb:.2f}"),
                            (per_gb, f"crypto only, TLS→plain: {per_gb:.2f}")]
        written.append(grouped_bars(plt, "Proxy CPU seconds per GB relayed (lower is better)", "CPU s/GB",
                                    groups, [p for p in paths if p != "direct"],
                                    per_path("fetch", "cpu_proxy_s_per_gb"), os.path.join(out, "cpu_per_gb.png"),
                                    hline=crypto_lines, note=no_nginx))
        for kind, label in (("noop", "NOOP"), ("flags", "FETCH 1 (FLAGS)")):
            values = {f"{p} {pct}": [relay_value(relay, s, p, "rtt", kind, pct) for s, _ in SETUPS]
                      for p in paths for pct in ("p50", "p99")}
            fig_series = list(values)
            written.append(grouped_bars(plt, f"{label} round trip, sequential, one session", "µs", groups,
                                        fig_series, values, os.path.join(out, f"rtt_{kind}.png"), note=no_nginx))
        written.append(grouped_bars(plt, "Memory per idle session (LOGIN, SELECT, IDLE; 2000 sessions)", "KiB",
                                    groups, [p for p in paths if p not in ("direct", "floor")],
                                    per_path("idle", "kib_per_session"), os.path.join(out, "idle_kib.png"),
                                    note=no_nginx))
        values = {f"{p} {kind}": [relay_value(relay, s, p, "churn", kind, "per_second") for s, _ in SETUPS]
                  for p in paths if p != "floor" for kind in ("full", "resumed")}
        written.append(grouped_bars(plt, "New sessions per second (TLS handshake, LOGIN, LOGOUT; 2 clients)",
                                    "sessions/s", groups, list(values), values, os.path.join(out, "churn.png"),
                                    note="full: a new TLS session each time; resumed: the client resumes its last one"))
    if scaling:
        # Labels are "<proxy>-<loops>" ("imapscope-1", "haproxy-2"), keys "<set-up>/<label>".
        rows = []
        for key, res in scaling.get("results", {}).items():
            setup, label = key.split("/", 1)
            proxy, _, loops = label.rpartition("-")
            if "mb_s" in res and loops.isdigit():
                rows.append((setup, f"{proxy} {loops} loop{'s' if loops != '1' else ''}", res["mb_s"]))
        groups_s = sorted({r[0] for r in rows}, reverse=True)
        series = sorted({r[1] for r in rows})
        values = {name: [next((mb for setup, n, mb in rows if setup == g and n == name), None) for g in groups_s]
                  for name in series}
        written.append(grouped_bars(plt, "1 and 2 event loops (synthetic upstream, 8 sessions)", "MB/s", groups_s,
                                    series, values, os.path.join(out, "scaling.png")))
    if load_run:
        kinds = sorted(set(load_run["active_alone"]["by_kind_us"]) - {"IDLE notification"})
        values = {f"{phase} {pct}": [load_run[phase]["by_kind_us"].get(k, {}).get(pct, 0) / 1000 for k in kinds]
                  for phase in ("active_alone", "active_beside_idle") for pct in ("p50", "p99")}
        written.append(grouped_bars(plt, f"Active sessions' latency alone and beside {load_run['idle']} idle ones",
                                    "ms", kinds, list(values), values, os.path.join(out, "load_latency.png"),
                                    note="client: Python asyncio over TLS; the latency includes it and Dovecot"))
    return written


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"))
    ap.add_argument("--out", help="where the PNGs go (default: the results folder)")
    args = ap.parse_args()
    for path in plots(args.results, args.out or args.results):
        print(path)


if __name__ == "__main__":
    sys.exit(main())
