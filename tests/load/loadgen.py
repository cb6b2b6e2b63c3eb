#!/usr/bin/env python3
"""imapscope's load generator: IMAP sessions by the thousand, on loopback.

Three modes, each bounded in count and time, each printing JSON lines on stdout
(status while it runs, one {"result": ...} line at the end):

  idle    opens --sessions sessions (--concurrency at a time): connect, TLS, LOGIN,
          SELECT INBOX, IDLE. Holds them for --hold seconds, counting the untagged
          EXISTS each one receives (the notifications) and the sessions lost (closed
          by the other side or broken). Then DONE, LOGOUT. A status line every
          --status seconds: {"open", "lost", "notified_min", "notified_all"}.
  active  --sessions sessions running a mixed workload for --seconds, --rate
          commands a second each: LIST, SELECT, FETCH of headers and of a body,
          STORE, APPEND, SEARCH, and IDLE with a message delivered during it (from a
          second connection of the same user) whose EXISTS is timed. Latency per
          command kind: count, p50, p90, p99, max in microseconds.
  churn   --processes processes, each opening sessions one after another for
          --seconds: connect, TLS (resuming the previous TLS session with --resume),
          greeting, LOGIN (with --login), LOGOUT, close. Sessions per second, the
          share resumed, and the latency of each connection.

Users are --user-format with an index below --users ("load{}" gives load0, load1,
...), passwords --password-format of the user name ("{}-secret"). Client sockets
bind to 127.0.0.X (X from 2 up, --source-addresses of them) so that tens of
thousands of connections don't run out of ephemeral ports. Python 3.11, standard
library only; it raises its own descriptor limit as far as it may.
"""
import argparse
import asyncio
import json
import multiprocessing as mp
import os
import random
import re
import resource
import socket
import ssl
import sys
import time

EXISTS = re.compile(rb"^\* (\d+) EXISTS\r\n$")
LITERAL = re.compile(rb"\{(\d+)\+?\}\r\n$")


def emit(kind, payload):
    print(json.dumps({kind: payload}), flush=True)


def raise_nofile(wanted):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= wanted:
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(wanted, soft), max(wanted, hard)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def tls_context(args):
    if not args.tls:
        return None
    ctx = ssl.create_default_context(cafile=args.ca) if args.ca else ssl._create_unverified_context()
    return ctx


def user_and_password(args, index):
    user = args.user_format.format(index % args.users)
    return user, args.password_format.format(user)


def port_for(args, index):
    """--port may list several proxies (one process holds at most ~9,990 two-socket
    sessions under a 20,000 descriptor limit): session i goes to port i mod n."""
    return args.ports[index % len(args.ports)]


def source_address(args, index):
    return (f"127.0.0.{2 + index % args.source_addresses}", 0)


def percentiles(values):
    if not values:
        return {"count": 0}
    values = sorted(values)

    def at(p):
        return values[min(len(values) - 1, int(p * len(values)))]
    return {"count": len(values), "p50": at(0.50), "p90": at(0.90), "p99": at(0.99), "max": values[-1]}


