"""Limits before login and the login penalty, against the real binary and a real
Dovecot on loopback. Clients bind their sockets to addresses of their own in
127.0.0.0/8 (127.0.0.3, 127.0.0.4...) so that the proxy sees several client addresses.

- PreLogin: one address's many pre-login connections don't lock out another; the
  oldest pre-login session makes room when the pre-login total is full; the total
  refuses with BYE and costs no upstream connection; the literal cap before login;
  refusals counted and logged once per address and interval; the derived defaults.
- Penalty: the wait after failed logins (2 s, then 4 s), the same wrong password
  retried not counted again, a success clearing it, AUTHENTICATE PLAIN; credentials
  never in the log.
- Fail2ban: Debian's fail2ban-regex with the shipped filter against the proxy's own log.

Dovecot's own auth_failure_delay is 0 here, so that the times measured are the proxy's.
Each test starts its own proxy (a fresh guard); every process is stopped by its pid.
"""
import base64
import imaplib
import json
import os
import re
import resource
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
from imap_fixtures import (temp_dir, USERS, Dovecot, Imapscope, free_port, metric_sum, wait_until)  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
FILTER = os.path.join(ROOT, "dist", "fail2ban", "filter.d", "imapscope.conf")
DOVECOT = None


def setUpModule():
    global DOVECOT
    # Dovecot's own auth penalty would count every failure of every test against the
    # proxy's address: its documented switch turns it off (auth can't reach anvil's
    # penalty socket), so that what is measured is the proxy's.
    DOVECOT = Dovecot(extra_config="""auth_failure_delay = 0
service anvil {
  unix_listener anvil-auth-penalty {
    mode = 0
  }
}
""").start()


def tearDownModule():
    if DOVECOT:
        DOVECOT.stop()


class Proxy:
    """imapscope with a plain and an implicit-TLS listener in front of DOVECOT, and
    the given "limits" / "login_penalty" settings."""

    def __init__(self, test, limits=None, penalty=None, preexec=None):
        self.plain, self.tls, self.balanced = free_port(), free_port(), free_port()
        self.dir = temp_dir(prefix="imapscope-limits-")
        # A server response timeout shorter than the penalty: a held login is not the
        # server's delay.
        config = {"timeouts": {"login_ms": 20000, "server_response_ms": 1500},
                  "limits": limits or {},
                  "listeners": [
                      {"name": "plain", "listen": f"127.0.0.1:{self.plain}",
                       "upstream": {"addresses": [f"127.0.0.1:{DOVECOT.port}"]}},
                      {"name": "tls", "listen": f"127.0.0.1:{self.tls}", "tls": "implicit",
                       "cert": DOVECOT.certs["cert"], "key": DOVECOT.certs["key"],
                       "upstream": {"addresses": [f"127.0.0.1:{DOVECOT.port}"]}},
                      {"name": "balanced", "listen": f"127.0.0.1:{self.balanced}",
                       "proxy_protocol": {"trusted": ["127.0.0.0/8"]},
                       "upstream": {"addresses": [f"127.0.0.1:{DOVECOT.port}"]}}]}
        if penalty is not None:
            config["login_penalty"] = penalty
        path = os.path.join(self.dir, "imapscope.json")
        with open(path, "w") as f:
            json.dump(config, f)
        self.proc = Imapscope(["--config", path, "--threads", "2"], log_dir=self.dir)
        test.addCleanup(self.stop)
        self.proc.start([self.plain, self.tls, self.balanced], preexec_fn=preexec)
        self.sockets = []
        # The start-up's probes of both ports are sessions too: over before the test counts.
        wait_until("the probes' sessions over", lambda: self.log().count("event=session_end") >= 2
                   and "event=proxy_header_refused" in self.log())

    def stop(self):
        for s in self.sockets:
            s.close()
        self.proc.stop()

    def log(self):
        return self.proc.log()

    def metric(self, name, label=""):
        return metric_sum(self.proc.admin_port, name, label)

    def counter(self, name):
        """A metric without labels."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.proc.admin_port}/metrics", timeout=10) as r:
            found = re.search(rf"^{name} (\S+)$", r.read().decode(), re.M)
        return float(found.group(1)) if found else None

    def connect(self, source, tls=False):
        """A raw socket from source to a listener; kept open until the test ends."""
        s = socket.create_connection(("127.0.0.1", self.tls if tls else self.plain), timeout=20,
                                     source_address=(source, 0))
        if tls:
            s = ssl.create_default_context(cafile=DOVECOT.certs["ca"]).wrap_socket(s, server_hostname="localhost")
        self.sockets.append(s)
        return s


def first_line(s):
    data = b""
    while b"\r\n" not in data:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def closed(s, timeout=10):
    """True when the peer closes s within timeout (what it sent before is skipped)."""
    s.settimeout(timeout)
    try:
        while s.recv(4096):
            pass
        return True
    except (socket.timeout, ConnectionResetError):
        return False


class Client:
    """Exact lines over a socket bound to a source address."""

    def __init__(self, proxy, source):
        self.sock = proxy.connect(source)
        self.buffer = b""
        self.greeting = self.line()

    def line(self):
        while b"\r\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed: %r" % self.buffer)
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\r\n", 1)
        return line + b"\r\n"

    def send(self, data):
        self.sock.sendall(data)

    def until_tagged(self, tag):
        out = b""
        while True:
            line = self.line()
            out += line
            if line.startswith(tag.encode() + b" "):
                return out

    def command(self, tag, text):
        self.send(f"{tag} {text}\r\n".encode())
        return self.until_tagged(tag)

    def timed(self, tag, text):
        """(seconds from sending the command to its tagged answer, the answer)."""
        start = time.monotonic()
        answer = self.command(tag, text)
        return time.monotonic() - start, answer


class Imap4From(imaplib.IMAP4):
    """imaplib's client, from a given source address."""

    def __init__(self, port, source):
        self.source = source
        super().__init__("127.0.0.1", port, timeout=20)

    def _create_socket(self, timeout):
        return socket.create_connection((self.host, self.port), timeout, source_address=(self.source, 0))


