#!/usr/bin/env python3
"""Scaling benchmark: imapscope with 1 and 2 event loops next to HAProxy nbthread 1 and 2.

On this 2-core machine relay_bench.py can't show what a second event loop buys: its
chain (clients, proxy, Dovecot) shares 2 cores and Dovecot's own TLS (~7.4 CPU-s/GB)
is the bottleneck. Here the proxy must be the bottleneck, so the upstream is a
minimal IMAP server of this script's own (standard library, one thread per
connection, implicit TLS or plain on 127.0.0.1) that answers

    greeting            * OK [CAPABILITY IMAP4rev1] bench ready
    LOGIN, NOOP, CAPABILITY, ID, LOGOUT
    SELECT / EXAMINE    * 1 EXISTS, then the tagged OK
    UID FETCH 1 BODY.PEEK[] (and FETCH 1 BODY.PEEK[])
                        * 1 FETCH (UID 1 BODY[] {N}<CRLF><N bytes>)<CRLF>, the tagged OK

with one message of N bytes (printable ASCII CRLF lines) built once in memory and
written with one sendall of a prebuilt bytes object, so that its CPU per byte is
small (it is measured and reported). It is a load generator for this benchmark only,
not an IMAP server.

Configurations, each for the set-ups tls-tls (imapscope --listen-tls + --upstream-tls
--upstream-ca; HAProxy `bind ... ssl crt` + `server ... ssl verify required`) and
tls-plain (TLS client leg, plain upstream leg: cheaper for the proxy, for reference):

    imapscope --threads 1, imapscope --threads 2 (SO_REUSEPORT spreads connections
    over the loops), HAProxy 2.6 TCP mode nbthread 1, nbthread 2; imapscope runs with
    its admin address (metrics and live view) on, as by default, unless
    --imapscope-admin says no-live or none

Per configuration, P sessions in parallel (one client process each, relay_bench's
fetch: raw sockets, a 1 MiB recv_into buffer, literal bytes counted, never copied)
repeat the FETCH for a bounded number of seconds and rounds; reported: MB/s (10^6
bytes) of literal payload, CPU seconds per GB of the clients, the proxy and the
upstream (/proc), the proxy's cores used (its CPU seconds / wall seconds) and how they
split over its threads, the cores the chain used, and the other load on the machine
(shared: a measurement disturbed by more than --max-other cores is repeated, bounded,
and the quietest kept); the scaling factor 2 loops / 1 loop.

Process handling, /proc accounting, the client and HAProxy's config come from
relay_bench.py. Everything is bounded in count and time and stops by itself (the
upstream server also exits by itself after --server-lifetime); only loopback
addresses; every process started here is stopped by its pid. Python 3.11, standard
library only; run as root:

    /usr/bin/python3 tests/bench/scaling_bench.py [--imapscope PATH] [--json FILE]

Figures and how to read them: tests/bench/README.md, "Multi-core (issue 8)".
"""
import argparse
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import relay_bench  # noqa: E402
from relay_bench import CLK_TCK, Process, free_port  # noqa: E402
from imap_fixtures import make_certs  # noqa: E402  (tests/support, on the path through relay_bench)

SETUPS = {"tls-tls": "TLS→TLS", "tls-plain": "TLS→plain"}
# (label, proxy, threads)
CONFIGS = [("imapscope-1", "imapscope", 1), ("imapscope-2", "imapscope", 2),
           ("haproxy-1", "haproxy", 1), ("haproxy-2", "haproxy", 2)]
UID = 1


# --------------------------------------------------------------------------------------
# The synthetic upstream: a separate process (this script with --serve-upstream), so
# that its CPU is its own in /proc.
# --------------------------------------------------------------------------------------

