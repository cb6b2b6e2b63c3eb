"""Routing mode end to end: the real imapscope in front of three real Dovecot
instances (backends A, B and C, each with its own folder, ports and log), routing
each user by a map file or by an nginx-compatible auth_http service written for the
test (tests/support/auth_http_service.py), everything on loopback.

Where a session went is read where it can't be faked: the backend's own log, whose
imap-login writes "Login: user=<...>" for each login it took. Each test notes where
every log ended before it (Marks) and looks only at what came after.

- MapRouting: users, domains, the default and refusals of a map file; LOGIN,
  AUTHENTICATE PLAIN (with and without SASL-IR) and LOGIN from imaplib and a raw
  client; the pre-login answers; ID passed on; the backend's NO unchanged; the
  post-login capabilities the backend's; STARTTLS and implicit TLS listeners; a
  backend that is down; the flags alone; the login penalty before any backend.
- HttpRouting: auth_http's request headers, answers (OK, Auth-User/Auth-Pass, error
  text, Auth-Wait, WAIT, Dovecot's JSON); a service down, slow or answering garbage;
  the answer cache; the map asked first.
- Reload: SIGHUP with a changed map and with a broken one.
- Operations: the admin API's backends, drain, undrain and kick; the metrics; routed
  sessions in the live view, the rules and the transcripts.

Each test starts its own imapscope (its own cache, penalty and metrics); every process
is stopped by its pid and every folder removed (imap_fixtures).
"""
import base64
import glob
import imaplib
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import time
import unittest
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "support"))
from imap_fixtures import (USERS, Dovecot, Imapscope, RawClient, free_port, imapscope_binary,  # noqa: E402
                           make_certs, metric_sum, temp_dir, wait_until)
from auth_http_service import (GARBAGE, INVALID_LOGIN, AuthHttpService, dovecot_json, error, ok,  # noqa: E402
                               wait)

# Every backend knows every user (as a cluster's shared passdb would): only the route
# decides where a login lands. erin's password needs escaping in Auth-Pass;
# carol.archive shares carol's password (the map's user= option logs carol in as it).
EXTRA_USERS = {"carol": "carol-secret", "carol.archive": "carol-secret", "dave": "dave-secret",
               "erin": "erin pass%word", "frank@example.org": "frank-secret", "grace@example.org": "grace-secret"}
ALL_USERS = dict(USERS, **EXTRA_USERS)

# Dovecot logs the ID it was sent (imap_id_log); its own delay after a failed login and
# its own penalty are off, so that the times measured are the proxy's.
DOVECOT_EXTRA = """imap_id_log = *
auth_failure_delay = 0
service anvil {
  unix_listener anvil-auth-penalty {
    mode = 0
  }
}
"""

A = B = C = None
BACKENDS = []
CERTS = None
# The answer Dovecot gives a wrong password: the client must get exactly this line.
DOVECOT_NO = b"NO [AUTHENTICATIONFAILED] Authentication failed.\r\n"
PRELOGIN_CAPABILITY_OK = b"OK Pre-login capabilities listed, post-login capabilities have more.\r\n"
# docs/routing.md: what a client hears when no backend takes its login.
NO_LOGIN_SERVICE = b"NO [UNAVAILABLE] The login service is not available.\r\n"
NO_MAIL_SERVER = b"NO [UNAVAILABLE] The mail server is not available.\r\n"


def setUpModule():
    global A, B, C, CERTS
    CERTS = make_certs(temp_dir(prefix="imapscope-routing-certs-"))
    try:
        for _ in range(3):
            BACKENDS.append(Dovecot(certs=CERTS, extra_config=DOVECOT_EXTRA, users=EXTRA_USERS).start())
    except BaseException:
        tearDownModule()
        raise
    A, B, C = BACKENDS


def tearDownModule():
    for backend in BACKENDS:
        backend.stop()


def name(backend):
    """A backend's identity in the API and the metrics: host:port."""
    return f"127.0.0.1:{backend.port}"


def b64(data):
    return base64.b64encode(data.encode() if isinstance(data, str) else data).decode()


LOGIN_LINE = re.compile(r"imap-login: Info: Login: user=<([^>]*)>.*session=<([^>]*)>")


class Marks:
    """Where each backend's log ended when made: what came after is this test's."""

    def __init__(self):
        self.offsets = {id(b): len(b.log()) for b in BACKENDS}

    def new_log(self, backend):
        return backend.log()[self.offsets[id(backend)]:]

    def logins(self, backend):
        """The users logged in on backend since the mark, in order."""
        return [m.group(1) for m in LOGIN_LINE.finditer(self.new_log(backend))]

    def where(self, user):
        """The backends (A, B, C by letter) user logged in on since the mark."""
        return {letter for letter, b in zip("ABC", BACKENDS) if user in self.logins(b)}

    def assert_landed(self, test, user, backend, count=None):
        """user's login(s) reached backend, and no other backend heard of user."""
        letter = "ABC"[BACKENDS.index(backend)]
        wait_until(f"{user}'s login in backend {letter}'s log", lambda: user in self.logins(backend), timeout=10)
        test.assertEqual(self.where(user), {letter},
                         f"{user} should be on {letter} only; the logs since the mark:\n" +
                         "\n".join(f"--- {l}\n{self.new_log(b)}" for l, b in zip("ABC", BACKENDS)))
        if count is not None:
            test.assertEqual(self.logins(backend).count(user), count)


def map_text(entries):
    """A map file from (pattern, backend or "-", options...) tuples; a backend is a
    Dovecot (its plain port), a port number or a string."""
    lines = ["# written by routing_test.py"]
    for pattern, target, *options in entries:
        if isinstance(target, Dovecot):
            target = name(target)
        elif isinstance(target, int):
            target = f"127.0.0.1:{target}"
        lines.append(" ".join([pattern, target] + list(options)))
    return "\n".join(lines) + "\n"


