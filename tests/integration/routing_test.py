"""Routing mode end to end, by a map file: the real imapscope in front of three real
Dovecot instances (backends A, B and C, each with its own folder, ports and log),
everything on loopback (tests/support/routing_fixtures.py). auth_http lookups:
routing_http_test.py; real clients: routing_clients_test.py; nginx's own requests:
routing_nginx_test.py.

Where a session went is read where it can't be faked: the backend's own log, whose
imap-login writes "Login: user=<...>" for each login it took. Each test notes where
every log ended before it (Marks) and looks only at what came after.

- MapRouting: users, domains, globs, the default and refusals of a map file; LOGIN,
  AUTHENTICATE PLAIN (with and without SASL-IR) and LOGIN from imaplib and a raw
  client; the pre-login answers; ID passed on; the backend's NO unchanged; the
  post-login capabilities the backend's; user= logins; a map asking for a master login refused (a wrong password
  never gets in); STARTTLS and implicit TLS listeners; backends over TLS and
  STARTTLS, verified; the client's address forwarded; a backend that is down or
  stops and comes back (the health checks see it up again); the flags alone; the login penalty before any backend.
- Health: a backend that never greets or is no IMAP server is down (and a login to it
  answered, never a hang); the health check's test login.
- Reload: SIGHUP with a changed map and with a broken one; SIGTERM ends routed and
  pre-login sessions with a BYE.
- Operations: the admin API's backends, drain, undrain and kick (by user, by backend,
  spread, at a message boundary); the metrics; routed sessions in the live view, the
  rules and the transcripts.

Each test starts its own imapscope (its own cache, penalty and metrics); every process
is stopped by its pid and every folder removed (imap_fixtures).
"""
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
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "support"))
from imap_fixtures import (USERS, Dovecot, Imapscope, RawClient, free_port, imapscope_binary, temp_dir,  # noqa: E402
                           wait_until)
from auth_http_service import AuthHttpService, ok  # noqa: E402
from routing_fixtures import (ALL_USERS, BACKENDS, CERTS, DOVECOT_NO, LOGIN_LINE, NO_MAIL_SERVER,  # noqa: E402
                              PRELOGIN_CAPABILITY_OK, Marks, Routing, b64, closed, last_line, login_answer, map_text,
                              name, new_backend, start_backends, stop_backends, timed, unavailable)

A = B = C = None


def setUpModule():
    global A, B, C
    A, B, C = start_backends()


