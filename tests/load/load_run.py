#!/usr/bin/env python3
"""The proof under load: thousands of idle TLS sessions, an active workload beside
them, and connection churn, through imapscope to a real Dovecot on loopback.

    python3 tests/load/load_run.py [--idle 10000] [--hold 600] [--backends 3] [--json FILE]

Phases, each bounded in count and time:

  1. active alone      --active sessions run loadgen's mixed workload for --baseline
                       seconds: latency per command without the idle load.
  2. idle + active     --idle sessions (TLS to imapscope, TLS from imapscope to
                       Dovecot) LOGIN, SELECT and IDLE; imapscope's VmRSS before and
                       after gives the memory per idle session. They are held for
                       --hold seconds while the active workload runs again; every
                       --deliver-every seconds one message is delivered to each idle
                       user's INBOX (APPEND straight to Dovecot), so every idle session
                       must see one more EXISTS per round. At the end: sessions lost,
                       the fewest notifications any session saw, and the latencies.
  3. churn             new sessions (TLS handshake, greeting, LOGIN, LOGOUT) for
                       --churn-seconds, with and without TLS session resumption on
                       the client leg: sessions per second, the share resumed, and
                       imapscope's CPU per session.

Dovecot gets load_limits() from the test fixture; the descriptor limit is raised
for every process started here (they inherit it). Only processes started here are
stopped, by pid. Results: a summary on stdout and, with --json, the raw figures.
tests/integration/load_test.py runs the same phases with small numbers in CI.

With --backends N (N > 1) the same phases run through routing mode (issue 22): N
Dovecot instances, each with every user, and a route map (docs/routing.md) sending
user i of each kind to backend i mod N over TLS; the proxies get --config with
"routing" instead of --upstream. Each backend's share of the logins is counted in
its own log, and mail for an idle user is delivered to its own backend.
"""
import argparse
import collections
import imaplib
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
from imap_fixtures import (temp_dir, Dovecot, Imapscope, free_port, imapscope_binary, load_limits,  # noqa: E402
                           metric_sum, release_binary, stop_process)

LOADGEN = os.path.join(HERE, "loadgen.py")
PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable


def users(prefix, count):
    return {f"{prefix}{i}": f"{prefix}{i}-secret" for i in range(count)}


def proc_stat(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))


def fd_count(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def raise_nofile(wanted):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, wanted), max(hard, wanted)))
    except (ValueError, OSError):  # not root: as far as the hard limit goes
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


class Loadgen:
    """loadgen.py in a process of its own; its JSON lines are collected as they come."""

    def __init__(self, mode, port, ca, extra):
        self.lines = []
        self.cond = threading.Condition()
        self.proc = subprocess.Popen([PYTHON, LOADGEN, mode, "--port", str(port), "--tls", "--ca", ca] + extra,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stdout:
            try:
                item = json.loads(line)
            except ValueError:
                continue
            with self.cond:
                self.lines.append(item)
                self.cond.notify_all()

    def wait_for(self, kind, timeout):
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for item in self.lines:
                    if kind in item:
                        return item[kind]
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self.reader.is_alive()):
                    raise RuntimeError(f"loadgen: no {kind!r} line; stderr: {self.proc.stderr.read()[-2000:]}")
                self.cond.wait(min(left, 1.0))

    def last(self, kind):
        with self.cond:
            found = [item[kind] for item in self.lines if kind in item]
        return found[-1] if found else None

    def stop(self):
        stop_process(self.proc)


def transparent_args(dovecot):
    """Transparent mode: every session to the one Dovecot, TLS on the upstream leg."""
    return ["--upstream", f"localhost:{dovecot.tls_port}", "--upstream-tls", "--upstream-ca", dovecot.certs["ca"]]


def backend_index(user):
    """User i of each kind (load7, active7) lives on backend i mod N."""
    return int(re.search(r"(\d+)$", user).group(1))


def routing_args(backends, users, folder):
    """Routing mode: a route map with an entry per user, TLS to each backend verified
    with the test CA (routing.upstream_ca is a config key, there is no flag for it)."""
    map_path = os.path.join(folder, "routes.map")
    with open(map_path, "w") as f:
        f.write("# user  backend  options: user i on backend i mod N\n")
        for user in users:
            backend = backends[backend_index(user) % len(backends)]
            f.write(f"{user}  127.0.0.1:{backend.tls_port}  tls\n")
    config_path = os.path.join(folder, "routing.json")
    with open(config_path, "w") as f:
        # The listeners come from the flags (a config file must list some: none here).
        json.dump({"listeners": [], "routing": {"map": map_path, "upstream_ca": backends[0].certs["ca"]}}, f)
    return ["--config", config_path]