class Routing:
    """imapscope in routing mode: a plain listener (and with tls=True a STARTTLS and an
    implicit-TLS one) routing by a map (entries, see map_text) and/or an auth_http
    service (its URL). routing: more keys of the "routing" object; config: more
    top-level keys. The login penalty is off unless config turns it on."""

    def __init__(self, test, entries=None, http=None, routing=None, config=None, tls=False, wait_up=True):
        self.test = test
        self.dir = temp_dir(prefix="imapscope-routing-")
        os.chmod(self.dir, 0o755)
        self.port = free_port()
        self.starttls_port = free_port() if tls else None
        self.tls_port = free_port() if tls else None
        self.transcripts = os.path.join(self.dir, "transcripts")
        self.map_path = os.path.join(self.dir, "routes.map")
        settings = {"http_timeout_ms": 1000, "cache_hit_s": 0, "cache_miss_s": 0,
                    "health": {"interval_ms": 500, "timeout_ms": 1000, "fall": 1, "rise": 1}}
        if entries is not None:
            self.write_map(entries)
            settings["map"] = self.map_path
        if http:
            settings["http"] = http
        settings.update(routing or {})
        listeners = [{"name": "plain", "listen": f"127.0.0.1:{self.port}"}]
        if tls:
            listeners += [{"name": "starttls", "listen": f"127.0.0.1:{self.starttls_port}", "tls": "starttls",
                           "cert": CERTS["cert"], "key": CERTS["key"]},
                          {"name": "imaps", "listen": f"127.0.0.1:{self.tls_port}", "tls": "implicit",
                           "cert": CERTS["cert"], "key": CERTS["key"]}]
        settings_all = {"user_names": "clear", "login_penalty": {"enabled": False},
                        "transcripts": {"dir": self.transcripts},
                        "timeouts": {"server_response_ms": 10000},
                        "routing": settings, "listeners": listeners}
        settings_all.update(config or {})
        self.config_path = os.path.join(self.dir, "imapscope.json")
        with open(self.config_path, "w") as f:
            json.dump(settings_all, f, indent=1)
        self.proc = Imapscope(["--config", self.config_path, "--threads", "2"], log_dir=self.dir)
        test.addCleanup(self.stop)
        self.proc.start([p for p in (self.port, self.starttls_port, self.tls_port) if p])
        self.clients = []
        if wait_up:
            self.wait_backends_up()

    def write_map(self, entries):
        text = entries if isinstance(entries, str) else map_text(entries)
        with open(self.map_path + ".new", "w") as f:
            f.write(text)
        os.replace(self.map_path + ".new", self.map_path)  # a reload never reads half a file

    def stop(self):
        for c in self.clients:
            try:
                c.sock.close()
            except OSError:
                pass
        self.proc.stop()

    def log(self):
        return self.proc.log()

    def metric(self, name, label=""):
        return metric_sum(self.proc.admin_port, name, label)

    def metrics_text(self):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.proc.admin_port}/metrics", timeout=10) as r:
            return r.read().decode()

    def backends(self):
        """GET /api/backends: name -> its entry."""
        return {b["name"]: b for b in self.proc.admin_get("/api/backends")["backends"]}

    def wait_backends_up(self, timeout=15):
        """Every backend the API lists that is one of our running Dovecots is up (the
        health checks have seen its greeting: the pre-login capabilities are known)."""
        running = {name(b) for b in BACKENDS}
        status, _ = self.proc.admin("GET", "/api/backends")
        if status != 200:
            return  # no backends API: Operations says so; the other tests go on

        def all_up():
            listed = self.backends()
            ours = [b for n, b in listed.items() if n in running]
            return ours and all(b["state"] == "up" for b in ours)
        wait_until("the backends up in /api/backends", all_up, timeout=timeout, interval=0.1)

    def raw(self, port=None):
        client = RawClient(port or self.port)
        self.clients.append(client)
        return client

    def imap(self):
        client = imaplib.IMAP4("127.0.0.1", self.port, timeout=20)
        self.test.addCleanup(lambda: client.shutdown() if client.state != "LOGOUT" else None)
        return client


def timed(function, *args):
    start = time.monotonic()
    value = function(*args)
    return time.monotonic() - start, value


def last_line(answer):
    return answer.splitlines(keepends=True)[-1]


def login_answer(proxy, user, password=None, tag="l1"):
    """A raw client's LOGIN through proxy: (client, every byte of the answer)."""
    client = proxy.raw()
    answer = client.command(tag, f'LOGIN "{user}" "{password or ALL_USERS[user]}"')
    return client, answer


def unavailable(test, answer, tag, why):
    """answer ends with tag's NO [UNAVAILABLE] (why: NO_LOGIN_SERVICE or NO_MAIL_SERVER)."""
    test.assertEqual(last_line(answer), tag.encode() + b" " + why, answer)


def closed(test, client, timeout=5):
    """The proxy closes client's connection (after what it sent last) within timeout."""
    client.sock.settimeout(timeout)
    try:
        rest = client.buffer + client.sock.recv(4096)
    except OSError as e:
        test.fail(f"not closed within {timeout}s: {e!r}")
    test.assertEqual(rest, b"", "the connection should end after the refusal")


# ------------------------------------------------------------------------ map