class Imap:
    """One asyncio IMAP client connection: commands with tags, responses with literals."""

    def __init__(self, reader, writer):
        self.reader = reader
        self.writer = writer
        self.tag = 0
        self.untagged = []  # lines read while waiting for something else

    @classmethod
    async def open(cls, args, index, ctx, timeout):
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(args.host, port_for(args, index), ssl=ctx, server_hostname="localhost" if ctx else None,
                                    local_addr=source_address(args, index), limit=1 << 20), timeout)
        imap = cls(reader, writer)
        greeting = await asyncio.wait_for(reader.readline(), timeout)
        if not greeting.startswith(b"* OK"):
            raise ConnectionError(f"greeting: {greeting[:80]!r}")
        return imap

    async def line(self):
        """One response line with its literals inlined."""
        data = await self.reader.readline()
        if not data.endswith(b"\r\n"):
            raise ConnectionError("closed" if not data else f"cut line {data[:80]!r}")
        while (m := LITERAL.search(data)):
            data += await self.reader.readexactly(int(m.group(1)))
            more = await self.reader.readline()
            if not more:
                raise ConnectionError("closed in a literal")
            data += more
        return data

    async def command(self, text, literal=None):
        """Sends a command (with one synchronising literal if given); returns its
        response lines, the tagged one last."""
        self.tag += 1
        tag = b"c%d" % self.tag
        if literal is None:
            self.writer.write(tag + b" " + text + b"\r\n")
        else:
            self.writer.write(tag + b" " + text + b" {%d}\r\n" % len(literal))
            await self.writer.drain()
            while True:
                line = await self.line()
                if line.startswith(b"+"):
                    break
                if line.startswith(tag + b" "):
                    return [line]
                self.untagged.append(line)
            self.writer.write(literal + b"\r\n")
        await self.writer.drain()
        lines = []
        while True:
            line = await self.line()
            lines.append(line)
            if line.startswith(tag + b" "):
                if not line.startswith(tag + b" OK"):
                    raise RuntimeError(f"{text[:40]!r}: {line[:120]!r}")
                return lines

    async def login(self, user, password, mailbox=b"INBOX"):
        await self.command(b"LOGIN " + user.encode() + b" " + password.encode())
        lines = await self.command(b"SELECT " + mailbox)
        return max([int(m.group(1)) for m in map(EXISTS.match, lines) if m] or [0])

    async def start_idle(self):
        self.tag += 1
        self.idle_tag = b"c%d" % self.tag
        self.writer.write(self.idle_tag + b" IDLE\r\n")
        await self.writer.drain()
        while True:
            line = await self.line()
            if line.startswith(b"+"):
                return
            self.untagged.append(line)

    async def done(self):
        self.writer.write(b"DONE\r\n")
        await self.writer.drain()
        while True:
            line = await self.line()
            if line.startswith(self.idle_tag + b" "):
                return

    def close(self):
        try:
            self.writer.close()
        except Exception:
            pass


# --------------------------------------------------------------------------------------
# idle: thousands of sessions in IDLE, notifications counted
# --------------------------------------------------------------------------------------

class IdleSession:
    def __init__(self, index):
        self.index = index
        self.imap = None
        self.exists_at_select = 0
        self.exists = 0
        self.lost = None  # why, once lost
        self.open_seconds = None

    async def open(self, args, ctx):
        user, password = user_and_password(args, self.index)
        started = time.monotonic()
        self.imap = await Imap.open(args, self.index, ctx, args.timeout)
        self.exists = self.exists_at_select = await asyncio.wait_for(
            self.imap.login(user, password), args.timeout)
        await asyncio.wait_for(self.imap.start_idle(), args.timeout)
        self.open_seconds = time.monotonic() - started

    async def hold(self):
        try:
            while True:
                line = await self.imap.line()
                m = EXISTS.match(line)
                if m:
                    self.exists = max(self.exists, int(m.group(1)))
                elif line.startswith(b"* BYE"):
                    self.lost = "bye: " + line.decode(errors="replace").strip()
        except asyncio.CancelledError:
            raise
        except Exception as e:
            self.lost = self.lost or f"{type(e).__name__}: {e}"

    @property
    def notified(self):
        return self.exists - self.exists_at_select


