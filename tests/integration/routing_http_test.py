"""Routing mode with an nginx auth_http-compatible lookup service: the real imapscope
in front of three real Dovecot instances (tests/support/routing_fixtures.py) asking a
recording service written for the test (tests/support/auth_http_service.py), all on
loopback.

- HttpRouting: the request's headers (nginx's, escaping included); the answers: OK
  with Auth-Server/Auth-Port, Auth-User/Auth-Pass, an error text (then the connection
  ends, as nginx does), Auth-Wait, WAIT, Dovecot's JSON and its nologin; a service
  down, slow or answering garbage (NO [UNAVAILABLE] within the timeout, a metric); a
  backend named that is down; the answer cache; the map asked first; Auth-SSL.
"""
import imaplib
import os
import ssl
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "support"))
from imap_fixtures import USERS, RawClient, free_port, wait_until  # noqa: E402
from auth_http_service import (GARBAGE, INVALID_LOGIN, AuthHttpService, dovecot_json, error, ok,  # noqa: E402
                               wait)
from routing_fixtures import (ALL_USERS, CERTS, MASTER, NO_LOGIN_SERVICE, NO_MAIL_SERVER, Marks,  # noqa: E402
                              Routing, b64, closed, last_line, login_answer, name, start_backends, stop_backends,
                              timed, unavailable)

A = B = C = None


def setUpModule():
    global A, B, C
    A, B, C = start_backends()


def tearDownModule():
    stop_backends()


# ------------------------------------------------------------------------ auth_http