class MapRouting(unittest.TestCase):

    def test_two_users_each_land_on_their_own_backend(self):
        proxy = Routing(self, [("alice", A), ("bob", B)])
        marks = Marks()
        alice, bob = proxy.imap(), proxy.imap()
        self.assertEqual(alice.login("alice", USERS["alice"])[0], "OK")
        self.assertEqual(bob.login("bob", USERS["bob"])[0], "OK")
        # The sessions carry on as in transparent mode: each on its own mailbox.
        self.assertEqual(alice.select("INBOX")[0], "OK")
        self.assertEqual(alice.append("INBOX", None, None, b"Subject: to alice on A\r\n\r\nhi\r\n")[0], "OK")
        self.assertEqual(bob.select("INBOX")[0], "OK")
        self.assertEqual(bob.noop()[0], "OK")
        alice.logout()
        bob.logout()
        marks.assert_landed(self, "alice", A, count=1)
        marks.assert_landed(self, "bob", B, count=1)
        self.assertEqual(marks.logins(C), [])
        self.assertEqual(proxy.metric("imapscope_route_lookups_total", 'source="map",result="routed"'), 2)
        self.assertEqual(proxy.metric("imapscope_route_logins_total", 'result="ok"'), 2)
        for log in (proxy.log(), A.log(), B.log()):
            self.assertNotIn(USERS["alice"], log)
            self.assertNotIn(USERS["bob"], log)

    def test_authenticate_plain_with_and_without_sasl_ir(self):
        proxy = Routing(self, [("alice", A), ("bob", B)])
        marks = Marks()
        # SASL-IR: the initial response on the command line.
        c = proxy.raw()
        answer = c.command("p1", "AUTHENTICATE PLAIN " + b64("\0alice\0" + USERS["alice"]))
        self.assertRegex(last_line(answer), rb"^p1 OK .*Logged in\r\n$")
        self.assertTrue(c.command("p2", "SELECT INBOX").splitlines()[-1].startswith(b"p2 OK"))
        # Without: "+ " first, then the response.
        c = proxy.raw()
        c.send(b"q1 AUTHENTICATE PLAIN\r\n")
        self.assertEqual(c.read_line(), b"+ \r\n")
        c.send(b64("\0bob\0" + USERS["bob"]).encode() + b"\r\n")
        self.assertRegex(last_line(c.until_tagged("q1")), rb"^q1 OK .*Logged in\r\n$")
        # imaplib's authenticate() waits for the "+" too.
        i = proxy.imap()
        self.assertEqual(i.authenticate("PLAIN", lambda _: f"\0bob\0{USERS['bob']}".encode())[0], "OK")
        self.assertEqual(i.select("INBOX")[0], "OK")
        i.logout()
        # An authorization identity equal to the user is the same login.
        c = proxy.raw()
        answer = c.command("r1", "AUTHENTICATE PLAIN " + b64("alice\0alice\0" + USERS["alice"]))
        self.assertRegex(last_line(answer), rb"^r1 OK ")
        marks.assert_landed(self, "alice", A, count=2)
        marks.assert_landed(self, "bob", B, count=2)
        self.assertIn("method=PLAIN", marks.new_log(A))

    def test_authenticate_login_from_imaplib_and_a_raw_client(self):
        proxy = Routing(self, [("alice", A), ("bob", B)])
        marks = Marks()
        i = proxy.imap()
        answers = iter([b"alice", USERS["alice"].encode()])
        prompts = []

        def respond(challenge):
            prompts.append(challenge)
            return next(answers)
        self.assertEqual(i.authenticate("LOGIN", respond)[0], "OK")
        self.assertEqual(prompts, [b"Username:", b"Password:"])
        self.assertEqual(i.select("INBOX")[0], "OK")
        i.logout()
        c = proxy.raw()
        c.send(b"a1 AUTHENTICATE LOGIN\r\n")
        self.assertEqual(c.read_line(), b"+ VXNlcm5hbWU6\r\n")
        c.send(b64("bob").encode() + b"\r\n")
        self.assertEqual(c.read_line(), b"+ UGFzc3dvcmQ6\r\n")
        c.send(b64(USERS["bob"]).encode() + b"\r\n")
        self.assertRegex(last_line(c.until_tagged("a1")), rb"^a1 OK .*Logged in\r\n$")
        self.assertTrue(c.command("a2", "NOOP").startswith(b"a2 OK"))
        marks.assert_landed(self, "alice", A, count=1)
        marks.assert_landed(self, "bob", B, count=1)
        self.assertIn("method=LOGIN", marks.new_log(B))

    def test_sasl_cancel_unknown_mechanism_and_bad_base64(self):
        proxy = Routing(self, [("alice", A)])
        marks = Marks()
        c = proxy.raw()
        c.send(b"c1 AUTHENTICATE PLAIN\r\n")
        self.assertEqual(c.read_line(), b"+ \r\n")
        c.send(b"*\r\n")
        self.assertEqual(c.until_tagged("c1"), b"c1 BAD Authentication canceled.\r\n")
        self.assertEqual(c.command("c2", "AUTHENTICATE CRAM-MD5"),
                         b"c2 NO [CANNOT] Unsupported authentication mechanism.\r\n")
        self.assertEqual(c.command("c3", "AUTHENTICATE PLAIN !!notbase64!!"), b"c3 BAD Invalid SASL response.\r\n")
        # The session is still in the pre-login phase and can log in.
        self.assertRegex(last_line(c.command("c4", f"LOGIN alice {USERS['alice']}")), rb"^c4 OK ")
        marks.assert_landed(self, "alice", A, count=1)

    def test_literal_login(self):
        proxy = Routing(self, [("alice", A)])
        marks = Marks()
        c = proxy.raw()
        c.send(b"l1 LOGIN alice {%d}\r\n" % len(USERS["alice"]))
        self.assertEqual(c.read_line(), b"+ Ready for literal data.\r\n")
        c.send(USERS["alice"].encode() + b"\r\n")
        self.assertRegex(last_line(c.until_tagged("l1")), rb"^l1 OK ")
        marks.assert_landed(self, "alice", A, count=1)

    def test_prelogin_answers(self):
        proxy = Routing(self, [("alice", A)])
        marks = Marks()
        c = proxy.raw()
        greeting = re.match(rb"^\* OK \[CAPABILITY ([^\]]*)\] IMAP proxy ready\.\r\n$", c.greeting)
        self.assertIsNotNone(greeting, c.greeting)
        answer = c.command("c1", "CAPABILITY")
        listed = re.match(rb"^\* CAPABILITY (.*)\r\nc1 " + re.escape(PRELOGIN_CAPABILITY_OK) + b"$", answer)
        self.assertIsNotNone(listed, answer)
        caps = set(listed.group(1).split())
        self.assertEqual(set(greeting.group(1).split()), caps)
        # Learnt from the backends (Dovecot's pre-login list), as a transparent proxy
        # without a certificate shows it: no STARTTLS, logins allowed.
        for cap in (b"IMAP4rev1", b"SASL-IR", b"ID", b"AUTH=PLAIN", b"AUTH=LOGIN"):
            self.assertIn(cap, caps)
        self.assertNotIn(b"STARTTLS", caps)
        self.assertNotIn(b"LOGINDISABLED", caps)
        self.assertEqual(c.command("n1", "NOOP"), b"n1 OK NOOP completed.\r\n")
        self.assertEqual(c.command("s1", "SELECT INBOX"), b"s1 BAD Please log in first.\r\n")
        self.assertEqual(c.command("x1", "FROBNICATE"), b"x1 BAD Unknown command.\r\n")
        self.assertEqual(c.command("z1", "LOGOUT"), b"* BYE Logging out\r\nz1 OK Logout completed.\r\n")
        self.assertEqual(c.sock.recv(100), b"")  # closed
        # None of it reached a backend: no login, no ID.
        self.assertEqual([marks.logins(b) for b in BACKENDS], [[], [], []])
        self.assertEqual(proxy.metric("imapscope_route_lookups_total"), 0)

    def test_same_prelogin_capabilities_as_transparent_mode(self):
        proxy = Routing(self, [("alice", A)])
        transparent_port = free_port()
        transparent = Imapscope(["--listen", f"127.0.0.1:{transparent_port}", "--upstream", name(A)])
        self.addCleanup(transparent.stop)
        transparent.start([transparent_port])

        def capabilities(port):
            c = imaplib.IMAP4("127.0.0.1", port, timeout=20)
            before = set(c.capabilities)
            c.login("alice", USERS["alice"])
            typ, data = c.capability()
            c.logout()
            return before, set(data[0].decode().split())

        routed_before, routed_after = capabilities(proxy.port)
        plain_before, plain_after = capabilities(transparent_port)
        self.assertEqual(routed_before, plain_before)
        # After login: the backend's own list (Dovecot's post-login one, far longer),
        # with the client-leg rules applied as in transparent mode.
        self.assertEqual(routed_after, plain_after)
        for cap in ("MOVE", "SORT", "THREAD=REFERENCES", "CONDSTORE", "QRESYNC", "UIDPLUS"):
            self.assertIn(cap, routed_after)

    def test_post_login_capability_code_is_the_backends(self):
        proxy = Routing(self, [("alice", A)])
        c = proxy.raw()
        answer = c.command("l1", f"LOGIN alice {USERS['alice']}")
        # Dovecot's tagged OK carries its post-login list.
        self.assertRegex(answer, rb"l1 OK \[CAPABILITY IMAP4rev1 [^\]]*\bMOVE\b[^\]]*\] Logged in\r\n$")

    def test_id_is_passed_on(self):
        proxy = Routing(self, [("alice", A)])
        marks = Marks()
        c = proxy.raw()
        answer = c.command("i1", 'ID ("name" "routing-test" "version" "1.5" "x-originating-ip" "192.0.2.99")')
        self.assertEqual(answer, b'* ID ("name" "imapscope")\r\ni1 OK ID completed.\r\n')
        self.assertRegex(last_line(c.command("l1", f"LOGIN alice {USERS['alice']}")), rb"^l1 OK ")
        self.assertTrue(c.command("n1", "NOOP").startswith(b"n1 OK"))
        marks.assert_landed(self, "alice", A, count=1)
        log = marks.new_log(A)
        # The ID Dovecot was sent in the connection that logged alice in (the health
        # checks' connections are others).
        session = LOGIN_LINE.search(log).group(2)
        sent = re.search(r"imap-login: Info: ID sent: (.*): user=<>.*session=<" + re.escape(session) + ">", log)
        self.assertIsNotNone(sent, log)
        self.assertIn("name=routing-test, version=1.5", sent.group(1))
        # A client can't forge where it comes from: forwarding fields are not replayed.
        self.assertNotIn("192.0.2.99", sent.group(1))

    def test_wrong_password_gets_the_backends_no_unchanged(self):
        proxy = Routing(self, [("alice", A)])
        direct = RawClient(A.port)
        expected = direct.command("w1", "LOGIN alice wrong-password")
        direct.close()
        self.assertEqual(expected, b"w1 " + DOVECOT_NO)
        marks = Marks()
        c = proxy.raw()
        self.assertEqual(c.command("w1", "LOGIN alice wrong-password"), expected)
        # Back in the pre-login phase: the next try is a new lookup and works.
        self.assertRegex(last_line(c.command("w2", f"LOGIN alice {USERS['alice']}")), rb"^w2 OK ")
        self.assertTrue(c.command("w3", "SELECT INBOX").splitlines()[-1].startswith(b"w3 OK"))
        marks.assert_landed(self, "alice", A, count=1)
        self.assertIn("auth failed", marks.new_log(A))
        self.assertEqual(proxy.metric("imapscope_route_logins_total", 'result="no"'), 1)
        self.assertEqual(proxy.metric("imapscope_route_logins_total", 'result="ok"'), 1)
        self.assertEqual(proxy.metric("imapscope_route_lookups_total", 'source="map"'), 2)
        self.assertNotIn("wrong-password", proxy.log())
        # The same through AUTHENTICATE PLAIN.
        c = proxy.raw()
        self.assertEqual(c.command("w4", "AUTHENTICATE PLAIN " + b64("\0alice\0wrong-password")), b"w4 " + DOVECOT_NO)

    def test_domains_globs_default_and_refusal(self):
        proxy = Routing(self, [("@example.org", B), ("grace@example.org", C), ("car*", A), ("alice", A),
                               ("dave", "-", '"Mailbox moved, use imap.example.com"'), ("*", C)])
        marks = Marks()
        for user in ("frank@example.org", "grace@example.org", "carol", "bob"):
            c, answer = login_answer(proxy, user)
            self.assertRegex(last_line(answer), rb"^l1 OK ", (user, answer))
        marks.assert_landed(self, "frank@example.org", B)   # its domain
        marks.assert_landed(self, "grace@example.org", C)   # exact before domain
        marks.assert_landed(self, "carol", A)               # the glob
        marks.assert_landed(self, "bob", C)                 # the default
        c, answer = login_answer(proxy, "dave")
        self.assertEqual(answer, b"l1 NO Mailbox moved, use imap.example.com\r\n")
        closed(self, c)  # a refusal without Auth-Wait ends the connection, as nginx does
        self.assertEqual(marks.where("dave"), set())
        self.assertEqual(proxy.metric("imapscope_route_lookups_total", 'source="map",result="refused"'), 1)
        # An exact user matches whatever its case: ALICE goes to alice's A (whose passdb
        # is case-sensitive: A refuses the name, and says so in its log).
        c, answer = login_answer(proxy, "ALICE", USERS["alice"])
        self.assertTrue(last_line(answer).startswith(b"l1 "), answer)
        c.close()  # Dovecot logs a failed attempt when its connection ends
        wait_until("ALICE's attempt on A's log", lambda: "user=<ALICE>" in marks.new_log(A), timeout=10)
        self.assertNotIn("user=<ALICE>", marks.new_log(C))

    def test_user_option_logs_in_as_another_user(self):
        proxy = Routing(self, [("carol", A, "user=carol.archive")])
        marks = Marks()
        c, answer = login_answer(proxy, "carol")
        self.assertRegex(last_line(answer), rb"^l1 OK ")
        wait_until("carol.archive's login on A", lambda: "carol.archive" in marks.logins(A), timeout=10)
        self.assertNotIn("carol", marks.logins(A))

    def test_no_entry_and_no_default_is_refused(self):
        proxy = Routing(self, [("alice", A)])
        marks = Marks()
        c, answer = login_answer(proxy, "bob")
        self.assertRegex(last_line(answer), rb"^l1 NO ")
        self.assertEqual(marks.where("bob"), set())
        closed(self, c)

    def test_backend_down_is_unavailable_never_a_hang(self):
        dead = free_port()  # nothing listens there
        proxy = Routing(self, [("alice", dead), ("bob", B)])
        c = proxy.raw()
        took, answer = timed(c.command, "l1", f"LOGIN alice {USERS['alice']}")
        unavailable(self, answer, "l1", NO_MAIL_SERVER)
        self.assertLess(took, 5)
        # The session is still there for another try; other backends unaffected.
        self.assertEqual(c.command("n1", "NOOP"), b"n1 OK NOOP completed.\r\n")
        self.assertRegex(last_line(login_answer(proxy, "bob")[1]), rb"^l1 OK ")
        wait_until("the dead backend down in /api/backends",
                   lambda: proxy.backends().get(f"127.0.0.1:{dead}", {}).get("state") == "down")
        self.assertEqual(proxy.metric("imapscope_backend_up", f'backend="127.0.0.1:{dead}"'), 0)
        self.assertEqual(proxy.metric("imapscope_backend_up", f'backend="{name(B)}"'), 1)
        # Known down: refused at once, without trying to connect.
        took, answer = timed(login_answer, proxy, "alice")
        unavailable(self, answer[1], "l1", NO_MAIL_SERVER)
        self.assertLess(took, 2)
        self.assertGreaterEqual(proxy.metric("imapscope_route_logins_total", 'result="failed"'), 1)

    def test_backend_stopped_while_running(self):
        spare = Dovecot(certs=CERTS, extra_config=DOVECOT_EXTRA, users=EXTRA_USERS).start()
        self.addCleanup(spare.stop)
        proxy = Routing(self, [("alice", spare.port)], wait_up=False)
        wait_until("the spare up", lambda: proxy.backends().get(name(spare), {}).get("state") == "up")
        c, answer = login_answer(proxy, "alice")
        self.assertRegex(last_line(answer), rb"^l1 OK ")
        spare.stop()
        # The running session ends with its server; new logins are refused cleanly
        # (at once or when the connection is refused).
        took, (other, answer) = timed(login_answer, proxy, "alice")
        unavailable(self, answer, "l1", NO_MAIL_SERVER)
        self.assertLess(took, 5)

    def test_starttls_and_implicit_tls_listeners(self):
        proxy = Routing(self, [("alice", A), ("bob", B)], tls=True)
        marks = Marks()
        context = ssl.create_default_context(cafile=CERTS["ca"])
        # STARTTLS: answered by imapscope itself; logins only after it (plaintext refused).
        c = imaplib.IMAP4("127.0.0.1", proxy.starttls_port, timeout=20)
        self.assertIn("STARTTLS", c.capabilities)
        self.assertIn("LOGINDISABLED", c.capabilities)
        with self.assertRaises(imaplib.IMAP4.error) as caught:
            c.login("alice", USERS["alice"])
        self.assertIn("PRIVACYREQUIRED", str(caught.exception))
        c.starttls(ssl_context=context)
        self.assertNotIn("LOGINDISABLED", c.capabilities)
        self.assertNotIn("STARTTLS", c.capabilities)
        self.assertEqual(c.login("alice", USERS["alice"])[0], "OK")
        self.assertEqual(c.select("INBOX")[0], "OK")
        c.logout()
        # Implicit TLS.
        s = imaplib.IMAP4_SSL("127.0.0.1", proxy.tls_port, ssl_context=context, timeout=20)
        self.assertEqual(s.login("bob", USERS["bob"])[0], "OK")
        self.assertEqual(s.select("INBOX")[0], "OK")
        s.logout()
        marks.assert_landed(self, "alice", A, count=1)
        marks.assert_landed(self, "bob", B, count=1)
        ends = [l for l in proxy.log().splitlines() if "event=session_end" in l and "client_tls=TLS" in l]
        self.assertGreaterEqual(len(ends), 2, proxy.log())

    def test_flags_alone(self):
        work = temp_dir(prefix="imapscope-routing-flags-")
        routes = os.path.join(work, "routes.map")
        with open(routes, "w") as f:
            f.write(map_text([("alice", A), ("*", B)]))
        port = free_port()
        proxy = Imapscope(["--listen", f"127.0.0.1:{port}", "--route-map", routes, "--no-login-penalty"])
        self.addCleanup(proxy.stop)
        proxy.start([port])
        marks = Marks()
        for user in ("alice", "bob"):
            c = imaplib.IMAP4("127.0.0.1", port, timeout=20)
            self.assertEqual(c.login(user, USERS[user])[0], "OK")
            c.logout()
        marks.assert_landed(self, "alice", A)
        marks.assert_landed(self, "bob", B)
        # --upstream and routing together are refused at start.
        both = subprocess.run([imapscope_binary(), "--listen", f"127.0.0.1:{free_port()}", "--route-map", routes,
                               "--upstream", name(A), "--admin", "none", "--state-dir", os.path.join(work, "s")],
                              capture_output=True, text=True, timeout=60)
        self.assertNotEqual(both.returncode, 0)
        self.assertRegex(both.stderr, r"(?i)upstream")
        # A broken map at start: refused with file and line.
        with open(routes, "a") as f:
            f.write("bob 127.0.0.1:notaport\n")
        broken = subprocess.run([imapscope_binary(), "--listen", f"127.0.0.1:{free_port()}", "--route-map", routes,
                                 "--admin", "none", "--state-dir", os.path.join(work, "s")],
                                capture_output=True, text=True, timeout=60)
        self.assertNotEqual(broken.returncode, 0)
        self.assertIn(f"{routes}:4:", broken.stderr)

    def test_login_penalty_applies_before_any_backend(self):
        proxy = Routing(self, [("alice", A)], config={"login_penalty": {"enabled": True}})
        c = proxy.raw()
        took, answer = timed(c.command, "p1", "LOGIN alice wrong-one")
        self.assertEqual(answer, b"p1 " + DOVECOT_NO)
        self.assertLess(took, 1.5)
        took, answer = timed(c.command, "p2", "LOGIN alice wrong-two")
        self.assertEqual(answer, b"p2 " + DOVECOT_NO)
        self.assertGreaterEqual(took, 1.8)
        self.assertLess(took, 4.5)
        self.assertEqual(proxy.metric("imapscope_login_failures_total", 'credentials="new"'), 2)


