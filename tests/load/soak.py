#!/usr/bin/env python3
"""Byte-exactness soak: gigabytes through imapscope, every byte checked both ways.

    python3 tests/load/soak.py [--gigabytes 5] [--workers 4] [--json FILE]

Two imapscope processes, TLS on both legs, in front of one Dovecot on loopback: one
without rules, one with the shipped rule set (rules/quirks). Each worker process
holds one session through one of them (alternately) and, until its share of
--gigabytes has been relayed (counting both directions):

  - makes a batch of 1-4 messages of random sizes from 1 byte to 25 MB (CRLF lines
    of random printable ASCII, which IMAP carries unchanged; a few sizes are picked
    at the edges: 1-3, 4095-4097, 65535-65537 bytes; Dovecot refuses 0 bytes, which
    relay_test's byte-exact test sends as a refused APPEND);
  - APPENDs them pipelined, each with a random literal kind: synchronising {N}
    (waits for the server's "+"), non-synchronising {N+} (LITERAL+) or, up to 10 MB,
    literal8 ~{N} (BINARY; Dovecot 2.3.19 itself stores a 22.7 MB one short);
  - client -> server: FETCHes each message straight from Dovecot (not through the
    proxy) and compares its SHA-256 with what was sent;
  - server -> client: FETCHes them back through the proxy, pipelined, alternately
    BODY.PEEK[] and BINARY.PEEK[] (so the server answers with literals and literal8),
    and compares again;
  - deletes them (the mailbox stays small).

Any difference stops the run with the message's size, kind and both digests.
Bounded by --gigabytes and --seconds; only processes started here are stopped, by
pid. Python 3.11 standard library.
"""
import argparse
import hashlib
import json
import multiprocessing as mp
import os
import random
import re
import socket
import ssl
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "support"))
from imap_fixtures import Dovecot, Imapscope, free_port, imapscope_binary, release_binary  # noqa: E402

PRINTABLE = bytes(range(32, 127))
TABLE = bytes(PRINTABLE[i % len(PRINTABLE)] for i in range(256))
# Dovecot refuses an empty message ("Can't save a zero byte message"): the smallest is 1.
EDGE_SIZES = [1, 2, 3, 4095, 4096, 4097, 65535, 65536, 65537]
MAX_SIZE = 25 * 1000 * 1000
LITERAL8_MAX = 10 * 1000 * 1000
LITERAL = re.compile(rb"(~?)\{(\d+)\}\r\n$")
FETCH_UID = re.compile(rb"^\* \d+ FETCH \(.*\bUID (\d+)")


def make_message(rng, size):
    """size bytes of CRLF-terminated lines of printable ASCII (the last line may be cut)."""
    if size == 0:
        return b""
    raw = rng.randbytes(size).translate(TABLE)
    lines = bytearray()
    at = 0
    while at < size:
        n = rng.randint(1, 998)
        lines += raw[at:at + n] + b"\r\n"
        at += n
    out = lines[:size]
    if out.endswith(b"\r"):
        out[-1:] = b"x"  # no bare CR: Dovecot stores line ends its own way and gives back CRLF
    return bytes(out)


def pick_size(rng):
    r = rng.random()
    if r < 0.15:
        return rng.choice(EDGE_SIZES)
    if r < 0.45:
        return rng.randint(1, 64 * 1024)
    if r < 0.75:
        return rng.randint(64 * 1024, 2 * 1000 * 1000)
    return rng.randint(2 * 1000 * 1000, MAX_SIZE)


class Conn:
    """A raw IMAP connection: exact bytes out, responses with literals read in."""

    def __init__(self, port, ctx):
        raw = socket.create_connection(("127.0.0.1", port), timeout=120)
        self.sock = ctx.wrap_socket(raw, server_hostname="localhost") if ctx else raw
        self.buf = bytearray()
        self.tag = 0
        self.line()  # greeting

    def fill(self):
        chunk = self.sock.recv(1 << 20)
        if not chunk:
            raise ConnectionError("closed")
        self.buf += chunk

    def line(self):
        while True:
            at = self.buf.find(b"\r\n")
            if at >= 0:
                out = bytes(self.buf[:at + 2])
                del self.buf[:at + 2]
                return out
            self.fill()

    def exactly(self, n):
        while len(self.buf) < n:
            self.fill()
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def response(self, tag):
        """(untagged lines with their literals as [line, payload, line, ...], tagged line)."""
        items = []
        while True:
            line = self.line()
            while (m := LITERAL.search(line)):
                items.append(line)
                items.append(self.exactly(int(m.group(2))))
                line = self.line()
            if line.startswith(tag + b" "):
                return items, line
            items.append(line)

    def next_tag(self):
        self.tag += 1
        return b"t%d" % self.tag

    def simple(self, text):
        tag = self.next_tag()
        self.sock.sendall(tag + b" " + text + b"\r\n")
        items, done = self.response(tag)
        if not done.startswith(tag + b" OK"):
            raise RuntimeError(f"{text[:60]!r}: {done!r}")
        return items, done


