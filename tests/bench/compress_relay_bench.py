#!/usr/bin/env python3
"""COMPRESS through the relay: what each way of handling it costs the proxy.

One private Dovecot with imap_zlib (it offers COMPRESS=DEFLATE) on 127.0.0.1, one
message per content kind, fetched again and again through:

    none          imapscope, no compression on either leg (the reference)
    proxy         imapscope --compress: the client's COMPRESS is the proxy's own; it
                  reads plaintext from Dovecot and deflates it for the client
    pass-through  imapscope --compress-pass-through: the client's COMPRESS goes to
                  Dovecot, which deflates; the proxy relays the compressed bytes and
                  inflates a copy to inspect

Content kinds: "attachment" (a base64 body of random bytes, relay_bench's message:
deflate gets it to ~76 %) and "text" (mail-like lines: ~25 %). Both legs are plain
TCP so that the compression's cost isn't hidden under TLS's (TLS adds the same per
wire byte to every mode).

Per mode and kind, P client processes (one session each, already logged in,
compressed and EXAMINEd before the clock starts, so that the server's processes
are there to measure) repeat `UID FETCH 1 BODY.PEEK[]` for a bounded number of
seconds and rounds, inflating with Python's zlib (C). Reported: MB/s (10^6 bytes)
of plaintext literal, wire bytes per plaintext byte, and CPU seconds per GB of
plaintext of the proxy and of Dovecot's processes (/proc).

Everything is bounded and stops by itself; only loopback; only processes started
here are stopped, by their pid. Python 3.11, standard library; run as root:

    /usr/bin/python3 tests/bench/compress_relay_bench.py [--imapscope PATH] [--json FILE]

Figures: tests/bench/README.md, "COMPRESS through the relay".
"""
import argparse
import json
import multiprocessing as mp
import os
import random
import socket
import sys
import tempfile
import time
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import relay_bench  # noqa: E402
from relay_bench import USERS, Dovecot, free_port  # noqa: E402

MODES = ["none", "proxy", "pass-through"]
KINDS = ["attachment", "text"]
MAILBOX = "zbench"
USER = "alice"


def text_message(size, seed=2):
    """Mail-like text: header words and prose lines, CRLF, exactly size bytes."""
    rng = random.Random(seed)
    words = [b"Received:", b"from", b"mail.example.org", b"by", b"imap", b"with", b"ESMTPS", b"id",
             b"Subject:", b"meeting", b"tomorrow", b"the", b"report", b"is", b"attached", b"please",
             b"see", b"below", b"thanks", b"regards", b"=?UTF-8?Q?caf=C3=A9?="]
    out = bytearray(b"From: bench@example.org\r\nSubject: text bench\r\n\r\n")
    while len(out) < size:
        out += b" ".join(rng.choice(words) for _ in range(rng.randint(3, 14))) + b"\r\n"
    del out[size - 2:]
    return bytes(out) + b"\r\n"