def build_message(size):
    """size bytes of printable ASCII in CRLF lines (76 characters and CRLF), a header first."""
    header = (b"From: bench@example.org\r\nTo: alice@example.org\r\nSubject: scaling bench\r\n"
              b"Message-ID: <1@bench.example.org>\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n")
    alphabet = bytes(range(0x21, 0x7f))  # '!' .. '~'
    lines = [(alphabet[i:] + alphabet[:i])[:76] + b"\r\n" for i in range(len(alphabet))]
    block = b"".join(lines)
    body = header + block * (size // len(block) + 1)
    body = body[:size - 2]
    if body.endswith(b"\r"):
        body = body[:-1] + b"x"
    return body + b"\r\n"


class UpstreamConnection:
    def __init__(self, sock, response, stats):
        self.sock, self.response, self.stats = sock, response, stats
        self.pending = b""

    def line(self):
        while b"\r\n" not in self.pending:
            if len(self.pending) > 65536:
                raise ConnectionError("command line too long")
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("closed")
            self.pending += data
        line, _, self.pending = self.pending.partition(b"\r\n")
        return line

    def run(self):
        send = self.sock.sendall
        send(b"* OK [CAPABILITY IMAP4rev1] bench ready\r\n")
        while True:
            parts = self.line().split(b" ")
            tag, words = parts[0], [p.upper() for p in parts[1:]]
            if not words:
                send(tag + b" BAD no command\r\n")
                continue
            name = words[0]
            if name == b"UID" and len(words) > 1:
                name, args = b"UID " + words[1], words[2:]
            else:
                args = words[1:]
            if name in (b"UID FETCH", b"FETCH"):
                if args[:1] == [b"%d" % UID] and b" ".join(args[1:]) in (b"BODY.PEEK[]", b"(BODY.PEEK[])"):
                    send(self.response)  # one prebuilt object: untagged FETCH + literal + ")\r\n"
                    send(tag + b" OK FETCH done\r\n")
                else:
                    send(tag + b" NO only " + name + b" 1 BODY.PEEK[] here\r\n")
            elif name == b"LOGIN":
                send(tag + b" OK [CAPABILITY IMAP4rev1] logged in\r\n")
            elif name in (b"SELECT", b"EXAMINE"):
                send(b"* FLAGS (\\Seen)\r\n* 1 EXISTS\r\n* 0 RECENT\r\n* OK [UIDVALIDITY 1] ok\r\n"
                     b"* OK [UIDNEXT 2] ok\r\n" + tag +
                     (b" OK [READ-ONLY] " if name == b"EXAMINE" else b" OK [READ-WRITE] ") + name + b" done\r\n")
            elif name == b"NOOP":
                send(tag + b" OK NOOP done\r\n")
            elif name == b"CAPABILITY":
                send(b"* CAPABILITY IMAP4rev1\r\n" + tag + b" OK done\r\n")
            elif name == b"ID":
                send(b"* ID NIL\r\n" + tag + b" OK done\r\n")
            elif name == b"LOGOUT":
                send(b"* BYE bench\r\n" + tag + b" OK LOGOUT done\r\n")
                return
            else:
                self.stats["unknown"] += 1
                if self.stats["unknown"] <= 20:
                    print(f"upstream: unknown command {name[:40]!r}", file=sys.stderr, flush=True)
                send(tag + b" BAD unknown command\r\n")


def serve_upstream(args):
    """Implicit TLS on --tls-port and plain on --plain-port, one thread per connection."""
    message = build_message(args.message_bytes)
    response = b"* 1 FETCH (UID 1 BODY[] {%d}\r\n" % len(message) + message + b")\r\n"
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(args.cert, args.key)
    stats = {"unknown": 0, "connections": 0, "ciphers": set()}
    lock = threading.Lock()
    slots = threading.BoundedSemaphore(args.max_connections)

    def handle(raw, use_tls):
        try:
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            raw.settimeout(args.idle_timeout)
            sock = ctx.wrap_socket(raw, server_side=True) if use_tls else raw
            if use_tls:
                cipher = sock.cipher()
                with lock:
                    if cipher and cipher[:2] not in stats["ciphers"]:
                        stats["ciphers"].add(cipher[:2])
                        print(f"upstream: cipher {cipher[0]} {cipher[1]}", file=sys.stderr, flush=True)
            # Blocking from here on (no timeout): sendall is then one SSL_write or send
            # loop in C without the GIL; --server-lifetime bounds a stuck peer.
            sock.settimeout(None)
            UpstreamConnection(sock, response, stats).run()
        except (OSError, ConnectionError, ssl.SSLError):
            pass
        finally:
            try:
                raw.close()
            except OSError:
                pass
            slots.release()

    def accept_loop(listener, use_tls):
        while True:
            raw, _ = listener.accept()
            if not slots.acquire(blocking=False):
                raw.close()  # bounded: --max-connections at once
                continue
            with lock:
                stats["connections"] += 1
            threading.Thread(target=handle, args=(raw, use_tls), daemon=True).start()

    for port, use_tls in ((args.tls_port, True), (args.plain_port, False)):
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", port))
        listener.listen(128)
        threading.Thread(target=accept_loop, args=(listener, use_tls), daemon=True).start()
    print(f"upstream: ready, message {len(message)} bytes, response {len(response)} bytes", file=sys.stderr,
          flush=True)
    time.sleep(args.server_lifetime)
    print(f"upstream: lifetime of {args.server_lifetime:.0f} s over, exiting", file=sys.stderr, flush=True)
    os._exit(0)


class Upstream:
    """The synthetic server as relay_bench's helpers see a Dovecot: port, tls_port,
    certs, tree_pids() (for the CPU accounting)."""

    def __init__(self, args, certs, workdir):
        self.certs = certs
        self.port, self.tls_port = free_port(), free_port()
        self.log = os.path.join(workdir, "upstream.log")
        self.proc = Process([sys.executable, os.path.abspath(__file__), "--serve-upstream",
                             "--tls-port", str(self.tls_port), "--plain-port", str(self.port),
                             "--cert", certs["cert"], "--key", certs["key"],
                             "--message-bytes", str(args.message_bytes),
                             "--server-lifetime", str(args.server_lifetime)], self.log, cwd=workdir)

    def start(self):
        self.proc.start([self.port, self.tls_port])
        return self

    def tree_pids(self):
        return [self.proc.pid]

    def ciphers(self):
        return [line.split("cipher ", 1)[1] for line in self.proc.log_tail(100000).splitlines()
                if line.startswith("upstream: cipher ")]


# --------------------------------------------------------------------------------------
# Proxies: imapscope --threads N, HAProxy nbthread N (relay_bench's config, own count).
# --------------------------------------------------------------------------------------

def start_proxy(kind, threads, setup, upstream, args, workdir):
    port = free_port()
    label = f"{kind}-{threads}-{setup}"
    if kind == "imapscope":
        # The admin address (metrics and the live view) is on by default, so it is here;
        # --imapscope-admin no-live keeps the metrics without the live view (a config
        # file's "live": {"enabled": false}), none measures without both.
        admin = "none" if args.imapscope_admin == "none" else f"127.0.0.1:{free_port()}"
        argv = [args.imapscope, "--threads", str(threads), "--log-level", "warning", "--admin", admin]
        if args.imapscope_admin == "no-live":
            config = os.path.join(workdir, "imapscope-no-live.json")
            with open(config, "w") as f:
                json.dump({"listeners": [], "live": {"enabled": False}}, f)
            argv += ["--config", config]
        argv += relay_bench.imapscope_legs(setup, port, upstream)
    else:
        argv = relay_bench.haproxy_argv(port, setup, upstream, workdir, label=f"{threads}-", threads=threads)
    return relay_bench.start_process(argv, os.path.join(workdir, f"{label}.log"), workdir, port), port


def thread_cpu(pid):
    """{tid: (name, CPU seconds)} of a process's threads, from /proc/PID/task."""
    out = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                data = f.read()
        except OSError:
            continue
        name = data[data.find("(") + 1:data.rfind(")")]
        fields = data[data.rfind(")") + 2:].split()
        out[int(tid)] = (name, (int(fields[11]) + int(fields[12])) / CLK_TCK)
    return out


def measure(kind, threads, setup, upstream, args, workdir, run_started):
    """One configuration: a fresh proxy, relay_bench.measure_fetch, repeated (bounded) when disturbed."""
    proxy, port = start_proxy(kind, threads, setup, upstream, args, workdir)
    attempts = []
    try:
        while True:
            t0 = thread_cpu(proxy.pid)
            f = relay_bench.measure_fetch(port, True, upstream.certs["ca"], UID, args.message_bytes, args,
                                          upstream, proxy)
            t1 = thread_cpu(proxy.pid)
            # The proxy's threads that worked (the measure's window plus its logins).
            split = sorted((round(t1[tid][1] - t0[tid][1], 2) for tid in t1 if tid in t0
                            if t1[tid][1] - t0[tid][1] >= 0.05), reverse=True)
            f["proxy_thread_cpu_s"] = split
            f["proxy_cores"] = f["cpu_proxy_s_per_gb"] * f["bytes"] / 1e9 / f["seconds"]
            f["client_cores"] = f["cpu_client_s_per_gb"] * f["bytes"] / 1e9 / f["seconds"]
            f["upstream_cores"] = f["cpu_dovecot_s_per_gb"] * f["bytes"] / 1e9 / f["seconds"]
            f["cpu_upstream_s_per_gb"] = f.pop("cpu_dovecot_s_per_gb")
            attempts.append(f)
            print(f"scaling_bench:   {setup:9} {kind}-{threads}: {f['mb_s']:6.1f} MB/s, proxy "
                  f"{f['cpu_proxy_s_per_gb']:.2f} s/GB = {f['proxy_cores']:.2f} cores (threads {split}), "
                  f"ours {f['cpu_busy']:.2f} cores, others {f['cpu_other']:.2f} cores", flush=True)
            if (f["cpu_other"] <= args.max_other or len(attempts) >= args.attempts
                    or time.monotonic() - run_started > args.budget):
                break
    finally:
        exited = proxy.proc.poll()
        log = proxy.log_tail()
        proxy.stop()
    best = dict(min(attempts, key=lambda a: a["cpu_other"]))
    best["attempts"] = len(attempts)
    best["all_mb_s"] = [round(a["mb_s"], 1) for a in attempts]
    best["all_other"] = [round(a["cpu_other"], 2) for a in attempts]
    if exited is not None:
        best["proxy_exit"] = exited
    if log.strip():
        best["proxy_log"] = log
    return best


# --------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------

def table(results, setups, markdown=False):
    head = ["set-up", "proxy", "loops", "MB/s", "2/1", "CPU s/GB client / proxy / upstream",
            "proxy cores (per thread s)", "chain cores", "other load", "runs MB/s"]
    rows = []
    for setup in setups:
        for label, kind, threads in CONFIGS:
            res = results.get((setup, label))
            if res is None:
                continue
            if "error" in res:
                rows.append([SETUPS[setup], kind, str(threads), "failed", "—", "—", "—", "—", "—", "—"])
                continue
            one = results.get((setup, f"{kind}-1"), {})
            factor = f"{res['mb_s'] / one['mb_s']:.2f}x" if threads == 2 and "mb_s" in one else ""
            name = "imapscope" if kind == "imapscope" else "HAProxy"
            rows.append([SETUPS[setup], name, str(threads), f"{res['mb_s']:.0f}" + ("*" if res["disturbed"] else ""),
                         factor,
                         f"{res['cpu_client_s_per_gb']:.2f} / {res['cpu_proxy_s_per_gb']:.2f} / "
                         f"{res['cpu_upstream_s_per_gb']:.2f}",
                         f"{res['proxy_cores']:.2f} ({' + '.join(f'{t:.1f}' for t in res['proxy_thread_cpu_s'])})",
                         f"{res['cpu_busy']:.2f}", f"{res['cpu_other']:.2f}",
                         ", ".join(f"{m:.0f}" for m in res["all_mb_s"])])
    lines = []
    if markdown:
        lines.append("| " + " | ".join(head) + " |")
        lines.append("|" + "---|" * len(head))
        lines += ["| " + " | ".join(r) + " |" for r in rows]
    else:
        widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(head)]
        lines.append("  ".join(h.ljust(w) for h, w in zip(head, widths)))
        lines.append("  ".join("-" * w for w in widths))
        lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                                 epilog="Bounds: each measurement runs at most --seconds (and --rounds per "
                                        "session), is repeated at most --attempts times while the run is within "
                                        "--budget seconds; waits for a quiet machine at most --quiet-wait; the "
                                        "upstream server exits by itself after --server-lifetime.")
    ap.add_argument("--imapscope", help="imapscope binary (default: build build/bench-relay, Release, as relay_bench)")
    ap.add_argument("--imapscope-admin", choices=("on", "no-live", "none"), default="on",
                    help="imapscope's admin address: on (metrics and live view on a free port, as by default), "
                         "no-live (metrics only), none (--admin none: neither)")
    ap.add_argument("--setups", default="tls-tls,tls-plain", help="comma-separated: tls-tls,tls-plain")
    ap.add_argument("--configs", default=",".join(c[0] for c in CONFIGS),
                    help="comma-separated: " + ",".join(c[0] for c in CONFIGS))
    ap.add_argument("--parallel", type=int, default=8, help="FETCH sessions in parallel (one client process each)")
    ap.add_argument("--seconds", type=float, default=8.0, help="FETCH duration bound per measurement")
    ap.add_argument("--rounds", type=int, default=200, help="FETCH rounds bound per session")
    ap.add_argument("--message-bytes", type=int, default=10 * 1024 * 1024)
    ap.add_argument("--quiet-wait", type=float, default=5.0,
                    help="seconds to wait at most for the machine to be idle before each measurement")
    ap.add_argument("--max-other", type=float, default=0.15,
                    help="cores used by others during a measurement above which it is measured again")
    ap.add_argument("--attempts", type=int, default=3, help="measurements at most per configuration")
    ap.add_argument("--budget", type=float, default=240.0,
                    help="seconds into the run after which disturbed measurements are no longer repeated")
    ap.add_argument("--server-lifetime", type=float, default=900.0,
                    help="seconds after which the upstream server exits by itself")
    ap.add_argument("--json", help="write the raw results here")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (configs, logs) and say where")
    # The upstream server's own process (started by the benchmark itself).
    ap.add_argument("--serve-upstream", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--tls-port", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--plain-port", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--cert", help=argparse.SUPPRESS)
    ap.add_argument("--key", help=argparse.SUPPRESS)
    ap.add_argument("--max-connections", type=int, default=256, help=argparse.SUPPRESS)
    ap.add_argument("--idle-timeout", type=float, default=60.0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve_upstream:
        serve_upstream(args)
        return
    setups = [s for s in args.setups.split(",") if s]
    labels = [c for c in args.configs.split(",") if c]
    for s in setups:
        if s not in SETUPS:
            ap.error(f"unknown set-up {s}")
    for c in labels:
        if c not in [x[0] for x in CONFIGS]:
            ap.error(f"unknown configuration {c}")
    if not 1 <= args.parallel <= 64 or args.message_bytes < 1024 or args.seconds <= 0 or args.rounds < 1:
        ap.error("--parallel 1..64, --message-bytes >= 1024, --seconds > 0, --rounds >= 1")
    if os.geteuid() != 0:
        ap.error("run as root (as relay_bench: apt-get for haproxy when missing)")

    run_started = time.monotonic()
    if any(c.startswith("haproxy") for c in labels):
        relay_bench.ensure_haproxy()
    if any(c.startswith("imapscope") for c in labels):
        args.imapscope = relay_bench.ensure_imapscope(args)
        built = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(os.path.getmtime(args.imapscope)))
        dirty = subprocess.run(["git", "-C", relay_bench.ROOT, "status", "--porcelain", "--", "proxy"],
                               capture_output=True, text=True).stdout.count("\n")
        head = subprocess.run(["git", "-C", relay_bench.ROOT, "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True).stdout.strip()
        print(f"scaling_bench: imapscope {args.imapscope} built {built}, admin {args.imapscope_admin}; work tree: "
              f"HEAD {head}, {dirty} uncommitted files under proxy/, proxy/ sources sha256 "
              f"{relay_bench.sources_fingerprint()}", flush=True)
    print(f"scaling_bench: {os.cpu_count()} cores; load average at start "
          f"{open('/proc/loadavg').read().split()[:3]}; haproxy "
          f"{relay_bench.haproxy_version() if shutil.which('haproxy') else '-'}; {args.parallel} sessions x "
          f"{args.message_bytes} bytes, {args.seconds:.0f} s per measurement", flush=True)

    workdir = tempfile.mkdtemp(prefix="scaling-bench-")
    os.chmod(workdir, 0o755)
    results = {}
    upstream = None
    try:
        certs = make_certs(workdir)
        upstream = Upstream(args, certs, workdir).start()
        for setup in setups:
            for label, kind, threads in CONFIGS:
                if label not in labels:
                    continue
                try:
                    res = measure(kind, threads, setup, upstream, args, workdir, run_started)
                    res["disturbed"] = res["cpu_other"] > args.max_other
                except Exception as e:
                    res = {"error": repr(e)}
                    print(f"scaling_bench:   {setup} {label} failed: {e!r}", flush=True)
                results[(setup, label)] = res
                if upstream.proc.proc.poll() is not None:
                    raise RuntimeError(f"the upstream server exited: {upstream.proc.log_tail()}")
        up_log = upstream.proc.log_tail(100000)
        ciphers = upstream.ciphers()
    finally:
        if upstream is not None:
            upstream.proc.stop()
        if args.keep:
            print(f"scaling_bench: kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    elapsed = time.monotonic() - run_started
    print(f"scaling_bench: load average at end {open('/proc/loadavg').read().split()[:3]}")
    unknown = [line for line in up_log.splitlines() if "unknown command" in line]
    if unknown:
        print(f"scaling_bench: the upstream saw commands it doesn't know: {unknown[:5]}")
    client_ciphers = sorted({r["cipher"] for r in results.values() if "cipher" in r})
    print(f"scaling_bench: TLS client leg {client_ciphers}, upstream leg {ciphers}")
    for (setup, label), res in results.items():
        if label.startswith("imapscope-1") and res.get("proxy_cores", 0) > 1.05:
            print(f"scaling_bench: WARNING {setup} {label} used {res['proxy_cores']:.2f} cores with one loop")
        for key in ("proxy_exit", "proxy_log"):
            if key in res:
                print(f"scaling_bench: {setup} {label} {key}: {res[key]}")
    print()
    print(table(results, setups))
    print()
    print(table(results, setups, markdown=True))
    print()
    print(f"scaling_bench: MB = 10^6 bytes of literal payload; '*' = other load above {args.max_other} cores in "
          f"every attempt; 2/1 = MB/s with 2 loops / 1 loop; run took {elapsed:.0f} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": {k: v for k, v in vars(args).items() if not k.startswith(("tls_", "plain_", "cert",
                                                                                         "key", "serve_"))},
                       "ciphers": {"client": client_ciphers, "upstream": ciphers},
                       "results": {f"{k[0]}/{k[1]}": v for k, v in results.items()}}, f, indent=1, default=str)


if __name__ == "__main__":
    main()