# ------------------------------------------------------------------------ auth_http

class HttpRouting(unittest.TestCase):

    def service(self, **kwargs):
        service = AuthHttpService(passwords=ALL_USERS, **kwargs).start()
        self.addCleanup(service.stop)
        return service

    def test_routes_and_sends_nginx_headers(self):
        service = self.service()
        service.route("alice", ok("127.0.0.1", A.port))
        service.route("bob", ok("127.0.0.1", B.port))
        service.route("erin", ok("127.0.0.1", C.port))
        proxy = Routing(self, http=service.url)
        marks = Marks()
        for user in ("alice", "bob"):
            i = proxy.imap()
            self.assertEqual(i.login(user, USERS[user])[0], "OK")
            self.assertEqual(i.select("INBOX")[0], "OK")
            i.logout()
        i = proxy.imap()
        self.assertEqual(i.login("erin", ALL_USERS["erin"])[0], "OK")  # a password with a space and a %
        i.logout()
        marks.assert_landed(self, "alice", A, count=1)
        marks.assert_landed(self, "bob", B, count=1)
        marks.assert_landed(self, "erin", C, count=1)
        requests = service.requests
        self.assertEqual(len(requests), 3, requests)
        for request, user in zip(requests, ("alice", "bob", "erin")):
            self.assertEqual((request.method, request.path.split("?")[0]), ("GET", "/auth"))
            self.assertEqual(request.header("Auth-Method"), "plain")
            self.assertEqual(request.header("Auth-User"), user)
            self.assertEqual(request.password, ALL_USERS[user])
            self.assertEqual(request.header("Auth-Protocol"), "imap")
            self.assertEqual(request.header("Auth-Login-Attempt"), "1")
            self.assertEqual(request.header("Client-IP"), "127.0.0.1")
            self.assertIn(request.header("Auth-SSL"), (None, "off"))
        # URL-escaped as nginx does it (space and % at least).
        self.assertEqual(requests[2].header("Auth-Pass"), "erin%20pass%25word")
        self.assertEqual(proxy.metric("imapscope_route_lookups_total", 'source="http",result="routed"'), 3)
        self.assertGreater(proxy.metric("imapscope_route_lookup_seconds_count", 'source="http"'), 0)
        for secret in ALL_USERS.values():
            self.assertNotIn(secret, proxy.log())
        self.assertNotIn("erin%20pass%25word", proxy.log())

    def test_authenticate_methods_in_the_request(self):
        service = self.service()
        service.route("alice", ok("127.0.0.1", A.port))
        proxy = Routing(self, http=service.url)
        c = proxy.raw()
        self.assertRegex(last_line(c.command("a1", "AUTHENTICATE PLAIN " + b64("\0alice\0" + USERS["alice"]))),
                         rb"^a1 OK ")
        c = proxy.raw()
        c.send(b"a2 AUTHENTICATE LOGIN\r\n")
        c.read_line()
        c.send(b64("alice").encode() + b"\r\n")
        c.read_line()
        c.send(b64(USERS["alice"]).encode() + b"\r\n")
        self.assertRegex(last_line(c.until_tagged("a2")), rb"^a2 OK ")
        methods = [r.header("Auth-Method") for r in service.requests]
        self.assertEqual(methods[0], "plain")
        # nginx says "plain" for AUTHENTICATE LOGIN too (its table maps both to it); the
        # spec says "login". Either is a password a service can check: both accepted here,
        # routing_nginx_test compares with nginx itself.
        self.assertIn(methods[1], ("login", "plain"))

    def test_auth_user_and_auth_pass_override_the_credentials(self):
        service = self.service()
        service.route("alice", ok("127.0.0.1", A.port, user="carol", password=ALL_USERS["carol"]))
        proxy = Routing(self, http=service.url)
        marks = Marks()
        i = proxy.imap()
        self.assertEqual(i.login("alice", USERS["alice"])[0], "OK")
        i.logout()
        wait_until("carol's login on A", lambda: "carol" in marks.logins(A), timeout=10)
        self.assertNotIn("alice", marks.logins(A))
        self.assertEqual(marks.where("alice"), set())
        self.assertNotIn(ALL_USERS["carol"], proxy.log())

    def test_error_text_is_the_clients_no_then_the_connection_ends(self):
        service = self.service()
        service.route("bob", [error("Mailbox moved to imap2.example.org"), ok("127.0.0.1", B.port)])
        proxy = Routing(self, http=service.url)
        marks = Marks()
        c = proxy.raw()
        self.assertEqual(c.command("e1", f"LOGIN bob {USERS['bob']}"), b"e1 NO Mailbox moved to imap2.example.org\r\n")
        closed(self, c)  # without Auth-Wait, as nginx does
        self.assertEqual(marks.where("bob"), set())
        self.assertEqual(proxy.metric("imapscope_route_lookups_total", 'source="http",result="refused"'), 1)
        # A new connection asks again (its first attempt).
        c, answer = login_answer(proxy, "bob")
        self.assertRegex(last_line(answer), rb"^l1 OK ")
        marks.assert_landed(self, "bob", B, count=1)
        self.assertEqual([r.header("Auth-Login-Attempt") for r in service.requests], ["1", "1"])

    def test_nologin_json_refuses(self):
        service = self.service()
        service.route("bob", dovecot_json(nologin=True, reason="Account suspended"))
        proxy = Routing(self, http=service.url)
        c, answer = login_answer(proxy, "bob")
        self.assertEqual(answer, b"l1 NO Account suspended\r\n")

    def test_wrong_password_refused_by_the_service(self):
        service = self.service()
        service.route("alice", ok("127.0.0.1", A.port))
        proxy = Routing(self, http=service.url)
        marks = Marks()
        c, answer = login_answer(proxy, "alice", "not-her-password")
        self.assertEqual(answer, f"l1 NO {INVALID_LOGIN}\r\n".encode())
        closed(self, c)
        self.assertEqual(marks.where("alice"), set())
        self.assertNotIn("not-her-password", proxy.log())

    def test_auth_wait_delays_the_no(self):
        service = self.service()
        service.route("bob", [error("Too many attempts", wait=2), ok("127.0.0.1", B.port)])
        proxy = Routing(self, http=service.url)
        c = proxy.raw()
        took, answer = timed(c.command, "w1", f"LOGIN bob {USERS['bob']}")
        self.assertEqual(answer, b"w1 NO Too many attempts\r\n")
        self.assertGreaterEqual(took, 1.8)
        self.assertLess(took, 5)
        # With Auth-Wait the connection goes on: the next login is attempt 2.
        took, answer = timed(c.command, "w2", f"LOGIN bob {USERS['bob']}")
        self.assertRegex(last_line(answer), rb"^w2 OK ")
        self.assertEqual([r.header("Auth-Login-Attempt") for r in service.requests], ["1", "2"])

    def test_wait_status_asks_again(self):
        service = self.service()
        service.route("bob", [wait(1), ok("127.0.0.1", B.port)])
        proxy = Routing(self, http=service.url)
        marks = Marks()
        c = proxy.raw()
        took, answer = timed(c.command, "w1", f"LOGIN bob {USERS['bob']}")
        self.assertRegex(last_line(answer), rb"^w1 OK ")
        self.assertGreaterEqual(took, 0.9)
        self.assertLess(took, 5)
        self.assertEqual(len(service.requests_for("bob")), 2)
        marks.assert_landed(self, "bob", B, count=1)

    def test_dovecot_json_answer(self):
        service = self.service()
        service.route("bob", dovecot_json(host="127.0.0.1", port=B.port))
        service.route("alice", dovecot_json(host="127.0.0.1", port=C.port, destuser="carol",
                                            **{"pass": ALL_USERS["carol"]}))
        proxy = Routing(self, http=service.url)
        marks = Marks()
        for user in ("bob", "alice"):
            c, answer = login_answer(proxy, user)
            self.assertRegex(last_line(answer), rb"^l1 OK ", (user, answer))
        marks.assert_landed(self, "bob", B, count=1)
        wait_until("carol (alice's destuser) on C", lambda: "carol" in marks.logins(C), timeout=10)

    def test_lookup_names_a_backend_that_is_down(self):
        service = self.service()
        service.route("alice", ok("127.0.0.1", free_port()))
        proxy = Routing(self, http=service.url)
        c = proxy.raw()
        took, answer = timed(c.command, "d1", f"LOGIN alice {USERS['alice']}")
        unavailable(self, answer, "d1", NO_MAIL_SERVER)
        self.assertLess(took, 5)

    def test_service_down(self):
        service = self.service()
        url = service.url
        service.stop()  # nothing listens on its port now
        proxy = Routing(self, http=url)
        c = proxy.raw()
        took, answer = timed(c.command, "d1", f"LOGIN alice {USERS['alice']}")
        unavailable(self, answer, "d1", NO_LOGIN_SERVICE)
        self.assertLess(took, 1 + 2)
        self.assertEqual(c.command("d2", "NOOP"), b"d2 OK NOOP completed.\r\n")
        self.assertEqual(proxy.metric("imapscope_route_lookups_total", 'source="http",result="unavailable"'), 1)
        self.assertNotIn(USERS["alice"], proxy.log())
        # Back up on the same port: the next login works.
        service.start(int(url.split(":")[2].split("/")[0]))
        service.route("alice", ok("127.0.0.1", A.port))
        self.assertRegex(last_line(c.command("d3", f"LOGIN alice {USERS['alice']}")), rb"^d3 OK ")

    def test_service_slow(self):
        service = self.service()
        service.route("alice", ok("127.0.0.1", A.port))
        service.slow(30)
        proxy = Routing(self, http=service.url)  # http_timeout_ms: 1000
        c = proxy.raw()
        took, answer = timed(c.command, "s1", f"LOGIN alice {USERS['alice']}")
        unavailable(self, answer, "s1", NO_LOGIN_SERVICE)
        self.assertGreaterEqual(took, 0.9)
        self.assertLess(took, 1 + 2)
        self.assertEqual(proxy.metric("imapscope_route_lookups_total", 'source="http",result="unavailable"'), 1)
        self.assertGreater(proxy.metric("imapscope_route_lookup_seconds_sum", 'source="http"'), 0.9)

    def test_service_answers_garbage(self):
        service = self.service()
        proxy = Routing(self, http=service.url)
        for i, (kind, garbage) in enumerate(sorted(GARBAGE.items())):
            with self.subTest(kind):
                service.answer_garbage(garbage)
                c = proxy.raw()
                took, answer = timed(c.command, "g1", f"LOGIN alice {USERS['alice']}")
                unavailable(self, answer, "g1", NO_LOGIN_SERVICE)
                self.assertLess(took, 1 + 2)
        self.assertEqual(proxy.metric("imapscope_route_lookups_total", 'source="http",result="unavailable"'),
                         len(GARBAGE))
        self.assertIsNone(proxy.proc.proc.poll())

    def test_answers_are_cached(self):
        service = self.service()
        service.route("alice", ok("127.0.0.1", A.port))
        proxy = Routing(self, http=service.url, routing={"cache_hit_s": 300, "cache_miss_s": 10})
        marks = Marks()
        for _ in range(3):
            c, answer = login_answer(proxy, "alice")
            self.assertRegex(last_line(answer), rb"^l1 OK ")
        self.assertEqual(len(service.requests), 1, service.requests)
        self.assertEqual(proxy.metric("imapscope_route_lookups_total", 'source="cache",result="routed"'), 2)
        marks.assert_landed(self, "alice", A, count=3)
        # Another password is another question: the service is asked (and refuses it).
        c, answer = login_answer(proxy, "alice", "guessing")
        self.assertEqual(answer, f"l1 NO {INVALID_LOGIN}\r\n".encode())
        self.assertEqual(len(service.requests), 2)
        # A miss is remembered too (seconds), for that password only.
        c, answer = login_answer(proxy, "alice", "guessing")
        self.assertEqual(answer, f"l1 NO {INVALID_LOGIN}\r\n".encode())
        self.assertEqual(len(service.requests), 2)
        c, answer = login_answer(proxy, "alice")
        self.assertRegex(last_line(answer), rb"^l1 OK ")
        self.assertEqual(len(service.requests), 2)

    def test_map_first_then_http(self):
        service = self.service()
        service.route("bob", ok("127.0.0.1", B.port))
        service.route("alice", ok("127.0.0.1", C.port))  # never asked: the map has alice
        proxy = Routing(self, [("alice", A)], http=service.url)
        marks = Marks()
        for user in ("alice", "bob"):
            c, answer = login_answer(proxy, user)
            self.assertRegex(last_line(answer), rb"^l1 OK ")
        marks.assert_landed(self, "alice", A)
        marks.assert_landed(self, "bob", B)
        self.assertEqual([r.user for r in service.requests], ["bob"])

    def test_implicit_tls_listener_says_auth_ssl_on(self):
        service = self.service()
        service.route("alice", ok("127.0.0.1", A.port))
        proxy = Routing(self, http=service.url, tls=True)
        s = imaplib.IMAP4_SSL("127.0.0.1", proxy.tls_port, ssl_context=ssl.create_default_context(
            cafile=CERTS["ca"]), timeout=20)
        self.assertEqual(s.login("alice", USERS["alice"])[0], "OK")
        s.logout()
        self.assertEqual(service.requests[-1].header("Auth-SSL"), "on")