class Session:
    """A raw IMAP session that may switch to COMPRESS; counts wire and plain bytes."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        self.deflate = self.inflate = None
        self.buffer = b""
        self.wire = 0
        self.line()

    def send(self, data):
        if self.deflate:
            data = self.deflate.compress(data) + self.deflate.flush(zlib.Z_SYNC_FLUSH)
        self.sock.sendall(data)

    def _fill(self):
        chunk = self.sock.recv(1 << 20)
        if not chunk:
            raise ConnectionError("closed")
        self.wire += len(chunk)
        self.buffer += self.inflate.decompress(chunk) if self.inflate else chunk

    def line(self):
        while b"\r\n" not in self.buffer:
            self._fill()
        line, self.buffer = self.buffer.split(b"\r\n", 1)
        return line

    def command(self, tag, text):
        """Sends the command; returns (tagged line, literal bytes seen)."""
        self.send(tag + b" " + text + b"\r\n")
        literal = 0
        while True:
            line = self.line()
            if line.endswith(b"}") and b"{" in line:
                n = int(line[line.rindex(b"{") + 1:-1])
                while len(self.buffer) < n:
                    self._fill()
                self.buffer = self.buffer[n:]
                literal += n
            elif line.startswith(tag + b" "):
                return line, literal

    def compress(self):
        line, _ = self.command(b"c1", b"COMPRESS DEFLATE")
        if b" OK" not in line:
            raise RuntimeError(f"COMPRESS refused: {line!r}")
        # What came after the OK is compressed already.
        self.deflate = zlib.compressobj(6, zlib.DEFLATED, -15)
        self.inflate = zlib.decompressobj(-15)
        self.buffer = self.inflate.decompress(self.buffer)


def worker(port, compressed, uid, seconds, max_rounds, ready, go, results):
    s = Session(port)
    s.command(b"a1", b"LOGIN %s %s" % (USER.encode(), USERS[USER].encode()))
    if compressed:
        s.compress()
    s.command(b"a2", b"EXAMINE " + MAILBOX.encode())
    ready.release()
    go.wait()
    plain = rounds = 0
    wire_before = s.wire
    started = time.monotonic()
    while rounds < max_rounds and time.monotonic() - started < seconds:
        _, n = s.command(b"f%d" % rounds, b"UID FETCH %d BODY.PEEK[]" % uid)
        plain += n
        rounds += 1
    results.put({"plain": plain, "wire": s.wire - wire_before, "seconds": time.monotonic() - started})
    s.command(b"z1", b"LOGOUT")


def seed(dovecot):
    s = Session(dovecot.port)
    s.command(b"s1", b"LOGIN %s %s" % (USER.encode(), USERS[USER].encode()))
    s.command(b"s2", b"CREATE " + MAILBOX.encode())
    uids = {}
    for i, kind in enumerate(KINDS):
        body = relay_bench.make_message(8 << 20) if kind == "attachment" else text_message(8 << 20)
        s.send(b"s3%d APPEND %s {%d+}\r\n" % (i, MAILBOX.encode(), len(body)) + body + b"\r\n")
        while True:
            line = s.line()
            if line.startswith(b"s3%d " % i):
                break
        uids[kind] = i + 1
        uids[kind + "_ratio"] = len(zlib.compress(body, 6)) / len(body)
    s.command(b"s4", b"LOGOUT")
    return uids


def measure(mode, kind, uid, port, dovecot, proxy_pid, args):
    ctx = mp.get_context("fork")
    ready, go, results = ctx.Semaphore(0), ctx.Event(), ctx.Queue()
    compressed = mode != "none"
    workers = [ctx.Process(target=worker, args=(port, compressed, uid, args.seconds, args.rounds, ready, go, results))
               for _ in range(args.sessions)]
    for w in workers:
        w.start()
    for _ in workers:
        if not ready.acquire(timeout=60):
            raise RuntimeError("a session did not get ready")
    pids = relay_bench.process_tree(dovecot.proc.pid)
    dovecot_before = relay_bench.cpu_snapshot(pids)
    proxy_before = relay_bench.cpu_seconds([proxy_pid])
    busy_before, t0 = relay_bench.machine_busy_seconds(), time.monotonic()
    go.set()
    out = [results.get(timeout=args.seconds + 120) for _ in workers]
    wall = time.monotonic() - t0
    busy = relay_bench.machine_busy_seconds() - busy_before
    proxy_cpu = relay_bench.cpu_seconds([proxy_pid]) - proxy_before
    dovecot_cpu = relay_bench.cpu_delta(dovecot_before, relay_bench.cpu_snapshot(pids))
    for w in workers:
        w.join(timeout=30)
    plain = sum(r["plain"] for r in out)
    wire = sum(r["wire"] for r in out)
    gb = plain / 1e9
    return {"mode": mode, "kind": kind, "mb_per_s": plain / 1e6 / max(r["seconds"] for r in out),
            "wire_per_plain": wire / plain, "proxy_cpu_per_gb": proxy_cpu / gb, "dovecot_cpu_per_gb": dovecot_cpu / gb,
            "machine_cores": busy / wall, "plain_bytes": plain}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--imapscope", help="imapscope binary (default: a Release build in build/bench-relay)")
    parser.add_argument("--sessions", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--modes", default=",".join(MODES), help="comma-separated subset of " + ", ".join(MODES))
    parser.add_argument("--json", help="write the results here too")
    args = parser.parse_args()
    args.imapscope = relay_bench.ensure_imapscope(args)

    workdir = tempfile.mkdtemp(prefix="compress-relay-bench-")
    dovecot = Dovecot(extra_config="protocol imap {\n  mail_plugins = $mail_plugins imap_zlib\n}\n").start()
    results = []
    try:
        uids = seed(dovecot)
        for mode in args.modes.split(","):
            port = free_port()
            argv = [args.imapscope, "--threads", "1", "--listen", f"127.0.0.1:{port}",
                    "--upstream", f"127.0.0.1:{dovecot.port}", "--admin", f"127.0.0.1:{free_port()}"]
            argv += {"none": [], "proxy": ["--compress"], "pass-through": ["--compress-pass-through"]}[mode]
            proxy = relay_bench.start_process(argv, os.path.join(workdir, f"imapscope-{mode}.log"), workdir, port)
            try:
                for kind in KINDS:
                    relay_bench.wait_machine_quiet(30)
                    r = measure(mode, kind, uids[kind], port, dovecot, proxy.pid, args)
                    r["deflate_ratio"] = uids[kind + "_ratio"]
                    results.append(r)
                    print(f"{mode:13} {kind:10} {r['mb_per_s']:7.0f} MB/s  wire/plain {r['wire_per_plain']:.2f}  "
                          f"proxy {r['proxy_cpu_per_gb']:5.2f} CPU-s/GB  dovecot {r['dovecot_cpu_per_gb']:5.2f} CPU-s/GB  "
                          f"machine {r['machine_cores']:.2f} cores", flush=True)
                if mode == "pass-through" and "event=compress_pass_through" not in proxy.log_tail(10**7):
                    raise RuntimeError("the sessions' COMPRESS was not passed through")
            finally:
                proxy.stop()
    finally:
        dovecot.stop()
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