class PreLogin(unittest.TestCase):

    def test_one_address_does_not_lock_out_another(self):
        proxy = Proxy(self, limits={"max_prelogin_per_address": 5, "refusal_log_interval_s": 2})
        upstream_before = proxy.metric("imapscope_upstream_connects_total")
        starts_before = proxy.log().count("event=session_start")
        greetings = [first_line(proxy.connect("127.0.0.3")) for _ in range(40)]
        admitted = [g for g in greetings if g.startswith(b"* OK")]
        refused = [g for g in greetings if g.startswith(b"* BYE")]
        self.assertEqual(len(admitted), 5, greetings)
        self.assertEqual(len(refused), 35, greetings)
        self.assertTrue(all(g == b"* BYE [UNAVAILABLE] Too many connections from your address; try again later\r\n"
                            for g in refused), refused)
        # Another address logs in and works while 127.0.0.3 is at its limit.
        c = Imap4From(proxy.plain, "127.0.0.4")
        self.assertEqual(c.login("alice", USERS["alice"])[0], "OK")
        self.assertEqual(c.select("INBOX")[0], "OK")
        c.logout()
        self.assertEqual(proxy.metric("imapscope_limit_refusals_total", 'reason="address_full"'), 35)
        # Refused connections start no session and open nothing upstream: one upstream
        # connection per admitted session (5 + 127.0.0.4's).
        self.assertEqual(proxy.metric("imapscope_upstream_connects_total") - upstream_before, 6)
        self.assertEqual(proxy.log().count("event=session_start") - starts_before, 6)

    def test_behind_a_balancer_the_address_in_the_proxy_header_counts(self):
        proxy = Proxy(self, limits={"max_prelogin_per_address": 2})

        def via_balancer(client):
            s = socket.create_connection(("127.0.0.1", proxy.balanced), timeout=20, source_address=("127.0.0.2", 0))
            proxy.sockets.append(s)
            s.sendall(f"PROXY TCP4 {client} 127.0.0.1 40000 143\r\n".encode())
            return first_line(s)

        self.assertTrue(via_balancer("192.0.2.7").startswith(b"* OK"))
        self.assertTrue(via_balancer("192.0.2.7").startswith(b"* OK"))
        self.assertTrue(via_balancer("192.0.2.7").startswith(b"* BYE [UNAVAILABLE] Too many connections from your"))
        # The balancer's own address is not what counts: another client behind it gets in.
        self.assertTrue(via_balancer("192.0.2.8").startswith(b"* OK"))
        self.assertIn("reason=address_full client=192.0.2.7 refused=1", proxy.log())

    def test_refusals_are_logged_once_per_address_and_interval(self):
        proxy = Proxy(self, limits={"max_prelogin_per_address": 2, "refusal_log_interval_s": 2})
        for _ in range(2):
            self.assertTrue(Client(proxy, "127.0.0.3").greeting.startswith(b"* OK"))
        refused = 0
        for _ in range(500):
            s = socket.create_connection(("127.0.0.1", proxy.plain), timeout=20, source_address=("127.0.0.3", 0))
            refused += first_line(s).startswith(b"* BYE [UNAVAILABLE]")
            s.close()
        self.assertEqual(refused, 500)
        # The first refusal at once, the other 499 as one sum after the interval.
        summary = wait_until("the summary line", lambda: re.search(
            r"event=limit_refused reason=address_full client=127\.0\.0\.3 refused=(\d+) over_s=2", proxy.log()))
        self.assertEqual(int(summary.group(1)), 499)
        lines = [l for l in proxy.log().splitlines() if "event=limit_refused" in l]
        self.assertEqual(len(lines), 2, lines)
        self.assertIn("reason=address_full client=127.0.0.3 refused=1 first_in_s=2", lines[0])
        self.assertEqual(proxy.metric("imapscope_limit_refusals_total", 'reason="address_full"'), 500)
        self.assertLess(len(proxy.log().splitlines()), 20)

    def test_prelogin_total_full_evicts_the_oldest(self):
        proxy = Proxy(self, limits={"max_prelogin_sessions": 3, "max_prelogin_per_address": 10})
        a, b, c = (Client(proxy, "127.0.0.5") for _ in range(3))
        for client in (a, b, c):
            self.assertTrue(client.greeting.startswith(b"* OK"), client.greeting)
        d = Client(proxy, "127.0.0.6")
        self.assertTrue(d.greeting.startswith(b"* OK"), d.greeting)
        # The oldest went, with a BYE (Dovecot's way); the newcomer is in.
        self.assertEqual(a.line(), b"* BYE [UNAVAILABLE] Too many clients are logging in; try again later\r\n")
        self.assertTrue(closed(a.sock))
        # A logged-in session doesn't count: it is never evicted.
        self.assertIn(b"b1 OK", b.command("b1", f"LOGIN alice {USERS['alice']}"))
        e = Client(proxy, "127.0.0.7")
        self.assertTrue(e.greeting.startswith(b"* OK"), e.greeting)  # room left by b's login
        f = Client(proxy, "127.0.0.7")
        self.assertTrue(f.greeting.startswith(b"* OK"), f.greeting)
        self.assertTrue(c.line().startswith(b"* BYE [UNAVAILABLE]"))  # the oldest not logged in
        self.assertIn(b"b2 OK", b.command("b2", "NOOP"))
        self.assertIn(b"d1 OK", d.command("d1", f"LOGIN bob {USERS['bob']}"))
        self.assertEqual(proxy.metric("imapscope_limit_refusals_total", 'reason="prelogin_full_evicted"'), 2)
        self.assertEqual(proxy.metric("imapscope_sessions_closed_total", 'reason="prelogin_evicted"'), 2)
        self.assertIn("reason=prelogin_evicted", proxy.log())

    def test_sessions_full_gets_bye_and_costs_no_upstream_connection(self):
        proxy = Proxy(self, limits={"max_sessions": 3, "max_prelogin_sessions": 3})
        clients = [Client(proxy, "127.0.0.8") for _ in range(3)]
        self.assertIn(b"OK", clients[0].command("a1", f"LOGIN alice {USERS['alice']}"))
        upstream_before = proxy.metric("imapscope_upstream_connects_total")
        # Plain and implicit TLS: the BYE in the client's protocol, then the close.
        s = proxy.connect("127.0.0.9")
        self.assertEqual(first_line(s), b"* BYE [UNAVAILABLE] Too many connections; try again later\r\n")
        self.assertTrue(closed(s))
        t = proxy.connect("127.0.0.9", tls=True)
        self.assertEqual(first_line(t), b"* BYE [UNAVAILABLE] Too many connections; try again later\r\n")
        self.assertEqual(proxy.metric("imapscope_upstream_connects_total"), upstream_before)
        self.assertEqual(proxy.metric("imapscope_limit_refusals_total", 'reason="sessions_full"'), 2)
        # A session that ends gives its place back.
        clients[0].command("a2", "LOGOUT")
        self.assertTrue(closed(clients[0].sock))
        fresh = wait_until("a place again", lambda: (lambda c: c if c.greeting.startswith(b"* OK") else None)(
            Client(proxy, "127.0.0.9")))
        self.assertIn(b"OK", fresh.command("f1", f"LOGIN bob {USERS['bob']}"))

    def test_literal_cap_before_login(self):
        proxy = Proxy(self, limits={"max_literal_before_login": 1024})
        c = Client(proxy, "127.0.0.10")
        # Synchronising: refused before the payload; the session goes on.
        self.assertEqual(c.command("a1", "LOGIN {1025}"), b"a1 BAD [TOOBIG] Literal too big\r\n")
        # Non-synchronising: the payload is skipped, not forwarded.
        c.send(b"a2 ID (\"name\" {2000+}\r\n" + b"x" * 2000 + b")\r\n")
        self.assertEqual(c.until_tagged("a2"), b"a2 BAD [TOOBIG] Literal too big\r\n")
        # Within the cap, a literal login works; after login the cap is gone.
        c.send(b"a3 LOGIN alice {%d}\r\n" % len(USERS["alice"]))
        self.assertTrue(c.line().startswith(b"+"))
        c.send(USERS["alice"].encode() + b"\r\n")
        self.assertIn(b"a3 OK", c.until_tagged("a3"))
        body = b"Subject: big\r\n\r\n" + b"y" * 3000 + b"\r\n"
        c.send(b"a4 APPEND INBOX {%d}\r\n" % len(body))
        self.assertTrue(c.line().startswith(b"+"))
        c.send(body + b"\r\n")
        self.assertIn(b"a4 OK", c.until_tagged("a4"))
        self.assertEqual(proxy.metric("imapscope_protocol_errors_total", 'kind="literal_too_big"'), 2)

    def test_defaults_follow_the_descriptor_limit(self):
        # 128 descriptors: the derived total is reached before the descriptors run out,
        # so the surplus hears why (a BYE) instead of waiting in the backlog.
        proxy = Proxy(self, preexec=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (128, 128)))
        limits = re.search(r"event=limits max_sessions=(\d+) max_prelogin=(\d+) max_prelogin_per_address=128 "
                           r"descriptor_limit=128 descriptors_in_use=(\d+) login_penalty=on", proxy.log())
        self.assertIsNotNone(limits, proxy.log())
        total, prelogin, in_use = (int(g) for g in limits.groups())
        self.assertEqual(total, (128 - in_use - 64 - 2) // 2)
        self.assertEqual(prelogin, max(1, total // 2))
        self.assertGreater(total, 5)
        answers = []
        for i in range(total + 5):
            c = Client(proxy, "127.0.0.17")
            if c.greeting.startswith(b"* OK"):
                user = ("alice", "bob")[i % 2]
                answers.append(c.command("l", f"LOGIN {user} {USERS[user]}")[:4])
            else:
                answers.append(c.greeting)
        self.assertEqual(answers[:total], [b"l OK"] * total)
        self.assertEqual(answers[total:], [b"* BYE [UNAVAILABLE] Too many connections; try again later\r\n"] * 5)
        self.assertNotIn("event=accept_failed", proxy.log())


class Penalty(unittest.TestCase):

    def test_waits_double_and_a_success_clears(self):
        proxy = Proxy(self)
        c = Client(proxy, "127.0.0.11")
        took, answer = c.timed("a1", "LOGIN alice wrong-one")
        self.assertIn(b"a1 NO", answer)
        self.assertLess(took, 1.5)  # the first failure is not held back
        took, answer = c.timed("a2", "LOGIN alice wrong-two")
        self.assertIn(b"a2 NO", answer)
        self.assertGreaterEqual(took, 1.8)
        self.assertLess(took, 4.5)
        # Two failures: the next attempt waits 4 s, even from another session.
        other = Client(proxy, "127.0.0.11")
        took, answer = other.timed("b1", f"LOGIN alice {USERS['alice']}")
        self.assertIn(b"b1 OK", answer)
        self.assertGreaterEqual(took, 3.6)
        self.assertLess(took, 7)
        # The success cleared it.
        took, answer = c.timed("a3", f"LOGIN alice {USERS['alice']}")
        self.assertIn(b"a3 OK", answer)
        self.assertLess(took, 1.5)
        self.assertEqual(proxy.metric("imapscope_login_failures_total", 'credentials="new"'), 2)
        self.assertEqual(proxy.counter("imapscope_login_penalties_total"), 2)
        self.assertGreaterEqual(proxy.counter("imapscope_login_penalty_seconds_total"), 5.5)
        log = proxy.log()
        self.assertNotIn("wrong-one", log)
        self.assertNotIn("wrong-two", log)
        self.assertNotIn(USERS["alice"], log)
        self.assertRegex(log, r"level=warning event=login_failed session=\d+ listener=plain client=127\.0\.0\.11 "
                              r"port=\d+ failures=2 repeated=no next_delay_ms=4000")

    def test_the_same_wrong_password_again_is_not_counted(self):
        proxy = Proxy(self)
        c = Client(proxy, "127.0.0.12")
        self.assertIn(b"a1 NO", c.command("a1", "LOGIN alice stale-password"))
        for tag in ("a2", "a3"):
            took, answer = c.timed(tag, "LOGIN alice stale-password")
            self.assertIn(tag.encode() + b" NO", answer)
            self.assertGreaterEqual(took, 1.8)
            self.assertLess(took, 3.5)  # 2 s each time, not 4 and 8
        took, answer = c.timed("a4", f"LOGIN alice {USERS['alice']}")
        self.assertIn(b"a4 OK", answer)
        self.assertGreaterEqual(took, 1.8)
        self.assertLess(took, 3.5)
        self.assertEqual(proxy.metric("imapscope_login_failures_total", 'credentials="new"'), 1)
        self.assertEqual(proxy.metric("imapscope_login_failures_total", 'credentials="repeated"'), 2)
        self.assertEqual(len(re.findall(r"event=login_failed .* failures=1 repeated=yes", proxy.log())), 2)
        self.assertNotIn("stale-password", proxy.log())

    def test_authenticate_plain_failures_count_too(self):
        proxy = Proxy(self)
        c = Client(proxy, "127.0.0.13")

        def plain(tag, password):
            c.send(f"{tag} AUTHENTICATE PLAIN\r\n".encode())
            self.assertTrue(c.line().startswith(b"+"))
            start = time.monotonic()
            c.send(base64.b64encode(b"\0alice\0" + password.encode()) + b"\r\n")
            return c.until_tagged(tag), start

        answer, _ = plain("a1", "sasl-wrong-1")
        self.assertIn(b"a1 NO", answer)
        # The next AUTHENTICATE waits before it reaches the server (before its "+").
        start = time.monotonic()
        c.send(b"a2 AUTHENTICATE PLAIN\r\n")
        self.assertTrue(c.line().startswith(b"+"))
        self.assertGreaterEqual(time.monotonic() - start, 1.8)
        c.send(base64.b64encode(b"\0alice\0sasl-wrong-2") + b"\r\n")
        self.assertIn(b"a2 NO", c.until_tagged("a2"))
        self.assertEqual(proxy.metric("imapscope_login_failures_total", 'credentials="new"'), 2)
        self.assertNotIn("sasl-wrong", proxy.log())
        self.assertNotIn(base64.b64encode(b"\0alice\0sasl-wrong-1").decode(), proxy.log())

    def test_penalty_can_be_turned_off(self):
        proxy = Proxy(self, penalty={"enabled": False})
        c = Client(proxy, "127.0.0.14")
        self.assertIn(b"a1 NO", c.command("a1", "LOGIN alice wrong-one"))
        took, answer = c.timed("a2", "LOGIN alice wrong-two")
        self.assertIn(b"a2 NO", answer)
        self.assertLess(took, 1.5)
        self.assertIn("event=login_failed", proxy.log())  # still logged for fail2ban


class Fail2ban(unittest.TestCase):

    def test_fail2ban_regex_matches_the_proxys_log(self):
        proxy = Proxy(self, penalty={"enabled": False})
        expected = {"127.0.0.15": 3, "127.0.0.16": 2}
        for address, failures in expected.items():
            c = Client(proxy, address)
            for i in range(failures):
                self.assertIn(b"NO", c.command(f"a{i}", f"LOGIN alice guess-{i}"))
            self.assertIn(b"OK", c.command("ok", f"LOGIN bob {USERS['bob']}"))  # a success is not a match
        wait_until("the failures logged", lambda: proxy.log().count("event=login_failed") == 5)
        result = subprocess.run(["fail2ban-regex", "-o", "ip", proxy.proc.log_path, FILTER],
                                capture_output=True, text=True, timeout=120)
        self.assertEqual(result.returncode, 0, result.stderr)
        ips = result.stdout.split()
        self.assertEqual(sorted(ips), sorted(a for a, n in expected.items() for _ in range(n)), result.stdout)
        summary = subprocess.run(["fail2ban-regex", proxy.proc.log_path, FILTER], capture_output=True, text=True,
                                 timeout=120).stdout
        total = len(proxy.log().splitlines())
        self.assertRegex(summary, rf"Lines: {total} lines, 0 ignored, 5 matched, {total - 5} missed")
        self.assertNotIn("guess-", proxy.log())


if __name__ == "__main__":
    unittest.main()