# ------------------------------------------------------------------------ reload

class Reload(unittest.TestCase):

    def reloads(self, proxy):
        return proxy.log().count("event=route_map_reload result=ok")

    def test_sighup_with_a_changed_map(self):
        proxy = Routing(self, [("alice", A), ("bob", B)])
        marks = Marks()
        old, answer = login_answer(proxy, "alice")
        self.assertRegex(last_line(answer), rb"^l1 OK ")
        marks.assert_landed(self, "alice", A, count=1)
        before = self.reloads(proxy)
        proxy.write_map([("alice", C), ("bob", B)])
        proxy.proc.proc.send_signal(signal.SIGHUP)
        wait_until("the reload logged", lambda: self.reloads(proxy) > before)
        marks = Marks()
        new, answer = login_answer(proxy, "alice")
        self.assertRegex(last_line(answer), rb"^l1 OK ")
        marks.assert_landed(self, "alice", C, count=1)
        # The open session stays where it was, and works.
        self.assertTrue(old.command("o1", "SELECT INBOX").splitlines()[-1].startswith(b"o1 OK"))
        self.assertTrue(A.imap_pids("alice"))
        self.assertRegex(last_line(login_answer(proxy, "bob")[1]), rb"^l1 OK ")
        marks.assert_landed(self, "bob", B)

    def test_sighup_with_a_broken_map_keeps_the_old_one(self):
        proxy = Routing(self, [("alice", A), ("bob", B)])
        proxy.write_map("# broken on purpose\nalice 127.0.0.1:%d\nbob 127.0.0.1:99999\n" % C.port)
        proxy.proc.proc.send_signal(signal.SIGHUP)
        where = r"event=route_map_reload result=failed kept=previous .*" + re.escape(proxy.map_path) + r":3:"
        wait_until("the refusal with file and line", lambda: re.search(where, proxy.log()))
        self.assertIsNone(proxy.proc.proc.poll())
        marks = Marks()
        for user in ("alice", "bob"):
            self.assertRegex(last_line(login_answer(proxy, user)[1]), rb"^l1 OK ")
        marks.assert_landed(self, "alice", A)  # the old map, not the broken one's alice -> C
        marks.assert_landed(self, "bob", B)


