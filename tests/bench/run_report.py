#!/usr/bin/env python3
"""Runs the benchmarks behind BENCHMARKS.md, one after another on a quiet machine,
keeps their raw results in tests/bench/results/ and draws the plots.

    python3 tests/bench/run_report.py [--skip relay,scaling,load,soak] [--load-hold 600]

  crypto.json    openssl speed -evp aes-256-gcm (16 KiB blocks): the crypto-only limit
  relay.json     relay_bench.py (imapscope, HAProxy, nginx, the floor relay, direct Dovecot)
  scaling.json   scaling_bench.py (1 and 2 event loops)
  load.json      tests/load/load_run.py (10,000 idle TLS sessions, 50 active, churn)
  soak.json      tests/load/soak.py (5 GB, every byte checked both ways)

then plot_report.py. As root (Dovecot, apt-get); each step is bounded by its own
limits and stops by itself.
"""
import argparse
import json
import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable


def aes_gcm_speed(seconds=3):
    """Bytes per second of AES-256-GCM on one core, 16 KiB blocks (TLS records)."""
    out = subprocess.run(["openssl", "speed", "-seconds", str(seconds), "-bytes", "16384", "-evp", "aes-256-gcm"],
                         capture_output=True, text=True, check=True).stdout
    line = next(line for line in out.splitlines() if line.lower().startswith("aes-256-gcm"))
    kbytes = float(re.findall(r"([\d.]+)k", line)[-1])  # openssl reports 1000s of bytes per second
    version = subprocess.run(["openssl", "version"], capture_output=True, text=True).stdout.strip()
    return {"bytes_per_second": kbytes * 1000, "openssl": version, "line": line.strip()}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", default=os.path.join(HERE, "results"))
    ap.add_argument("--skip", default="", help="comma-separated steps not to run: relay,scaling,load,soak")
    ap.add_argument("--load-hold", default="600", help="seconds the 10,000 idle sessions are held")
    ap.add_argument("--imapscope", help="binary for every step (default: each step's own Release build)")
    args = ap.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    os.makedirs(args.results, exist_ok=True)
    binary = ["--imapscope", args.imapscope] if args.imapscope else []

    def out(name):
        return os.path.join(args.results, name)

    with open(out("crypto.json"), "w") as f:
        json.dump(aes_gcm_speed(), f, indent=1)
    steps = [
        ("relay", [PYTHON, os.path.join(HERE, "relay_bench.py"), "--json", out("relay.json")] + binary),
        ("scaling", [PYTHON, os.path.join(HERE, "scaling_bench.py"), "--json", out("scaling.json")] + binary),
        ("load", [PYTHON, os.path.join(ROOT, "tests", "load", "load_run.py"), "--hold", args.load_hold,
                  "--json", out("load.json")] + binary),
        ("soak", [PYTHON, os.path.join(ROOT, "tests", "load", "soak.py"), "--json", out("soak.json")] + binary),
    ]
    for name, argv in steps:
        if name in skip:
            continue
        print(f"run_report: {name}: {' '.join(argv)}", flush=True)
        with open(out(f"{name}.log"), "w") as log:
            code = subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT).returncode
        print(f"run_report: {name} exited {code} (log: {out(name + '.log')})", flush=True)
    subprocess.run([PYTHON, os.path.join(HERE, "plot_report.py"), "--results", args.results], check=True)


if __name__ == "__main__":
    main()