def append_batch(conn, mailbox, messages, kinds):
    """APPENDs pipelined: non-synchronising literals go out at once, a synchronising
    one waits for its "+". Returns the UIDs (APPENDUID) in order."""
    tags = []
    early = {}  # tagged answers read while waiting for a "+"
    for data, kind in zip(messages, kinds):
        tag = conn.next_tag()
        tags.append(tag)
        head = tag + b" APPEND " + mailbox + b" "
        if kind == "sync":
            conn.sock.sendall(head + b"{%d}\r\n" % len(data))
            line = conn.line()
            while not line.startswith(b"+"):
                if line.startswith(tag + b" "):
                    raise RuntimeError(f"APPEND refused: {line!r}")
                earlier = line.split(b" ", 1)[0]
                if earlier in tags:
                    early[earlier] = line
                line = conn.line()
            conn.sock.sendall(data + b"\r\n")
        elif kind == "nonsync":
            conn.sock.sendall(head + b"{%d+}\r\n" % len(data) + data + b"\r\n")
        else:
            conn.sock.sendall(head + b"~{%d+}\r\n" % len(data) + data + b"\r\n")
    uids = []
    for tag in tags:
        done = early.pop(tag, None) or conn.response(tag)[1]
        m = re.search(rb"\[APPENDUID \d+ (\d+)\]", done)
        if not done.startswith(tag + b" OK") or not m:
            raise RuntimeError(f"APPEND: {done!r}")
        uids.append(int(m.group(1)))
    return uids


def fetch_bodies(conn, uids, binary_every=2):
    """FETCHes each UID's whole message, pipelined; returns {uid: bytes}. The server
    may run pipelined FETCHes at once and answer them in any order (RFC 9051 5.5):
    each FETCH response is matched by its UID, not by the command it came with."""
    tags = []
    for i, uid in enumerate(uids):
        tag = conn.next_tag()
        item = b"BINARY.PEEK[]" if binary_every and i % binary_every == 1 else b"BODY.PEEK[]"
        conn.sock.sendall(tag + b" UID FETCH %d (%s)\r\n" % (uid, item))
        tags.append(tag)
    out = {}
    for tag in tags:
        items, done = conn.response(tag)
        if not done.startswith(tag + b" OK"):
            raise RuntimeError(f"FETCH: {done!r}")
        for i, item in enumerate(items):
            m = FETCH_UID.search(item)
            if not m:
                continue
            if LITERAL.search(item) and i + 1 < len(items):
                out[int(m.group(1))] = items[i + 1]
            elif b'[] ""' in item:  # an empty message comes as "", not a literal
                out[int(m.group(1))] = b""
    return out