# ------------------------------------------------------------------------ operations

class Operations(unittest.TestCase):

    def test_backends_listed_with_state_and_sessions(self):
        proxy = Routing(self, [("alice", A), ("bob", B)])
        sessions = [login_answer(proxy, "alice")[0] for _ in range(2)] + [login_answer(proxy, "bob")[0]]
        self.assertEqual(len(sessions), 3)
        wait_until("the sessions counted", lambda: proxy.backends()[name(A)]["sessions"] == 2)
        listed = proxy.backends()
        self.assertEqual(listed[name(B)]["sessions"], 1)
        for backend in (A, B):
            entry = listed[name(backend)]
            self.assertEqual(entry["state"], "up")
            self.assertRegex(entry["last_check"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d")
            self.assertIn("IMAP4rev1", entry["capabilities"])
            self.assertIn("last_error", entry)
        self.assertEqual(proxy.metric("imapscope_backend_sessions", f'backend="{name(A)}"'), 2)
        self.assertEqual(proxy.metric("imapscope_backend_sessions", f'backend="{name(B)}"'), 1)
        sessions[0].close()
        wait_until("a session less", lambda: proxy.backends()[name(A)]["sessions"] == 1)
        status, _ = proxy.proc.admin("GET", "/api/backends", token=False)
        self.assertEqual(status, 401)

    def test_drain_and_undrain(self):
        proxy = Routing(self, [("alice", A), ("bob", B)])
        running, answer = login_answer(proxy, "alice")
        self.assertRegex(last_line(answer), rb"^l1 OK ")
        status, body = proxy.proc.admin("POST", "/api/backends/drain", {"backend": name(A)})
        self.assertEqual((status, body), (200, {"backend": name(A), "state": "draining"}))
        self.assertEqual(proxy.backends()[name(A)]["state"], "draining")
        self.assertEqual(proxy.metric("imapscope_backend_draining", f'backend="{name(A)}"'), 1)
        marks = Marks()
        c, answer = login_answer(proxy, "alice")
        unavailable(self, answer, "l1", NO_MAIL_SERVER)
        self.assertEqual(marks.where("alice"), set())
        # Running sessions keep going; other backends take new ones.
        self.assertTrue(running.command("r1", "SELECT INBOX").splitlines()[-1].startswith(b"r1 OK"))
        self.assertRegex(last_line(login_answer(proxy, "bob")[1]), rb"^l1 OK ")
        status, body = proxy.proc.admin("POST", "/api/backends/undrain", {"backend": name(A)})
        self.assertEqual((status, body["state"] in ("up", "unknown")), (200, True), body)
        self.assertRegex(last_line(login_answer(proxy, "alice")[1]), rb"^l1 OK ")
        marks.assert_landed(self, "alice", A, count=1)
        self.assertEqual(proxy.metric("imapscope_backend_draining", f'backend="{name(A)}"'), 0)
        status, _ = proxy.proc.admin("POST", "/api/backends/drain", {"backend": "127.0.0.1:1"})
        self.assertEqual(status, 404)
        status, _ = proxy.proc.admin("POST", "/api/backends/drain", {"backend": name(A)}, token=False)
        self.assertEqual(status, 401)

    def test_kick_by_user_and_by_backend(self):
        proxy = Routing(self, [("alice", A), ("bob", B), ("carol", B)])
        alice = [login_answer(proxy, "alice")[0] for _ in range(2)]
        bob, _ = login_answer(proxy, "bob")
        carol, _ = login_answer(proxy, "carol")
        status, body = proxy.proc.admin("POST", "/api/kick", {"user": "alice", "reason": "Moving your mailbox",
                                                               "spread_ms": 0})
        self.assertEqual((status, body), (200, {"kicked": 2}))
        for c in alice:
            got = c.read_for(5)
            self.assertIn(b"* BYE [UNAVAILABLE] Moving your mailbox\r\n", got)
            self.assertEqual(c.sock.recv(100), b"")  # closed after the BYE
        # Others untouched.
        self.assertTrue(bob.command("b2", "NOOP").startswith(b"b2 OK"))
        status, body = proxy.proc.admin("POST", "/api/kick", {"backend": name(B), "spread_ms": 0})
        self.assertEqual((status, body), (200, {"kicked": 2}))
        for c in (bob, carol):
            self.assertIn(b"* BYE [UNAVAILABLE] Disconnected by the administrator\r\n", c.read_for(5))
        wait_until("no sessions left", lambda: all(b["sessions"] == 0 for b in proxy.backends().values()))
        status, body = proxy.proc.admin("POST", "/api/kick", {"user": "nobody-here", "spread_ms": 0})
        self.assertEqual((status, body), (200, {"kicked": 0}))
        status, _ = proxy.proc.admin("POST", "/api/kick", {"user": "alice"}, token=False)
        self.assertEqual(status, 401)

    def test_kick_spread(self):
        proxy = Routing(self, [("alice", A)])
        clients = [login_answer(proxy, "alice")[0] for _ in range(4)]
        start = time.monotonic()
        status, body = proxy.proc.admin("POST", "/api/kick", {"user": "alice", "spread_ms": 2000})
        self.assertEqual((status, body), (200, {"kicked": 4}))
        times = []
        for c in clients:
            c.sock.settimeout(10)
            data = b""
            while b"* BYE" not in data:
                chunk = c.sock.recv(4096)
                if not chunk:
                    break
                data += chunk
            times.append(time.monotonic() - start)
            self.assertIn(b"* BYE [UNAVAILABLE]", data)
        self.assertLess(max(times), 2 + 2)

    def test_metrics_families(self):
        service = AuthHttpService(passwords=ALL_USERS).start()
        self.addCleanup(service.stop)
        service.route("bob", ok("127.0.0.1", B.port))
        proxy = Routing(self, [("alice", A)], http=service.url)
        login_answer(proxy, "alice")
        login_answer(proxy, "bob")
        login_answer(proxy, "alice", "wrong")
        text = proxy.metrics_text()
        for family, kind in (("imapscope_backend_sessions", "gauge"), ("imapscope_backend_up", "gauge"),
                             ("imapscope_backend_draining", "gauge"), ("imapscope_backend_checks_total", "counter"),
                             ("imapscope_route_lookups_total", "counter"),
                             ("imapscope_route_lookup_seconds", "histogram"),
                             ("imapscope_route_logins_total", "counter")):
            self.assertRegex(text, rf"(?m)^# TYPE {family} {kind}$", family)
        self.assertRegex(text, rf'(?m)^imapscope_backend_checks_total\{{[^}}]*backend="{re.escape(name(A))}"[^}}]*'
                               rf'result="ok"[^}}]*\}} [1-9]')
        self.assertGreaterEqual(proxy.metric("imapscope_route_lookup_seconds_bucket", 'source="map"'), 1)
        self.assertEqual(proxy.metric("imapscope_route_logins_total", 'result="ok"'), 2)
        self.assertEqual(proxy.metric("imapscope_route_logins_total", 'result="no"'), 1)
        self.assertEqual(proxy.metric("imapscope_route_lookups_total", 'source="http",result="routed"'), 1)
        self.assertNotIn(USERS["alice"], text)

    def test_live_view_rules_and_transcripts_see_routed_sessions(self):
        rules = os.path.join(temp_dir(prefix="imapscope-routing-rules-"), "test.json")
        with open(rules, "w") as f:
            json.dump({"rules": [{"name": "answer-xyzzy", "description": "test rule",
                                  "match": {"direction": "client", "command": ["XYZZY"]},
                                  "actions": {"answer": {"status": "OK", "text": "Nothing happens"}}}]}, f)
        proxy = Routing(self, [("alice", A)], config={"rules": rules})
        c, answer = login_answer(proxy, "alice")
        self.assertRegex(last_line(answer), rb"^l1 OK ")
        self.assertTrue(c.command("s1", "SELECT INBOX").splitlines()[-1].startswith(b"s1 OK"))
        # The rule answers, Dovecot never hears it (it would say BAD).
        self.assertEqual(c.command("x1", "XYZZY"), b"x1 OK Nothing happens\r\n")
        listed = wait_until("alice in /api/sessions", lambda: [
            s for s in proxy.proc.admin_get("/api/sessions")["sessions"] if s.get("user") == "alice"])
        events = proxy.proc.admin_get(f"/api/sessions/{listed[0]['id']}/events")["events"]
        texts = [e.get("text", "") for e in events]
        self.assertTrue(any(t.endswith("SELECT INBOX") for t in texts), texts)
        self.assertTrue(any("LOGIN alice" in t for t in texts), texts)
        self.assertNotIn(USERS["alice"], json.dumps(events))
        c.close()

        def written():
            out = []
            for path in sorted(glob.glob(os.path.join(proxy.transcripts, "*.jsonl"))):
                with open(path) as f:
                    out += [json.loads(line) for line in f if line.strip()]
            return out
        wait_until("SELECT in a transcript", lambda: any(e.get("text", "").endswith("SELECT INBOX")
                                                         for e in written()))
        events = written()
        self.assertTrue(any("Nothing happens" in e.get("text", "") for e in events))
        self.assertNotIn(USERS["alice"], json.dumps(events))


if __name__ == "__main__":
    unittest.main()
