#!/usr/bin/env python3
"""Login rate through routing mode against transparent mode (issue 22), side by side.

    python3 tests/bench/routing_bench.py [--setups tls,plain] [--rounds 4] [--seconds 15] [--json FILE]

Three Dovecot instances on loopback, each with the users load0..load{N-1}, and three
imapscope processes started at once, each with the same --threads:

  transparent   --upstream the first Dovecot (as tests/load/load_run.py does)
  map           --route-map: user i to Dovecot i mod 3 (routing_args of load_run)
  http          --route-http: a small auth_http service here, answering from a table
                (the same spread); its answers are cached (routing.cache_hit_s, 300 s)

Before measuring, every user logs in once through each routing proxy, so the http
proxy's cache is warm (the service counts its requests: none may come while
measuring). Then, for --rounds rounds, each proxy in turn (the order rotating every
round: A/B/C, B/C/A, ...) gets loadgen.py's churn for --seconds: --processes client
processes, each connecting, reading the greeting, LOGIN, LOGOUT, one session after
another. For each run: sessions per second, failures, latency, the proxy's CPU per
login (from /proc), the load average before it, and the route metrics' movement
(lookups by source, replayed logins by result).

Set-ups: tls (TLS on both legs, as the load proof) and plain (no TLS anywhere, where
the proxy's own work per login is the largest share). Every process started here is
stopped by pid, every temp dir removed.
"""
import argparse
import http.server
import json
import os
import re
import resource
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "support"))
sys.path.insert(0, os.path.join(HERE, "..", "load"))
from imap_fixtures import (temp_dir, Dovecot, Imapscope, free_port, imapscope_binary, load_limits,  # noqa: E402
                           metric_sum, release_binary)
from load_run import backend_index, proc_stat, raise_nofile, users  # noqa: E402

LOADGEN = os.path.join(HERE, "..", "load", "loadgen.py")
PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
MODES = ("transparent", "map", "http")


class AuthHttp:
    """An nginx auth_http-style service answering from a table: user → (address, port).
    Counts its requests, so that a warm cache can be shown to keep it quiet."""

    def __init__(self, table):
        self.table = table
        self.requests = 0
        service = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                service.requests += 1
                where = service.table.get(self.headers.get("Auth-User", ""))
                self.send_response(200)
                if where:
                    self.send_header("Auth-Status", "OK")
                    self.send_header("Auth-Server", where[0])
                    self.send_header("Auth-Port", str(where[1]))
                else:
                    self.send_header("Auth-Status", "Invalid login or password")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/auth"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def start_proxies(setup, binary, dovecots, names, auth, threads, folder):
    """The three proxies of a set-up, by mode: {"transparent": Imapscope, ...}."""
    tls = setup == "tls"
    certs = dovecots[0].certs
    ca = certs["ca"]

    def port_of(d):
        return d.tls_port if tls else d.port
    map_path = os.path.join(folder, f"{setup}.map")
    with open(map_path, "w") as f:
        for user in names:
            f.write(f"{user}  127.0.0.1:{port_of(dovecots[backend_index(user) % len(dovecots)])}"
                    f"{'  tls' if tls else ''}\n")
    for user in names:
        auth.table[user] = ("127.0.0.1", port_of(dovecots[backend_index(user) % len(dovecots)]))
    routing_common = {"upstream_ca": ca, "backend_tls": "tls" if tls else "none"}
    flags = {
        "transparent": ["--upstream", f"127.0.0.1:{port_of(dovecots[0])}"]
        + (["--upstream-tls", "--upstream-ca", ca] if tls else []),
        # The listeners come from the flags (a config file must list some: none here).
        "map": {"listeners": [], "routing": dict(routing_common, map=map_path)},
        "http": {"listeners": [], "routing": dict(routing_common, http=auth.url)},
    }
    proxies = {}
    try:
        for mode in MODES:
            port = free_port()
            args = (["--listen-tls", f"127.0.0.1:{port}", "--tls-cert", certs["cert"], "--tls-key", certs["key"]]
                    if tls else ["--listen", f"127.0.0.1:{port}"])
            if isinstance(flags[mode], dict):
                config = os.path.join(folder, f"{setup}-{mode}.json")
                with open(config, "w") as f:
                    json.dump(flags[mode], f)
                args += ["--config", config]
            else:
                args += flags[mode]
            p = Imapscope(args + ["--threads", str(threads), "--log-level", "warning"], binary=binary)
            proxies[mode] = p.start([port])
            p.port = port
    except BaseException:
        for p in proxies.values():
            p.stop()
        raise
    return proxies