def logins_in_log(dovecot):
    """Successful logins in a Dovecot's log, by user."""
    return collections.Counter(re.findall(r"imap-login: (?:Info: )?Login: user=<([^>]*)>", dovecot.log()))


class Proxies:
    """imapscope processes on ports of their own, each with --threads loops. Under this
    machine's descriptor limit (20,000, not raisable without CAP_SYS_RESOURCE) one
    process holds at most ~9,990 sessions with two sockets each. upstream_args: the
    flags that say where sessions go (transparent_args or routing_args)."""

    def __init__(self, count, binary, certs, upstream_args, threads):
        self.procs = []
        try:
            for _ in range(count):
                port = free_port()
                self.procs.append(Imapscope(["--listen-tls", f"127.0.0.1:{port}", "--tls-cert", certs["cert"],
                                             "--tls-key", certs["key"]] + upstream_args +
                                            ["--threads", str(threads), "--log-level", "warning"],
                                            binary=binary).start([port]))
                self.procs[-1].port = port
        except BaseException:
            self.stop()  # the ones already started
            raise
        self.ports = ",".join(str(p.port) for p in self.procs)

    def rss_kib(self):
        return sum(rss_kib(p.proc.pid) for p in self.procs)

    def cpu_seconds(self):
        return sum(proc_stat(p.proc.pid) for p in self.procs)

    def fds(self):
        return [fd_count(p.proc.pid) for p in self.procs]

    def metric(self, name, label):
        return sum(metric_sum(p.admin_port, name, label) for p in self.procs)

    def alive(self):
        return all(p.proc.poll() is None for p in self.procs)

    def stop(self):
        for p in self.procs:
            p.stop()


def deliver_round(dovecots, idle_users, round_no):
    """One message into each idle user's INBOX, straight to its Dovecot's plain port."""
    for user, password in idle_users.items():
        dovecot = dovecots[backend_index(user) % len(dovecots)]
        c = imaplib.IMAP4("127.0.0.1", dovecot.port, timeout=60)
        c.login(user, password)
        c.append("INBOX", None, None, b"Subject: round %d for %s\r\n\r\nnew mail\r\n" % (round_no, user.encode()))
        c.logout()