class HttpRouting(unittest.TestCase):

    def routing(self, service, entries=None, routing=None, **kwargs):
        """imapscope asking service, with the three backends health-checked from the
        start (routing.backends): the pre-login capabilities are theirs from the first
        connection on."""
        settings = {"backends": [name(b) for b in (A, B, C)]}
        settings.update(routing or {})
        return Routing(self, entries, http=service.url, routing=settings, **kwargs)

    def service(self, **kwargs):
        service = AuthHttpService(passwords=ALL_USERS, **kwargs).start()
        self.addCleanup(service.stop)
        return service

    def test_routes_and_sends_nginx_headers(self):
        service = self.service()
        service.route("alice", ok("127.0.0.1", A.port))
        service.route("bob", ok("127.0.0.1", B.port))
        service.route("erin", ok("127.0.0.1", C.port))
        proxy = self.routing(service)
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
            # As nginx: no Auth-SSL on a plain leg, no Client-Host without a resolver.
            self.assertIsNone(request.header("Auth-SSL"))
            self.assertIsNone(request.header("Client-Host"))
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
        proxy = self.routing(service)
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
        # nginx says "plain" for AUTHENTICATE LOGIN too (its table maps both to it).
        self.assertEqual([r.header("Auth-Method") for r in service.requests], ["plain", "plain"])

    def test_auth_user_and_auth_pass_override_the_credentials(self):
        service = self.service()
        service.route("alice", ok("127.0.0.1", A.port, user="carol", password=ALL_USERS["carol"]))
        proxy = self.routing(service)
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
        proxy = self.routing(service)
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
        proxy = self.routing(service)
        c, answer = login_answer(proxy, "bob")
        self.assertEqual(answer, b"l1 NO Account suspended\r\n")

    def test_wrong_password_refused_by_the_service(self):
        service = self.service()
        service.route("alice", ok("127.0.0.1", A.port))
        proxy = self.routing(service)
        marks = Marks()
        c, answer = login_answer(proxy, "alice", "not-her-password")
        self.assertEqual(answer, f"l1 NO {INVALID_LOGIN}\r\n".encode())
        closed(self, c)
        self.assertEqual(marks.where("alice"), set())
        self.assertNotIn("not-her-password", proxy.log())

    def test_auth_wait_delays_the_no(self):
        service = self.service()
        service.route("bob", [error("Too many attempts", wait=2), ok("127.0.0.1", B.port)])
        proxy = self.routing(service)
        c = proxy.raw()
        took, answer = timed(c.command, "w1", f"LOGIN bob {USERS['bob']}")
        self.assertEqual(answer, b"w1 NO Too many attempts\r\n")
        self.assertGreaterEqual(took, 1.8)
        self.assertLess(took, 5)
        # With Auth-Wait the connection goes on: the next login is attempt 2.
        took, answer = timed(c.command, "w2", f"LOGIN bob {USERS['bob']}")
        self.assertRegex(last_line(answer), rb"^w2 OK ")
        self.assertEqual([r.header("Auth-Login-Attempt") for r in service.requests], ["1", "2"])

    def test_login_penalty_holds_the_login_before_the_lookup(self):
        service = self.service()
        # With Auth-Wait the connection goes on after the NO (0 would close it, as nginx does).
        service.invalid = error(INVALID_LOGIN, wait=1)
        service.route("alice", ok("127.0.0.1", A.port))
        proxy = self.routing(service, config={"login_penalty": {"enabled": True}})
        c = proxy.raw()
        self.assertEqual(c.command("p1", "LOGIN alice wrong-one"), f"p1 NO {INVALID_LOGIN}\r\n".encode())
        sent = time.monotonic()
        took, answer = timed(c.command, "p2", "LOGIN alice wrong-two")
        self.assertEqual(answer, f"p2 NO {INVALID_LOGIN}\r\n".encode())
        # The service heard of the second attempt only after the penalty's 2 s.
        self.assertEqual(len(service.requests), 2)
        self.assertGreaterEqual(service.requests[1].at - sent, 1.8)
        self.assertLess(took, 2 + 1 + 2.5)  # the penalty, the Auth-Wait, a margin

    def test_wait_status_asks_again(self):
        service = self.service()
        service.route("bob", [wait(1), ok("127.0.0.1", B.port)])
        proxy = self.routing(service)
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
        proxy = self.routing(service)
        marks = Marks()
        for user in ("bob", "alice"):
            c, answer = login_answer(proxy, user)
            self.assertRegex(last_line(answer), rb"^l1 OK ", (user, answer))
        marks.assert_landed(self, "bob", B, count=1)
        wait_until("carol (alice's destuser) on C", lambda: "carol" in marks.logins(C), timeout=10)

    def test_master_login_for_a_json_answer(self):
        service = self.service()
        service.route("carol", dovecot_json(host="127.0.0.1", port=A.port, destuser="carol.archive", master=True))
        proxy = self.routing(service, master=True)
        marks = Marks()
        c, answer = login_answer(proxy, "carol")
        self.assertRegex(last_line(answer), rb"^l1 OK ")
        wait_until("carol.archive's login on A", lambda: "carol.archive" in marks.logins(A), timeout=10)
        # The service checks the client's password before the master login is used.
        c, answer = login_answer(proxy, "carol", "not-carols-password")
        self.assertEqual(answer, f"l1 NO {INVALID_LOGIN}\r\n".encode())
        self.assertNotIn(MASTER[1], proxy.log())

    def test_oauth_mechanisms_reach_the_lookup(self):
        # The service gets the token as Auth-Pass; the backend (Dovecot without OAuth
        # here) answers the replayed AUTHENTICATE with its own NO, passed on unchanged.
        service = self.service()
        service.passwords = None
        service.route("alice", ok("127.0.0.1", A.port))
        proxy = self.routing(service)
        xoauth2 = b64("user=alice\x01auth=Bearer token-123\x01\x01")
        oauthbearer = b64("n,a=alice,\x01host=localhost\x01auth=Bearer token-456\x01\x01")
        for tag, mechanism, response in (("x1", "XOAUTH2", xoauth2), ("o1", "OAUTHBEARER", oauthbearer)):
            direct = RawClient(A.port)
            expected = direct.command(tag, f"AUTHENTICATE {mechanism} {response}")
            direct.close()
            c = proxy.raw()
            self.assertEqual(c.command(tag, f"AUTHENTICATE {mechanism} {response}"), expected)
        requests = service.requests
        self.assertEqual([(r.header("Auth-Method"), r.user, r.password) for r in requests],
                         [("xoauth2", "alice", "token-123"), ("oauthbearer", "alice", "token-456")])
        self.assertNotIn("token-123", proxy.log())

    def test_lookup_names_a_backend_that_is_down(self):
        service = self.service()
        service.route("alice", ok("127.0.0.1", free_port()))
        proxy = self.routing(service)
        c = proxy.raw()
        took, answer = timed(c.command, "d1", f"LOGIN alice {USERS['alice']}")
        unavailable(self, answer, "d1", NO_MAIL_SERVER)
        self.assertLess(took, 5)

    def test_service_down(self):
        service = self.service()
        url = service.url
        service.stop()  # nothing listens on its port now
        # With the cache on: an answer that could not be had is never cached.
        proxy = Routing(self, http=url, routing={"cache_hit_s": 300, "cache_miss_s": 10})
        c = proxy.raw()
        took, answer = timed(c.command, "d1", f"LOGIN alice {USERS['alice']}")
        unavailable(self, answer, "d1", NO_LOGIN_SERVICE)
        self.assertLess(took, 1 + 2)
        self.assertEqual(c.command("d2", "NOOP"), b"d2 OK NOOP completed.\r\n")
        self.assertEqual(proxy.metric("imapscope_route_lookups_total", 'source="http",result="unavailable"'), 1)
        self.assertNotIn(USERS["alice"], proxy.log())
        # Back up on the same port: the next login (the same credentials) works at once.
        service.start(int(url.split(":")[2].split("/")[0]))
        service.route("alice", ok("127.0.0.1", A.port))
        self.assertRegex(last_line(c.command("d3", f"LOGIN alice {USERS['alice']}")), rb"^d3 OK ")

    def test_capabilities_setting_overrides_the_learnt_list(self):
        service = self.service()
        service.route("alice", ok("127.0.0.1", A.port))
        proxy = self.routing(service, routing={"capabilities": "IMAP4rev1 ID AUTH=PLAIN"})
        c = proxy.raw()
        self.assertEqual(c.greeting, b"* OK [CAPABILITY IMAP4rev1 ID AUTH=PLAIN] IMAP proxy ready.\r\n")
        self.assertTrue(c.command("c1", "CAPABILITY").startswith(b"* CAPABILITY IMAP4rev1 ID AUTH=PLAIN\r\n"))
        # After login, the backend's own list all the same.
        self.assertRegex(last_line(c.command("l1", f"LOGIN alice {USERS['alice']}")),
                         rb"^l1 OK \[CAPABILITY IMAP4rev1 [^\]]*\bMOVE\b")

    def test_service_slow(self):
        service = self.service()
        service.route("alice", ok("127.0.0.1", A.port))
        service.slow(30)
        proxy = self.routing(service)  # http_timeout_ms: 1000
        c = proxy.raw()
        took, answer = timed(c.command, "s1", f"LOGIN alice {USERS['alice']}")
        unavailable(self, answer, "s1", NO_LOGIN_SERVICE)
        self.assertGreaterEqual(took, 0.9)
        self.assertLess(took, 1 + 2)
        self.assertEqual(proxy.metric("imapscope_route_lookups_total", 'source="http",result="unavailable"'), 1)
        self.assertGreater(proxy.metric("imapscope_route_lookup_seconds_sum", 'source="http"'), 0.9)

    def test_service_answers_garbage(self):
        service = self.service()
        proxy = self.routing(service)
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
        proxy = self.routing(service, routing={"cache_hit_s": 300, "cache_miss_s": 10})
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
        proxy = self.routing(service, [("alice", A)])
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
        proxy = self.routing(service, tls=True)
        s = imaplib.IMAP4_SSL("127.0.0.1", proxy.tls_port, ssl_context=ssl.create_default_context(
            cafile=CERTS["ca"]), timeout=20)
        self.assertEqual(s.login("alice", USERS["alice"])[0], "OK")
        s.logout()
        self.assertEqual(service.requests[-1].header("Auth-SSL"), "on")


if __name__ == "__main__":
    unittest.main()