def warm_up(proxy, tls, ca, names):
    """Every user logs in once (the http proxy's cache holds every answer after it)."""
    import imaplib
    import ssl
    failures = 0
    for user in names:
        try:
            if tls:
                c = imaplib.IMAP4_SSL("127.0.0.1", proxy.port, ssl_context=ssl.create_default_context(cafile=ca),
                                      timeout=30)
            else:
                c = imaplib.IMAP4("127.0.0.1", proxy.port, timeout=30)
            c.login(user, f"{user}-secret")
            c.logout()
        except Exception:
            failures += 1
    return failures


def load_average():
    with open("/proc/loadavg") as f:
        return [float(x) for x in f.read().split()[:3]]


def busy_seconds():
    """CPU time the whole machine spent busy (all cores), from /proc/stat."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(root_pids):
    """CPU time of these processes and all their descendants still running."""
    parent, cpu = {}, {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parent[int(entry)] = int(fields[1])
        cpu[int(entry)] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in cpu:
        p = pid
        while p > 1 and p not in root_pids:
            p = parent.get(p, 0)
        if p in root_pids:
            total += cpu[pid]
    return total


def own_cpu_seconds(dovecots, proxies):
    """What this benchmark spends: itself (the auth_http service), its finished loadgen
    runs, the Dovecots and the proxies, all their processes."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (me.ru_utime + me.ru_stime + children.ru_utime + children.ru_stime
            + tree_cpu_seconds({d.proc.pid for d in dovecots} | {p.proc.pid for p in proxies.values()}))


def route_counters(proxy):
    def m(name, label):
        return metric_sum(proxy.admin_port, name, label)
    return {"lookups_cache": m("imapscope_route_lookups_total", 'source="cache"'),
            "lookups_map": m("imapscope_route_lookups_total", 'source="map"'),
            "lookups_http": m("imapscope_route_lookups_total", 'source="http"'),
            "replayed_ok": m("imapscope_route_logins_total", 'result="ok"'),
            "replayed_no": m("imapscope_route_logins_total", 'result="no"'),
            "replayed_failed": m("imapscope_route_logins_total", 'result="failed"'),
            "upstream_tls_full": m("imapscope_tls_handshakes_total", 'result="ok",side="upstream"'),
            "upstream_tls_resumed": m("imapscope_tls_handshakes_total", 'result="resumed",side="upstream"')}


def churn(proxy, args, tls, ca):
    cmd = [PYTHON, LOADGEN, "churn", "--port", str(proxy.port), "--seconds", str(args.seconds),
           "--processes", str(args.processes), "--login", "--users", str(args.users), "--timeout", "20"]
    if tls:
        cmd += ["--tls", "--ca", ca]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=args.seconds + 180)
    for line in reversed(out.stdout.splitlines()):
        try:
            return json.loads(line)["result"]
        except (ValueError, KeyError):
            continue
    raise RuntimeError(f"loadgen churn gave no result: {out.stderr[-2000:]}")