async def run_idle(args):
    ctx = tls_context(args)
    sessions = [IdleSession(i) for i in range(args.sessions)]
    sem = asyncio.Semaphore(args.concurrency)
    failures = []
    started = time.monotonic()

    async def open_one(s):
        async with sem:
            for attempt in range(3):
                try:
                    await s.open(args, ctx)
                    return True
                except Exception as e:
                    if s.imap:
                        s.imap.close()
                    s.imap = None
                    if attempt == 2:
                        failures.append(f"session {s.index}: {type(e).__name__}: {e}")
                    await asyncio.sleep(0.2)
            return False

    opened = await asyncio.gather(*(open_one(s) for s in sessions))
    live = [s for s, ok in zip(sessions, opened) if ok]
    open_wall = time.monotonic() - started
    emit("ready", {"open": len(live), "failed": len(failures), "seconds": round(open_wall, 2),
                   "open_latency_ms": {k: round(v * 1000, 1) for k, v in
                                       percentiles([s.open_seconds for s in live]).items() if k != "count"}})
    holders = [asyncio.ensure_future(s.hold()) for s in live]
    hold_end = time.monotonic() + args.hold
    stop_file = args.stop_file
    while time.monotonic() < hold_end:
        await asyncio.sleep(min(args.status, max(0.0, hold_end - time.monotonic())))
        notified = [s.notified for s in live]
        emit("status", {"t": round(time.monotonic() - started, 1), "open": sum(1 for s in live if not s.lost),
                        "lost": sum(1 for s in live if s.lost),
                        "notified_min": min(notified or [0]), "notified_max": max(notified or [0])})
        if stop_file and os.path.exists(stop_file):
            break
    for h in holders:
        h.cancel()
    await asyncio.gather(*holders, return_exceptions=True)
    done_latency = []
    close_failures = []

    async def finish(s):
        if s.lost:
            s.imap.close()
            return
        async with sem:
            try:
                t0 = time.monotonic()
                await asyncio.wait_for(s.imap.done(), args.timeout)
                done_latency.append((time.monotonic() - t0) * 1e6)
                await asyncio.wait_for(s.imap.command(b"LOGOUT"), args.timeout)
            except Exception as e:
                close_failures.append(f"session {s.index}: {type(e).__name__}: {e}")
            finally:
                s.imap.close()

    await asyncio.gather(*(finish(s) for s in live))
    notified = [s.notified for s in live]
    emit("result", {
        "mode": "idle", "sessions": args.sessions, "opened": len(live), "open_failures": failures[:20],
        "open_seconds": round(open_wall, 2), "lost": sum(1 for s in live if s.lost),
        "lost_reasons": sorted({s.lost for s in live if s.lost})[:20],
        "notified_min": min(notified or [0]), "notified_max": max(notified or [0]),
        "notified_total": sum(notified), "done_latency_us": percentiles(done_latency),
        "close_failures": close_failures[:20]})


# --------------------------------------------------------------------------------------
# active: the mixed workload, latency per command kind
# --------------------------------------------------------------------------------------