def worker(index, ports, dovecot_port, ca, password, budget, deadline, seed, results):
    rng = random.Random(seed * 1000 + index)
    ctx = ssl.create_default_context(cafile=ca)
    port = ports[index % len(ports)]
    user = f"soak{index}"
    mailbox = b"INBOX"
    stats = {"worker": index, "port": port, "messages": 0, "bytes_up": 0, "bytes_down": 0, "kinds": {},
             "largest": 0, "mismatches": [], "error": None}
    try:
        conn = Conn(port, ctx)
        conn.simple(b"LOGIN " + user.encode() + b" " + password.encode())
        conn.simple(b"SELECT INBOX")
        direct = Conn(dovecot_port, None)
        direct.simple(b"LOGIN " + user.encode() + b" " + password.encode())
        direct.simple(b"EXAMINE INBOX")
        while stats["bytes_up"] + stats["bytes_down"] < budget and time.monotonic() < deadline:
            messages = [make_message(rng, pick_size(rng)) for _ in range(rng.randint(1, 4))]
            # Dovecot 2.3.19 itself keeps less than it was sent of a large literal8 APPEND
            # (22.7 MB came back as 13.8 MB, with no proxy in between): literal8 up to 10 MB.
            kinds = [rng.choice(["sync", "nonsync"] + (["literal8"] if len(m) <= LITERAL8_MAX else []))
                     for m in messages]
            uids = append_batch(conn, mailbox, messages, kinds)
            direct.simple(b"NOOP")  # see the new messages
            stored = fetch_bodies(direct, uids, binary_every=0)
            relayed = fetch_bodies(conn, uids)
            for uid, data, kind in zip(uids, messages, kinds):
                sent = hashlib.sha256(data).hexdigest()
                for direction, got in (("client->server", stored.get(uid)), ("server->client", relayed.get(uid))):
                    if got is None or hashlib.sha256(got).hexdigest() != sent:
                        stats["mismatches"].append({"direction": direction, "uid": uid, "size": len(data),
                                                    "kind": kind, "sent": sent,
                                                    "got": None if got is None else hashlib.sha256(got).hexdigest(),
                                                    "got_size": None if got is None else len(got)})
                stats["kinds"][kind] = stats["kinds"].get(kind, 0) + 1
                stats["largest"] = max(stats["largest"], len(data))
                stats["bytes_up"] += len(data)
                stats["bytes_down"] += len(relayed.get(uid) or b"")
                stats["messages"] += 1
            if stats["mismatches"]:
                break
            conn.simple(b"UID STORE %s +FLAGS.SILENT (\\Deleted)" % b",".join(b"%d" % u for u in uids))
            conn.simple(b"UID EXPUNGE %s" % b",".join(b"%d" % u for u in uids))
        conn.simple(b"LOGOUT")
        direct.simple(b"LOGOUT")
    except Exception as e:
        stats["error"] = f"{type(e).__name__}: {e}"
    results.put(stats)


def run(args, log=print):
    users = {f"soak{i}": "soak-secret" for i in range(args.workers)}
    dovecot = Dovecot(users=users).start()
    binary = args.imapscope or release_binary() or imapscope_binary()
    rules = os.path.join(HERE, "..", "..", "rules", "quirks")
    proxies = []
    try:
        for extra in ([], ["--rules", rules]):
            port = free_port()
            proxies.append((Imapscope(["--listen-tls", f"127.0.0.1:{port}", "--tls-cert", dovecot.certs["cert"],
                                       "--tls-key", dovecot.certs["key"], "--upstream", f"localhost:{dovecot.tls_port}",
                                       "--upstream-tls", "--upstream-ca", dovecot.certs["ca"], "--log-level", "warning",
                                       "--threads", "2"] + extra, binary=binary).start([port]), port))
        budget = int(args.gigabytes * 1e9 / args.workers)
        started = time.monotonic()
        deadline = started + args.seconds
        results = mp.Queue()
        procs = [mp.Process(target=worker, args=(i, [p for _, p in proxies], dovecot.port, dovecot.certs["ca"],
                                                 "soak-secret", budget, deadline, args.seed, results))
                 for i in range(args.workers)]
        for p in procs:
            p.start()
        stats = [results.get(timeout=args.seconds + 600) for _ in procs]
        for p in procs:
            p.join(60)
        wall = time.monotonic() - started
        total = sum(s["bytes_up"] + s["bytes_down"] for s in stats)
        summary = {"gigabytes_relayed": round(total / 1e9, 3), "seconds": round(wall, 1),
                   "mb_per_s": round(total / 1e6 / wall, 1), "messages": sum(s["messages"] for s in stats),
                   "largest": max(s["largest"] for s in stats),
                   "kinds": {k: sum(s["kinds"].get(k, 0) for s in stats) for k in ("sync", "nonsync", "literal8")},
                   "mismatches": [m for s in stats for m in s["mismatches"]],
                   "errors": [s["error"] for s in stats if s["error"]],
                   "proxies_alive": all(p.proc.poll() is None for p, _ in proxies), "workers": stats}
        log(f"soak: {summary['gigabytes_relayed']} GB relayed in {summary['seconds']} s, {summary['messages']} "
            f"messages (largest {summary['largest']} bytes, kinds {summary['kinds']}), "
            f"{len(summary['mismatches'])} mismatches, errors {summary['errors']}")
        return summary
    finally:
        for p, _ in proxies:
            p.stop()
        dovecot.stop()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--gigabytes", type=float, default=5.0, help="relayed in all, both directions")
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--seconds", type=float, default=1800, help="time bound")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--imapscope", help="binary (default: build/release, else the test build)")
    p.add_argument("--json", help="write the results here")
    args = p.parse_args()
    summary = run(args)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(summary, f, indent=1)
    return 0 if not summary["mismatches"] and not summary["errors"] else 1


if __name__ == "__main__":
    sys.exit(main())