def tearDownModule():
    stop_backends()


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
        # An exact user matches whatever its case: ALICE goes to alice's A, not to the
        # default (Dovecot's auth_username_format %Lu makes her alice there).
        c, answer = login_answer(proxy, "ALICE", USERS["alice"])
        self.assertRegex(last_line(answer), rb"^l1 OK ")
        marks.assert_landed(self, "alice", A, count=1)

    def test_user_option_logs_in_as_another_user(self):
        proxy = Routing(self, [("carol", A, "user=carol.archive")])
        marks = Marks()
        c, answer = login_answer(proxy, "carol")
        self.assertRegex(last_line(answer), rb"^l1 OK ")
        wait_until("carol.archive's login on A", lambda: "carol.archive" in marks.logins(A), timeout=10)
        self.assertNotIn("carol", marks.logins(A))

    def test_a_map_with_a_master_login_is_refused(self):
        # A map holds no passwords and the backend checks the master's, not the
        # client's: a master login from a map would let any password in, so a map
        # asking for one doesn't load (auth_http's master logins: routing_http_test).
        work = temp_dir()
        routes = os.path.join(work, "routes.map")
        with open(routes, "w") as f:
            f.write(f"alice {name(A)}\ncarol {name(A)} user=carol.archive master\n")
        refused = subprocess.run([imapscope_binary(), "--listen", f"127.0.0.1:{free_port()}", "--route-map", routes,
                                  "--admin", "none", "--state-dir", os.path.join(work, "s")],
                                 capture_output=True, text=True, timeout=60)
        self.assertEqual(refused.returncode, 2, refused.stderr)
        self.assertIn(f"{routes}:2:", refused.stderr)
        self.assertIn("master: a map can't check the client's password", refused.stderr)

    def test_no_entry_and_no_default_is_refused(self):
        # A user the map doesn't know is refused, as an auth service or Dovecot's passdb
        # refuses an unknown user: not [UNAVAILABLE], which tells the client to come back.
        proxy = Routing(self, [("alice", A)])
        marks = Marks()
        c, answer = login_answer(proxy, "bob")
        self.assertRegex(last_line(answer), rb"^l1 NO ")
        self.assertNotIn(b"[UNAVAILABLE]", answer)
        self.assertEqual(marks.where("bob"), set())
        self.assertEqual(proxy.metric("imapscope_route_lookups_total", 'source="map",result="refused"'), 1)

    def test_backends_reached_with_tls_and_starttls_verified(self):
        proxy = Routing(self, [("alice", A.tls_port, "tls"), ("bob", B, "starttls")],
                        routing={"upstream_ca": CERTS["ca"]})
        marks = Marks()
        for user in ("alice", "bob"):
            c, answer = login_answer(proxy, user)
            self.assertRegex(last_line(answer), rb"^l1 OK ", (user, answer))
            self.assertTrue(c.command("s1", "SELECT INBOX").splitlines()[-1].startswith(b"s1 OK"))
        marks.assert_landed(self, "alice", A, count=1)
        marks.assert_landed(self, "bob", B, count=1)
        for backend, user in ((A, "alice"), (B, "bob")):  # Dovecot says TLS, not "secured" (loopback)
            line = next(l for l in marks.new_log(backend).splitlines() if f"Login: user=<{user}>" in l)
            self.assertRegex(line, r", TLS, ", line)
        # Verified: with the system's CAs our test CA is unknown, and the login goes nowhere.
        unverified = Routing(self, [("alice", A.tls_port, "tls"), ("bob", B, "starttls")], wait_up=False)
        marks = Marks()
        for user in ("alice", "bob"):
            c, answer = login_answer(unverified, user)
            unavailable(self, answer, "l1", NO_MAIL_SERVER)
        self.assertEqual((marks.where("alice"), marks.where("bob")), (set(), set()))
        for secret in (USERS["alice"], USERS["bob"]):
            self.assertNotIn(secret, unverified.log())

    def test_client_address_forwarded_to_the_backend(self):
        # A backend of its own that trusts loopback for PROXY headers and ID's
        # x-originating-ip, as a backend behind imapscope would.
        trusting = Dovecot(certs=CERTS, trusted="127.0.0.0/8", users=ALL_USERS,
                           extra_config="auth_failure_delay = 0\n").start()
        self.addCleanup(trusting.stop)
        for mode, port in (("proxy-v2", trusting.haproxy_port), ("proxy-v1", trusting.haproxy_port),
                           ("id", trusting.port)):
            with self.subTest(mode):
                proxy = Routing(self, [("alice", port)], routing={"forward_client": mode}, balanced=True,
                                wait_up=False)
                start = len(trusting.log())
                s = socket.create_connection(("127.0.0.1", proxy.balanced_port), timeout=20)
                s.sendall(b"PROXY TCP4 192.0.2.7 127.0.0.1 40000 143\r\n")
                c = RawClient(s)
                proxy.clients.append(c)
                self.assertRegex(last_line(c.command("l1", f"LOGIN alice {USERS['alice']}")), rb"^l1 OK ")
                wait_until(f"alice's login from 192.0.2.7 in the backend's log ({mode})", lambda: re.search(
                    r"Login: user=<alice>.*rip=192\.0\.2\.7", trusting.log()[start:]), timeout=10)

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
        spare = new_backend()
        self.addCleanup(spare.stop)
        proxy = Routing(self, [("alice", spare.port)], wait_up=False)
        wait_until("the spare up", lambda: proxy.backends().get(name(spare), {}).get("state") == "up")
        c, answer = login_answer(proxy, "alice")
        self.assertRegex(last_line(answer), rb"^l1 OK ")
        spare.stop(remove=False)
        # The running session ends with its server; new logins are refused cleanly
        # (at once or when the connection is refused).
        took, (other, answer) = timed(login_answer, proxy, "alice")
        unavailable(self, answer, "l1", NO_MAIL_SERVER)
        self.assertLess(took, 5)
        # Back again: the health checks see it up (rise) and logins go there once more.
        wait_until("the spare down", lambda: proxy.backends()[name(spare)]["state"] == "down")
        spare.start()
        wait_until("the spare up again", lambda: proxy.backends()[name(spare)]["state"] == "up")
        c, answer = login_answer(proxy, "alice")
        self.assertRegex(last_line(answer), rb"^l1 OK ")

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
        wait_until("both TLS sessions' session_end", lambda: len(
            [l for l in proxy.log().splitlines() if "event=session_end" in l and "client_tls=TLS" in l]) >= 2)

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
        # --check-config reads the map too.
        config = os.path.join(work, "imapscope.json")
        with open(config, "w") as f:
            json.dump({"routing": {"map": routes}, "listeners": [{"listen": f"127.0.0.1:{free_port()}"}]}, f)
        checked = subprocess.run([imapscope_binary(), "--check-config", config], capture_output=True, text=True,
                                 timeout=60)
        self.assertEqual(checked.returncode, 0, checked.stderr)
        self.assertIn("config OK", checked.stdout)
        # A broken map at start: refused with file and line.
        with open(routes, "a") as f:
            f.write("bob 127.0.0.1:notaport\n")
        broken = subprocess.run([imapscope_binary(), "--listen", f"127.0.0.1:{free_port()}", "--route-map", routes,
                                 "--admin", "none", "--state-dir", os.path.join(work, "s")],
                                capture_output=True, text=True, timeout=60)
        self.assertNotEqual(broken.returncode, 0)
        self.assertIn(f"{routes}:4:", broken.stderr)
        checked = subprocess.run([imapscope_binary(), "--check-config", config], capture_output=True, text=True,
                                 timeout=60)
        self.assertEqual(checked.returncode, 2)
        self.assertIn(f"{routes}:4:", checked.stderr)

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