def run(args, log=print):
    raise_nofile(4 * args.idle + 20000)
    idle_users = users("load", args.idle_users)
    active_users = users("active", args.active)
    # Found before anything starts: a missing binary must not leave a Dovecot behind.
    binary = args.imapscope or release_binary() or imapscope_binary()
    backends = max(1, getattr(args, "backends", 1))
    folder = temp_dir(prefix="imapscope-load-")
    # Each backend sized for its share (every one holds every user; the map says who goes where).
    limits = load_limits(-(-args.idle // backends) + 2 * args.active + 100)
    dovecots = []
    try:
        for _ in range(backends):
            dovecots.append(Dovecot(certs=dovecots[0].certs if dovecots else None,
                                    users={**idle_users, **active_users}, extra_config=limits).start())
        certs = dovecots[0].certs
        upstream = (routing_args(dovecots, list(idle_users) + list(active_users), folder) if backends > 1
                    else transparent_args(dovecots[0]))
        # Two descriptors a session, plus a margin under the limit of 20,000 each.
        count = args.proxies or -(-2 * (args.idle + 2 * args.active + 200) // 18000)
        proxy = Proxies(count, binary, certs, upstream, args.threads)
    except BaseException:
        for d in dovecots:
            d.stop()
        raise
    port = proxy.ports
    ca = certs["ca"]
    results = {"idle": args.idle, "active": args.active, "hold_s": args.hold, "binary": binary,
               "threads": args.threads, "proxies": count, "backends": backends,
               "mode": "routing (map)" if backends > 1 else "transparent"}
    stop_file = os.path.join(folder, "stop")
    try:
        active_args = ["--sessions", str(args.active), "--users", str(args.active), "--user-format", "active{}",
                       "--rate", str(args.rate), "--status", "30"]
        # 1. The active workload alone.
        log(f"phase 1: {args.active} active sessions alone for {args.baseline:.0f} s")
        alone = Loadgen("active", port, ca, active_args + ["--seconds", str(args.baseline)])
        results["active_alone"] = alone.wait_for("result", args.baseline + 300)
        alone.stop()
        # 2. The idle sessions, then the active workload beside them.
        time.sleep(1)
        rss_before, fds_before = proxy.rss_kib(), proxy.fds()
        cpu_before = proxy.cpu_seconds()
        log(f"phase 2: opening {args.idle} idle sessions")
        idle = Loadgen("idle", port, ca, ["--sessions", str(args.idle), "--users", str(args.idle_users),
                                          "--concurrency", str(args.concurrency), "--hold", str(args.hold + 600),
                                          "--stop-file", stop_file, "--status", "10"])
        ready = idle.wait_for("ready", 1800)
        results["idle_ready"] = ready
        results["idle_open_cpu_s"] = round(proxy.cpu_seconds() - cpu_before, 2)
        time.sleep(2)
        rss_idle = proxy.rss_kib()
        results["rss_kib"] = {"before": rss_before, "with_idle": rss_idle}
        results["kib_per_idle_session"] = round((rss_idle - rss_before) / max(1, ready["open"]), 2)
        results["bytes_per_idle_session"] = round(1024 * (rss_idle - rss_before) / max(1, ready["open"]))
        results["fds"] = {"before": fds_before, "with_idle": proxy.fds()}
        if backends > 1:
            results["backend_sessions_with_idle"] = proxy.metric("imapscope_backend_sessions", "")
        log(f"  {ready['open']} open in {ready['seconds']} s; "
            f"{results['kib_per_idle_session']} KiB per idle session")
        log(f"  holding them {args.hold:.0f} s with {args.active} active sessions beside them")
        hold_started = time.monotonic()
        cpu_hold = proxy.cpu_seconds()
        beside = Loadgen("active", port, ca, active_args + ["--seconds", str(args.hold)])
        rounds = 0
        deliveries = []  # (start, end) of each round, seconds from the active workload's start
        next_round = hold_started + args.deliver_every
        while time.monotonic() - hold_started < args.hold:
            time.sleep(max(0.0, min(5.0, next_round - time.monotonic(), args.hold - (time.monotonic() - hold_started))))
            if time.monotonic() >= next_round and time.monotonic() - hold_started < args.hold - 5:
                rounds += 1
                round_start = time.monotonic() - hold_started
                deliver_round(dovecots, idle_users, rounds)
                deliveries.append((round_start, time.monotonic() - hold_started))
                next_round += args.deliver_every
        results["active_beside_idle"] = beside.wait_for("result", 600)
        beside.stop()
        results["deliveries_s"] = deliveries
        results["beside_idle_windows"] = split_windows(results["active_beside_idle"], deliveries)
        results["hold_cpu_s"] = round(proxy.cpu_seconds() - cpu_hold, 2)
        results["rss_kib"]["after_hold"] = proxy.rss_kib()
        # Every notification must arrive (Dovecot may poll every 30 s without inotify).
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            status = idle.last("status")
            if status and status["notified_min"] >= rounds:
                break
            time.sleep(2)
        results["delivery_rounds"] = rounds
        with open(stop_file, "w"):
            pass
        results["idle_result"] = idle.wait_for("result", 900)
        idle.stop()
        time.sleep(2)
        results["fds"]["after"] = proxy.fds()
        results["rss_kib"]["after"] = proxy.rss_kib()
        # 3. Churn, with and without TLS session resumption on the client leg.
        results["churn"] = []
        def handshakes(side, result):
            return proxy.metric("imapscope_tls_handshakes_total", f'result="{result}",side="{side}"')  # labels sorted
        for resume in (False, True):
            cpu0 = proxy.cpu_seconds()
            before = {(side, result): handshakes(side, result) for side in ("client", "upstream")
                      for result in ("ok", "resumed")}
            churn = Loadgen("churn", port, ca, ["--seconds", str(args.churn_seconds), "--processes", "2", "--login",
                                                "--users", str(args.active), "--user-format", "active{}"]
                            + (["--resume"] if resume else []))
            outcome = churn.wait_for("result", args.churn_seconds + 300)
            churn.stop()
            cpu = proxy.cpu_seconds() - cpu0
            outcome["proxy_cpu_s"] = round(cpu, 2)
            outcome["proxy_cpu_ms_per_session"] = round(1000 * cpu / max(1, outcome["sessions"]), 3)
            # The proxy's own count: full and resumed handshakes on each leg.
            outcome["proxy_handshakes"] = {f"{side}_{result}": handshakes(side, result) - before[(side, result)]
                                           for side, result in before}
            results["churn"].append(outcome)
            log(f"phase 3: churn resume={resume}: {outcome['per_second']} sessions/s, "
                f"{outcome['resumed']} of {outcome['sessions']} resumed, "
                f"{outcome['proxy_cpu_ms_per_session']} proxy CPU-ms per session, "
                f"proxy handshakes {outcome['proxy_handshakes']}")
        results["proxy_alive"] = proxy.alive()
        # Where the logins went: each backend's own log (the deliveries' logins are
        # straight to Dovecot, 200 a round, and counted too).
        results["logins_per_backend"] = [sum(logins_in_log(d).values()) for d in dovecots]
        if backends > 1:
            misplaced = sum(n for i, d in enumerate(dovecots) for user, n in logins_in_log(d).items()
                            if backend_index(user) % backends != i)
            results["logins_on_the_wrong_backend"] = misplaced
    finally:
        proxy.stop()
        for d in dovecots:
            d.stop()
    return results


def split_windows(active, deliveries, settle=5.0):
    """The active workload's latency windows with a delivery round (it and the next
    `settle` seconds: 10,000 notifications at once) against the others."""
    quiet, busy = [], []
    for w in active.get("windows_us", []):
        start, end = w["start_s"], w["start_s"] + active["window_s"]
        hit = any(d_start < end and d_end + settle > start for d_start, d_end in deliveries)
        (busy if hit else quiet).append(w)

    def worst(ws, key):
        return max((w.get(key, 0) for w in ws), default=None)

    def median(ws, key):
        values = sorted(w.get(key, 0) for w in ws)
        return values[len(values) // 2] if values else None
    return {"quiet_windows": len(quiet), "delivery_windows": len(busy),
            "quiet_p99_median_us": median(quiet, "p99"), "quiet_p99_worst_us": worst(quiet, "p99"),
            "quiet_p50_median_us": median(quiet, "p50"),
            "delivery_p99_median_us": median(busy, "p99"), "delivery_p99_worst_us": worst(busy, "p99")}


def summary(r):
    idle = r["idle_result"]
    lines = [f"mode: {r.get('mode', 'transparent')}, {r.get('backends', 1)} backend(s); "
             f"logins per backend {r.get('logins_per_backend')}",
             f"idle sessions: {idle['opened']} of {r['idle']} opened in {idle['open_seconds']} s, "
             f"lost {idle['lost']}, notifications per session {idle['notified_min']}..{idle['notified_max']} "
             f"of {r['delivery_rounds']} rounds",
             f"memory: {r['kib_per_idle_session']} KiB per idle session (RSS {r['rss_kib']})",
             f"proxy CPU: {r['idle_open_cpu_s']} s to open them, {r['hold_cpu_s']} s during the {r['hold_s']} s hold"]
    for name in ("active_alone", "active_beside_idle"):
        a = r[name]["all_us"]
        lines.append(f"{name}: {r[name]['commands']} commands, {r[name]['error_count']} errors, "
                     f"p50 {a.get('p50', 0):.0f} us, p99 {a.get('p99', 0):.0f} us")
    if "beside_idle_windows" in r:
        lines.append(f"beside idle, by {r['active_beside_idle']['window_s']:.0f} s window: {r['beside_idle_windows']}")
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--idle", type=int, default=10000)
    p.add_argument("--idle-users", type=int, default=200)
    p.add_argument("--active", type=int, default=50)
    p.add_argument("--rate", type=float, default=5, help="commands a second per active session")
    p.add_argument("--hold", type=float, default=600)
    p.add_argument("--baseline", type=float, default=60)
    p.add_argument("--deliver-every", type=float, default=120)
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--churn-seconds", type=float, default=20)
    p.add_argument("--threads", type=int, default=2, help="event loops per imapscope process")
    p.add_argument("--proxies", type=int, default=0,
                   help="imapscope processes (default: as many as the descriptor limit needs)")
    p.add_argument("--backends", type=int, default=1,
                   help="Dovecot instances; more than 1: routing mode, a route map spreading the users over them")
    p.add_argument("--imapscope", help="binary (default: build/release, else the test build)")
    p.add_argument("--json", help="write the raw results here")
    args = p.parse_args()
    results = run(args)
    print(summary(results))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