def small_message(rng, size):
    body = b"".join(b"line %06d of a load-test message, padded to a reasonable width.\r\n" % i
                    for i in range(max(1, size // 64)))
    return (b"From: load@example.org\r\nTo: idle@example.org\r\nSubject: load %d\r\n"
            b"Message-ID: <%d@load.example.org>\r\n\r\n" % (rng.randrange(1 << 30), rng.randrange(1 << 30))) + body


async def active_session(args, index, ctx, deadline, latencies, errors):
    user, password = user_and_password(args, index)
    rng = random.Random(index)
    timeout = args.timeout
    try:
        imap = await Imap.open(args, index, ctx, timeout)
        partner = await Imap.open(args, index, ctx, timeout)  # delivers mail during IDLE
        await partner.command(b"LOGIN " + user.encode() + b" " + password.encode())
        exists = await imap.login(user, password)
    except Exception as e:
        errors.append(f"active {index} setup: {type(e).__name__}: {e}")
        return

    async def timed(kind, coro):
        t0 = time.perf_counter()
        result = await asyncio.wait_for(coro, timeout)
        done = time.perf_counter()
        latencies.setdefault(kind, []).append((done - t0) * 1e6)
        latencies.setdefault("_when", []).append((time.monotonic(), (done - t0) * 1e6))
        return result

    steps = ["noop", "list", "select", "fetch_headers", "fetch_body", "store", "search", "append", "idle"]
    pause = 1.0 / args.rate
    try:
        while time.monotonic() < deadline:
            step = rng.choice(steps)
            lines = []
            if step == "noop":
                lines = await timed("NOOP", imap.command(b"NOOP"))
            elif step == "list":
                await timed("LIST", imap.command(b'LIST "" "*"'))
            elif step == "select":
                lines = await timed("SELECT", imap.command(b"SELECT INBOX"))
            elif step == "fetch_headers" and exists:
                low = max(1, exists - 9)
                lines = await timed("FETCH headers", imap.command(
                    b"FETCH %d:%d (FLAGS BODY.PEEK[HEADER.FIELDS (FROM SUBJECT DATE MESSAGE-ID)])" % (low, exists)))
            elif step == "fetch_body" and exists:
                lines = await timed("FETCH body", imap.command(b"FETCH %d BODY.PEEK[]" % rng.randint(1, exists)))
            elif step == "store" and exists:
                lines = await timed("STORE", imap.command(b"STORE %d +FLAGS (\\Seen)" % rng.randint(1, exists)))
            elif step == "search":
                lines = await timed("SEARCH", imap.command(b"SEARCH UNSEEN"))
            elif step == "append":
                size = rng.choice([500, 4000, 60000])
                lines = await timed("APPEND", imap.command(b"APPEND INBOX", small_message(rng, size)))
            elif step == "idle":
                await imap.start_idle()
                t0 = time.perf_counter()
                await partner.command(b"APPEND INBOX", small_message(rng, 800))
                while True:  # the notification of the message just delivered
                    line = await asyncio.wait_for(imap.line(), args.idle_wait)
                    m = EXISTS.match(line)
                    if m and int(m.group(1)) > exists:
                        break
                    lines.append(line)
                lines.append(line)
                latencies.setdefault("IDLE notification", []).append((time.perf_counter() - t0) * 1e6)
                await timed("DONE", imap.done())
            # Messages come and go: EXISTS in any answer is the new count.
            for line in imap.untagged + lines:
                m = EXISTS.match(line)
                if m:
                    exists = int(m.group(1))
            imap.untagged.clear()
            await asyncio.sleep(pause * rng.uniform(0.5, 1.5))
        await imap.command(b"LOGOUT")
        await partner.command(b"LOGOUT")
    except Exception as e:
        errors.append(f"active {index}: {type(e).__name__}: {e}")
    finally:
        imap.close()
        partner.close()


async def run_active(args):
    ctx = tls_context(args)
    latencies = {}
    errors = []
    deadline = time.monotonic() + args.seconds
    tasks = [asyncio.ensure_future(active_session(args, args.first_user + i, ctx, deadline, latencies, errors))
             for i in range(args.sessions)]
    started = time.monotonic()
    while not all(t.done() for t in tasks) and time.monotonic() < deadline + args.timeout:
        await asyncio.sleep(min(args.status, max(0.1, deadline - time.monotonic())))
        emit("status", {"t": round(time.monotonic() - started, 1),
                        "commands": sum(len(v) for v in latencies.values()), "errors": len(errors)})
    await asyncio.gather(*tasks, return_exceptions=True)
    # Per window of --window seconds (from the start): what happened when, so that a
    # burst elsewhere (mail delivered to thousands of idle sessions) can be told apart.
    windows = {}
    for when, latency in latencies.pop("_when", []):
        windows.setdefault(int((when - started) // args.window), []).append(latency)
    everything = [v for k, values in latencies.items() if k != "IDLE notification" for v in values]
    emit("result", {"mode": "active", "sessions": args.sessions, "seconds": args.seconds,
                    "commands": len(everything), "errors": errors[:20], "error_count": len(errors),
                    "all_us": percentiles(everything), "window_s": args.window,
                    "windows_us": [dict(percentiles(windows[w]), start_s=w * args.window) for w in sorted(windows)],
                    "by_kind_us": {k: percentiles(v) for k, v in sorted(latencies.items())}})


# --------------------------------------------------------------------------------------
# churn: new sessions per second, with and without TLS session resumption
# --------------------------------------------------------------------------------------

def churn_worker(args, worker, results):
    ctx = tls_context(args)
    rng = random.Random(worker)
    deadline = time.monotonic() + args.seconds
    count = resumed = failures = 0
    latency = []
    session = None
    index = worker
    while time.monotonic() < deadline and count < args.max_sessions:
        index += args.processes
        t0 = time.perf_counter()
        try:
            raw = socket.create_connection((args.host, port_for(args, index)), timeout=args.timeout,
                                           source_address=source_address(args, index))
            s = ctx.wrap_socket(raw, server_hostname="localhost",
                                session=session if args.resume else None) if ctx else raw
            f = s.makefile("rb")
            if not f.readline().startswith(b"* OK"):
                raise ConnectionError("no greeting")
            if args.login:
                user, password = user_and_password(args, rng.randrange(args.users))
                s.sendall(b"a LOGIN " + user.encode() + b" " + password.encode() + b"\r\n")
                while not (line := f.readline()).startswith(b"a "):
                    if not line:
                        raise ConnectionError("closed")
                if not line.startswith(b"a OK"):
                    raise RuntimeError(line[:80])
            s.sendall(b"z LOGOUT\r\n")
            while (line := f.readline()) and not line.startswith(b"z "):
                pass
            if ctx:
                resumed += 1 if s.session_reused else 0
                session = s.session
            f.close()
            s.close()
            count += 1
            latency.append((time.perf_counter() - t0) * 1e6)
        except Exception:
            failures += 1
            session = None
            time.sleep(0.01)
    results.put({"count": count, "resumed": resumed, "failures": failures, "latency": latency})


def run_churn(args):
    results = mp.Queue()
    workers = [mp.Process(target=churn_worker, args=(args, w, results)) for w in range(args.processes)]
    started = time.monotonic()
    for w in workers:
        w.start()
    parts = [results.get(timeout=args.seconds + 120) for _ in workers]
    for w in workers:
        w.join(30)
    wall = time.monotonic() - started
    count = sum(p["count"] for p in parts)
    emit("result", {"mode": "churn", "tls": bool(args.tls), "resume": args.resume, "login": args.login,
                    "sessions": count, "failures": sum(p["failures"] for p in parts),
                    "resumed": sum(p["resumed"] for p in parts), "seconds": round(wall, 2),
                    "per_second": round(count / wall, 1),
                    "latency_us": percentiles([v for p in parts for v in p["latency"]])})


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=["idle", "active", "churn"])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", required=True, help="the proxy's port, or several: 9931,9932")
    p.add_argument("--tls", action="store_true", help="implicit TLS")
    p.add_argument("--ca", help="CA file to verify the proxy's certificate (default: no verification)")
    p.add_argument("--users", type=int, default=200)
    p.add_argument("--first-user", type=int, default=0, help="active: the first user index")
    p.add_argument("--user-format", default="load{}")
    p.add_argument("--password-format", default="{}-secret")
    p.add_argument("--sessions", type=int, default=100)
    p.add_argument("--concurrency", type=int, default=64, help="idle: sessions being opened at once")
    p.add_argument("--hold", type=float, default=60, help="idle: seconds to hold the sessions")
    p.add_argument("--stop-file", help="idle: stop holding early once this file exists")
    p.add_argument("--seconds", type=float, default=30, help="active, churn: how long")
    p.add_argument("--rate", type=float, default=10, help="active: commands a second per session")
    p.add_argument("--window", type=float, default=10, help="active: seconds per latency window in the result")
    p.add_argument("--idle-wait", type=float, default=70,
                   help="active: seconds to wait for an IDLE notification (Dovecot polls every 30 s without inotify)")
    p.add_argument("--processes", type=int, default=2, help="churn: client processes")
    p.add_argument("--max-sessions", type=int, default=200000, help="churn: per process")
    p.add_argument("--resume", action="store_true", help="churn: resume the previous TLS session")
    p.add_argument("--login", action="store_true", help="churn: LOGIN before LOGOUT")
    p.add_argument("--source-addresses", type=int, default=50)
    p.add_argument("--timeout", type=float, default=60, help="seconds for any one step")
    p.add_argument("--status", type=float, default=10, help="seconds between status lines")
    args = p.parse_args()
    args.ports = [int(port) for port in args.port.split(",")]
    raise_nofile(2 * args.sessions + 1000)
    if args.mode == "idle":
        asyncio.run(run_idle(args))
    elif args.mode == "active":
        asyncio.run(run_active(args))
    else:
        run_churn(args)


if __name__ == "__main__":
    sys.exit(main())