# ------------------------------------------------------------------------ health

class SilentServer:
    """A TCP port that accepts and then says nothing (or greeting, if given): a mail
    server that hangs, or one that isn't IMAP. Stopped by the test."""

    def __init__(self, test, greeting=b""):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.greeting = greeting
        self.accepted = []
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()
        test.addCleanup(self.stop)

    def serve(self):
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.accepted.append(conn)
            if self.greeting:
                conn.sendall(self.greeting)

    def stop(self):
        self.listener.close()
        for conn in self.accepted:
            conn.close()


class Health(unittest.TestCase):

    def test_a_backend_that_never_greets_is_down_and_never_a_hang(self):
        silent = SilentServer(self)
        proxy = Routing(self, [("alice", silent.port), ("bob", B)], wait_up=False)
        # Before any check has told: the login's own connection waits for the greeting,
        # bounded, and the client hears why.
        start = time.monotonic()
        try:
            c, answer = login_answer(proxy, "alice")
        except ConnectionError:
            self.fail(f"the connection was closed after {time.monotonic() - start:.1f}s without an answer")
        unavailable(self, answer, "l1", NO_MAIL_SERVER)
        self.assertLess(time.monotonic() - start, 15)
        wait_until("the silent backend down", lambda: proxy.backends()[f"127.0.0.1:{silent.port}"]["state"] == "down")
        self.assertTrue(proxy.backends()[f"127.0.0.1:{silent.port}"]["last_error"])
        took, (c, answer) = timed(login_answer, proxy, "alice")
        unavailable(self, answer, "l1", NO_MAIL_SERVER)
        self.assertLess(took, 2)
        self.assertRegex(last_line(login_answer(proxy, "bob")[1]), rb"^l1 OK ")
        self.assertGreaterEqual(proxy.metric("imapscope_backend_checks_total",
                                             f'backend="127.0.0.1:{silent.port}",result="failed"'), 1)

    def test_a_backend_that_is_not_imap_is_down(self):
        other = SilentServer(self, greeting=b"220 smtp.example.org ESMTP ready\r\n")
        proxy = Routing(self, [("alice", other.port)], wait_up=False)
        wait_until("the SMTP server down", lambda: proxy.backends()[f"127.0.0.1:{other.port}"]["state"] == "down")
        unavailable(self, login_answer(proxy, "alice")[1], "l1", NO_MAIL_SERVER)

    def test_health_check_with_a_test_login(self):
        secrets = temp_dir(prefix="imapscope-routing-health-")
        good, bad = os.path.join(secrets, "good"), os.path.join(secrets, "bad")
        for path, password in ((good, USERS["bob"]), (bad, "not-bobs-password")):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(password + "\n")
        health = {"interval_ms": 500, "timeout_ms": 2000, "fall": 1, "rise": 1, "login_user": "bob"}
        marks = Marks()
        proxy = Routing(self, [("alice", A)], routing={"health": dict(health, login_password_file=good)})
        wait_until("bob's test login on A", lambda: "bob" in marks.logins(A), timeout=10)
        self.assertRegex(last_line(login_answer(proxy, "alice")[1]), rb"^l1 OK ")
        failing = Routing(self, [("alice", A)], routing={"health": dict(health, login_password_file=bad)},
                          wait_up=False)
        wait_until("A down for the failing test login", lambda: failing.backends()[name(A)]["state"] == "down")
        unavailable(self, login_answer(failing, "alice")[1], "l1", NO_MAIL_SERVER)
        for log in (proxy.log(), failing.log()):
            self.assertNotIn(USERS["bob"], log)
            self.assertNotIn("not-bobs-password", log)


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

    def test_sigterm_ends_routed_and_prelogin_sessions_with_bye(self):
        proxy = Routing(self, [("alice", A)], config={"timeouts": {"shutdown_grace_ms": 1000,
                                                                   "server_response_ms": 10000}})
        routed, _ = login_answer(proxy, "alice")
        routed.command("s1", "SELECT INBOX")
        routed.send(b"i1 IDLE\r\n")
        self.assertTrue(routed.read_line().startswith(b"+ "))
        waiting = proxy.raw()  # still in the pre-login phase
        started = time.monotonic()
        proxy.proc.proc.send_signal(signal.SIGTERM)
        for c in (routed, waiting):
            self.assertIn(b"* BYE", c.read_for(10))
        self.assertEqual(proxy.proc.proc.wait(timeout=20), 0)
        self.assertLess(time.monotonic() - started, 15)
        wait_until("alice's imap process on A gone", lambda: A.imap_pids("alice") == [])


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
        self.assertEqual(status, 200, body)
        self.assertIn(body["state"], ("up", "unknown"))  # its health, as the checks last saw it
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
        not_logged_in = proxy.raw()
        # One of alice's sessions waits in IDLE, as a mail client mostly does.
        alice[0].command("i0", "SELECT INBOX")
        alice[0].send(b"i1 IDLE\r\n")
        self.assertTrue(alice[0].read_line().startswith(b"+ "))
        status, body = proxy.proc.admin("POST", "/api/kick", {"user": "alice", "reason": "Moving your mailbox",
                                                               "spread_ms": 0})
        self.assertEqual((status, body), (200, {"kicked": 2}))
        for c in alice:
            got = c.read_for(5)
            self.assertIn(b"* BYE [UNAVAILABLE] Moving your mailbox\r\n", got)
            self.assertEqual(c.sock.recv(100), b"")  # closed after the BYE
        wait_until("alice's imap processes on A gone", lambda: A.imap_pids("alice") == [])
        # Others untouched, and a session not logged in is nobody's.
        self.assertTrue(bob.command("b2", "NOOP").startswith(b"b2 OK"))
        self.assertEqual(not_logged_in.command("n1", "NOOP"), b"n1 OK NOOP completed.\r\n")
        status, body = proxy.proc.admin("POST", "/api/kick", {"backend": name(B), "spread_ms": 0})
        self.assertEqual((status, body), (200, {"kicked": 2}))
        for c in (bob, carol):
            self.assertIn(b"* BYE [UNAVAILABLE] Disconnected by the administrator\r\n", c.read_for(5))
        wait_until("no sessions left", lambda: all(b["sessions"] == 0 for b in proxy.backends().values()))
        status, body = proxy.proc.admin("POST", "/api/kick", {"user": "nobody-here", "spread_ms": 0})
        self.assertEqual((status, body), (200, {"kicked": 0}))
        status, _ = proxy.proc.admin("POST", "/api/kick", {"user": "alice"}, token=False)
        self.assertEqual(status, 401)

    def test_kick_waits_for_a_message_boundary(self):
        # A FETCH of 16 MB (more than the sockets' buffers hold) in flight when the kick
        # comes: the client gets the whole literal it was promised, then the BYE; never
        # a message cut short, nor a BYE inside it.
        big = b"Subject: big\r\n\r\n" + (b"x" * 998 + b"\r\n") * 16000
        seed = imaplib.IMAP4("127.0.0.1", A.port, timeout=20)
        seed.login("dave", ALL_USERS["dave"])
        seed.append("INBOX", None, None, big)
        seed.logout()
        proxy = Routing(self, [("dave", A)])
        # A small receive buffer (set before connecting, so the window stays small): the
        # proxy can't have passed the whole message on when the kick comes.
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        s.settimeout(20)
        s.connect(("127.0.0.1", proxy.port))
        c = RawClient(s)
        proxy.clients.append(c)
        self.assertRegex(last_line(c.command("l1", f"LOGIN dave {ALL_USERS['dave']}")), rb"^l1 OK ")
        self.assertTrue(c.command("s1", "SELECT INBOX").splitlines()[-1].startswith(b"s1 OK"))
        c.send(b"f1 FETCH 1 BODY.PEEK[]\r\n")
        data = c.sock.recv(4096)
        status, body = proxy.proc.admin("POST", "/api/kick", {"user": "dave", "spread_ms": 0})
        self.assertEqual((status, body), (200, {"kicked": 1}))
        c.sock.settimeout(20)
        while True:
            chunk = c.sock.recv(1 << 20)
            if not chunk:
                break
            data += chunk
        head = re.search(rb"FETCH \(BODY\[\] \{(\d+)\}\r\n", data)
        self.assertIsNotNone(head, data[:200])
        start = head.end()
        self.assertEqual(int(head.group(1)), len(big))
        self.assertEqual(data[start:start + len(big)], big)
        bye = data.find(b"* BYE [UNAVAILABLE] Disconnected by the administrator\r\n")
        self.assertGreater(bye, start + len(big))
        self.assertIn(data[bye - 2:bye], (b"\r\n",))

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
        # Backend connections count as upstream connections, as in transparent mode.
        self.assertGreaterEqual(proxy.metric("imapscope_upstream_connects_total", 'result="ok"'), 3)
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