def run_setup(setup, args, binary, log):
    tls = setup == "tls"
    names = list(users("load", args.users))
    folder = temp_dir(prefix="imapscope-routing-bench-")
    dovecots = []
    auth = AuthHttp({})
    proxies = {}
    result = {"setup": setup, "runs": []}
    try:
        for _ in range(3):
            dovecots.append(Dovecot(certs=dovecots[0].certs if dovecots else None, users=users("load", args.users),
                                    extra_config=load_limits(2000)).start())
        proxies = start_proxies(setup, binary, dovecots, names, auth, args.threads, folder)
        time.sleep(2)  # the routing proxies' first health checks
        for mode in ("map", "http"):
            failures = warm_up(proxies[mode], tls, dovecots[0].certs["ca"], names)
            if failures:
                raise RuntimeError(f"{setup}/{mode}: {failures} of {len(names)} warm-up logins failed")
        result["auth_http_requests_warm_up"] = auth.requests
        order = list(MODES)
        for r in range(args.rounds):
            for mode in order:
                p = proxies[mode]
                time.sleep(args.pause)
                loadavg = load_average()
                counters0 = route_counters(p)
                cpu0 = proc_stat(p.proc.pid)
                asked0 = auth.requests
                busy0, own0 = busy_seconds(), own_cpu_seconds(dovecots, proxies)
                outcome = churn(p, args, tls, dovecots[0].certs["ca"])
                cpu = proc_stat(p.proc.pid) - cpu0
                # Everyone else's CPU meanwhile (this machine is shared), in cores.
                others = (busy_seconds() - busy0) - (own_cpu_seconds(dovecots, proxies) - own0)
                counters = {k: v - counters0[k] for k, v in route_counters(p).items()}
                run = {"round": r, "mode": mode, "loadavg_before": loadavg, "sessions": outcome["sessions"],
                       "failures": outcome["failures"], "per_second": outcome["per_second"],
                       "seconds": outcome["seconds"], "latency_us": outcome["latency_us"],
                       "proxy_cpu_s": round(cpu, 3),
                       "proxy_cpu_ms_per_login": round(1000 * cpu / max(1, outcome["sessions"]), 3),
                       "others_cores": round(max(0.0, others) / outcome["seconds"], 2),
                       "auth_http_requests": auth.requests - asked0, "counters": counters}
                result["runs"].append(run)
                log(f"{setup} round {r} {mode:12s} {run['per_second']:7.1f} sessions/s  "
                    f"{run['proxy_cpu_ms_per_login']:.3f} proxy CPU-ms/login  failures {run['failures']}  "
                    f"load {loadavg[0]:.2f}  others {run['others_cores']:.2f} cores  auth_http asked {run['auth_http_requests']}  {counters}")
            order = order[1:] + order[:1]
        result["alive"] = {mode: p.proc.poll() is None for mode, p in proxies.items()}
        # Where the logins went, and that the backend leg had TLS when it should: each Dovecot's log.
        logins = [re.findall(r"imap-login: (?:Info: )?Login: user=<[^>]*>.*", d.log()) for d in dovecots]
        result["logins_per_backend"] = [len(lines) for lines in logins]
        result["tls_logins_per_backend"] = [sum(1 for line in lines if ", TLS" in line) for lines in logins]
        result["summary"] = summarize(result["runs"])
    finally:
        for p in proxies.values():
            p.stop()
        auth.stop()
        for d in dovecots:
            d.stop()
    return result


def summarize(runs):
    out = {}
    for mode in MODES:
        mine = [r for r in runs if r["mode"] == mode]
        rates = [r["per_second"] for r in mine]
        cpus = [r["proxy_cpu_ms_per_login"] for r in mine]
        out[mode] = {"per_second_mean": round(sum(rates) / len(rates), 1), "per_second": rates,
                     "cpu_ms_per_login_mean": round(sum(cpus) / len(cpus), 3), "cpu_ms_per_login": cpus,
                     "failures": sum(r["failures"] for r in mine)}
    base = out["transparent"]
    for mode in ("map", "http"):
        out[mode]["rate_vs_transparent"] = round(out[mode]["per_second_mean"] / base["per_second_mean"], 3)
        out[mode]["cpu_vs_transparent"] = round(out[mode]["cpu_ms_per_login_mean"] / base["cpu_ms_per_login_mean"], 3)
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--setups", default="tls,plain", help="tls, plain or both")
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--seconds", type=float, default=15, help="each churn run")
    p.add_argument("--pause", type=float, default=2, help="seconds between runs")
    p.add_argument("--processes", type=int, default=2, help="loadgen churn's client processes")
    p.add_argument("--users", type=int, default=200)
    p.add_argument("--threads", type=int, default=2, help="event loops of every imapscope")
    p.add_argument("--imapscope", help="binary (default: build/release, else the test build)")
    p.add_argument("--json", help="write the raw results here")
    args = p.parse_args()
    raise_nofile(20000)
    binary = args.imapscope or release_binary() or imapscope_binary()
    results = {"binary": binary, "threads": args.threads, "processes": args.processes, "seconds": args.seconds,
               "rounds": args.rounds, "users": args.users, "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
               "setups": []}
    for setup in args.setups.split(","):
        results["setups"].append(run_setup(setup, args, binary, print))
        print(json.dumps({setup: results["setups"][-1]["summary"]}, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
