"""The admin address as a browser, a web page and a careless client would meet it,
end to end against the real binary in front of a real Dovecot, on 127.0.0.1:
- Guards, Addresses: foreign Host (DNS rebinding), cross-origin and text/plain changes, the
  cookie a browser logs in with, framing and caching headers on every answer, HEAD;
- Parser: RFC 9112 on the real socket (raw bytes): each malformed request gets 400
  and the connection closes;
- Budgets: 100 idle connections and every event stream open, /healthz still answers
  at once; slow clients cut off; a stream ends at its time limit;
- MetricsAddress: /metrics and the probes on an address of their own, open, and
  nothing else there."""
import http.client
import imaplib
import json
import os
import shutil
import socket
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "support"))
from imap_fixtures import temp_dir, USERS, Dovecot, Imapscope, free_port, wait_until  # noqa: E402

DOVECOT = None
SECURITY_HEADERS = {"x-frame-options": "DENY", "x-content-type-options": "nosniff", "cache-control": "no-store",
                    "referrer-policy": "no-referrer"}


def setUpModule():
    global DOVECOT
    DOVECOT = Dovecot().start()


def tearDownModule():
    DOVECOT.stop()


def start_proxy(test, config=None, args=()):
    """imapscope with a transcripts folder (for captures), user names in clear."""
    folder = temp_dir(prefix="imapscope-admin-")
    test.addCleanup(shutil.rmtree, folder, True)
    port = free_port()
    settings = {"user_names": "clear",
                "transcripts": {"dir": os.path.join(folder, "transcripts"), "select": {"sample": 0}},
                "listeners": [{"listen": f"127.0.0.1:{port}",
                               "upstream": {"addresses": [f"127.0.0.1:{DOVECOT.port}"]}}]}
    settings.update(config or {})
    path = os.path.join(folder, "config.json")
    with open(path, "w") as f:
        json.dump(settings, f)
    proxy = Imapscope(["--config", path] + list(args), log_dir=os.path.join(folder, "log"))
    os.makedirs(proxy.log_dir)
    proxy.start([port])  # the admin and metrics addresses are up before the listeners
    test.addCleanup(proxy.stop)
    proxy.imap_port = port
    return proxy


def raw(port, data, timeout=10):
    """Sends bytes, reads until the server closes: (the answer, seconds it took to close)."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        out = b""
        while True:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:  # refused with bytes of ours still unread: the answer came first
                break
            if not chunk:
                break
            out += chunk
    return out, time.monotonic() - started


def parse_answer(answer):
    """(status, {lower name: value}, body) of a raw HTTP answer."""
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(lines[0].split()[1]), headers, body


def request(port, method, path, headers=None, body=None):
    """One request with http.client: (status, {lower name: value}, body bytes)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


class Guards(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.proxy = start_proxy(cls, {"admin_hosts": ["imapscope.test"]})
        cls.token = cls.proxy.admin_token()
        cls.port = cls.proxy.admin_port
        cls.bearer = {"Authorization": "Bearer " + cls.token}

    @classmethod
    def addCleanup(cls, function, *args):  # setUpClass's cleanups, run at tearDownClass
        cls.addClassCleanup(function, *args)

    def assertSecure(self, headers, what):
        for name, value in SECURITY_HEADERS.items():
            self.assertEqual(headers.get(name), value, f"{what}: {name}")
        self.assertIn("frame-ancestors 'none'", headers.get("content-security-policy", ""), what)

    def test_foreign_host_refused(self):
        for host in ("evil.example:%d" % self.port, "evil.example", "localhost.evil.example:%d" % self.port,
                     "127.0.0.1.evil.example:%d" % self.port, ""):
            status, headers, body = request(self.port, "GET", "/api/sessions", {"Host": host, **self.bearer})
            self.assertEqual(status, 421, host)
            self.assertNotIn(b"sessions\"", body)
            self.assertSecure(headers, host)
        # The probes and metrics too: a rebinding page reads nothing at all.
        self.assertEqual(request(self.port, "GET", "/metrics", {"Host": "evil.example:%d" % self.port})[0], 421)
        for host in ("127.0.0.1:%d" % self.port, "localhost:%d" % self.port, "LOCALHOST:%d" % self.port,
                     "imapscope.test", "imapscope.test:443"):
            self.assertEqual(request(self.port, "GET", "/api/sessions", {"Host": host, **self.bearer})[0], 200, host)

    def test_state_changes_only_same_origin_json_with_the_credential(self):
        capture = json.dumps({"user": "nobody-here", "duration_s": 60})
        json_type = {"Content-Type": "application/json"}
        origin = f"http://127.0.0.1:{self.port}"
        # A page elsewhere: refused whether it brings the credential or not.
        for headers in ({"Origin": "http://evil.example"}, {"Origin": "null"},
                        {"Origin": f"http://127.0.0.1:{self.port + 1}"}, {"Origin": f"https://127.0.0.1:{self.port}"},
                        {"Origin": f"http://localhost:{self.port}"}, {"Origin": "http://imapscope.test.evil.example"},
                        {"Sec-Fetch-Site": "cross-site"}, {"Sec-Fetch-Site": "same-site"}):
            status, answer_headers, body = request(self.port, "POST", "/api/captures", {**self.bearer, **json_type,
                                                                                        **headers}, capture)
            self.assertEqual(status, 403, (headers, body))
            self.assertSecure(answer_headers, "403")
        self.assertEqual(request(self.port, "POST", "/api/captures", {"Origin": "http://evil.example", **json_type},
                                 capture)[0], 401)
        # What a form can send: text/plain (or none, or a form encoding).
        for content_type in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
                             None):
            headers = {**self.bearer}
            if content_type:
                headers["Content-Type"] = content_type
            status, _, body = request(self.port, "POST", "/api/captures", headers, capture)
            self.assertEqual(status, 415, (content_type, body))
        self.assertEqual(request(self.port, "DELETE", "/api/captures/1", self.bearer)[0], 415)
        self.assertEqual(self.proxy.admin_get("/api/captures")["captures"], [])
        # The page's own request: same origin, JSON, credential.
        status, _, body = request(self.port, "POST", "/api/captures",
                                  {**self.bearer, **json_type, "Origin": origin, "Sec-Fetch-Site": "same-origin"},
                                  capture)
        self.assertEqual(status, 201, body)
        number = json.loads(body)["id"]
        status, _, _ = request(self.port, "DELETE", f"/api/captures/{number}", {**self.bearer, **json_type,
                                                                                "Origin": origin})
        self.assertEqual(status, 204)
        # Behind a TLS reverse proxy with a listed name (which may rewrite the Host).
        status, _, body = request(self.port, "POST", "/api/captures",
                                  {**self.bearer, **json_type, "Origin": "https://imapscope.test"}, capture)
        self.assertEqual(status, 201, body)
        self.assertEqual(self.proxy.admin("DELETE", f"/api/captures/{json.loads(body)['id']}")[0], 204)

    def test_cookie_login(self):
        status, headers, _ = request(self.port, "GET", "/?token=wrong-" + self.token)
        self.assertEqual(status, 401)
        self.assertNotIn("set-cookie", headers)
        status, headers, _ = request(self.port, "GET", "/?token=" + self.token)
        self.assertEqual(status, 303)
        self.assertEqual(headers["location"], "/")
        self.assertSecure(headers, "303")
        cookie = headers["set-cookie"]
        attributes = [a.strip() for a in cookie.split(";")]
        self.assertIn("HttpOnly", attributes)
        self.assertIn("SameSite=Strict", attributes)
        self.assertIn("Path=/", attributes)
        pair = attributes[0]
        self.assertTrue(pair.startswith(f"imapscope_admin_{self.port}="), pair)
        self.assertNotIn(self.token, cookie)
        status, _, page = request(self.port, "GET", "/", {"Cookie": "other=1; " + pair})
        self.assertEqual(status, 200)
        self.assertIn(b"live sessions", page)
        self.assertEqual(request(self.port, "GET", "/api/sessions", {"Cookie": pair})[0], 200)
        self.assertEqual(request(self.port, "GET", "/api/sessions", {"Cookie": pair[:-1] + "0"})[0], 401)
        # The cookie is a credential like the bearer token, and no more.
        self.assertEqual(request(self.port, "POST", "/api/captures",
                                 {"Cookie": pair, "Content-Type": "application/json",
                                  "Origin": "http://evil.example"}, "{}")[0], 403)

    def test_security_headers_on_every_answer(self):
        page_status, page_headers, _ = request(self.port, "GET", "/", self.bearer)
        self.assertEqual(page_status, 200)
        csp = page_headers["content-security-policy"]
        self.assertIn("default-src 'self'", csp)  # the page's own directives kept
        self.assertIn("script-src 'unsafe-inline'", csp)
        answers = [("page", page_headers)]
        for method, path, headers in (("GET", "/api/sessions", self.bearer), ("GET", "/api/sessions", {}),
                                      ("GET", "/nothing", self.bearer), ("GET", "/metrics", {}),
                                      ("GET", "/healthz", {}), ("GET", "/readyz", {}), ("HEAD", "/", self.bearer),
                                      ("PUT", "/api/captures", self.bearer), ("GET", "/", {})):
            status, answer_headers, _ = request(self.port, method, path, headers)
            answers.append((f"{method} {path} {status}", answer_headers))
        answers.append(("400", parse_answer(raw(self.port, b"GET / HTTP/1.1\r\nHost : x\r\n\r\n")[0])[1]))
        for what, headers in answers:
            self.assertSecure(headers, what)

    def test_head_has_no_body(self):
        for path, headers in (("/", self.bearer), ("/api/sessions", self.bearer), ("/healthz", {}), ("/metrics", {}),
                              ("/api/sessions", {})):
            get_status, get_headers, get_body = request(self.port, "GET", path, headers)
            answer, _ = raw(self.port, f"HEAD {path} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n".encode() +
                            b"".join(f"{k}: {v}\r\n".encode() for k, v in headers.items()) + b"\r\n")
            status, head_headers, body = parse_answer(answer)
            self.assertEqual(status, get_status, path)
            self.assertEqual(body, b"", path)
            self.assertEqual(head_headers["content-type"], get_headers["content-type"], path)
            if path not in ("/metrics", "/api/sessions"):  # these change between two requests
                self.assertEqual(int(head_headers["content-length"]), len(get_body), path)


class Addresses(unittest.TestCase):
    """The Host rule on an IPv6 loopback and on a wildcard admin address."""

    def ask(self, connect_to, port, host, token):
        conn = http.client.HTTPConnection(connect_to, port, timeout=20)
        try:
            conn.request("GET", "/api/sessions", headers={"Host": host, "Authorization": "Bearer " + token})
            return conn.getresponse().status
        finally:
            conn.close()

    def test_ipv6_loopback(self):
        port = free_port()
        proxy = start_proxy(self, args=["--admin", f"[::1]:{port}"])
        token = proxy.admin_token()
        wait_until("the admin address on ::1", lambda: self.ask("::1", port, f"[::1]:{port}", token) == 200)
        self.assertEqual(self.ask("::1", port, f"localhost:{port}", token), 200)
        self.assertEqual(self.ask("::1", port, f"127.0.0.1:{port}", token), 421)  # another address
        self.assertEqual(self.ask("::1", port, f"evil.example:{port}", token), 421)
        self.assertEqual(self.ask("::1", port, f"[::1]:{port + 1}", token), 421)

    def test_wildcard_takes_any_ip_but_no_name(self):
        port = free_port()
        proxy = start_proxy(self, args=["--admin", f"0.0.0.0:{port}"])
        token = proxy.admin_token()
        wait_until("the admin address", lambda: self.ask("127.0.0.1", port, f"127.0.0.1:{port}", token) == 200)
        self.assertEqual(self.ask("127.0.0.1", port, f"10.1.2.3:{port}", token), 200)  # a pod's IP
        self.assertEqual(self.ask("127.0.0.1", port, f"localhost:{port}", token), 421)
        self.assertEqual(self.ask("127.0.0.1", port, f"imapscope.example:{port}", token), 421)
        # Any IP names this address, but a change must come from the page's own origin.
        status, _, _ = request(port, "POST", "/api/captures", {"Authorization": "Bearer " + token,
                                                               "Content-Type": "application/json",
                                                               "Origin": f"http://10.6.6.6:{port}"}, "{}")
        self.assertEqual(status, 403)


class Parser(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.proxy = start_proxy(cls)
        cls.port = cls.proxy.admin_port
        cls.host = f"Host: 127.0.0.1:{cls.port}\r\n".encode()

    @classmethod
    def addCleanup(cls, function, *args):
        cls.addClassCleanup(function, *args)

    def refused(self, data, status=400):
        answer, took = raw(self.port, data)
        self.assertTrue(answer.startswith(f"HTTP/1.1 {status} ".encode()), (data[:200], answer[:200]))
        self.assertIn(b"Connection: close\r\n", answer)
        self.assertLess(took, 5, "the connection closes after the refusal")
        return json.loads(parse_answer(answer)[2])["error"]

    def test_malformed_requests_get_400_and_the_connection_closes(self):
        h = self.host
        body = b'{"user": "alice"}'
        cases = {
            "duplicate Content-Length": b"POST /api/captures HTTP/1.1\r\n" + h +
            b"Content-Length: 17\r\nContent-Length: 17\r\n\r\n" + body,
            "Content-Length not digits": b"POST /api/captures HTTP/1.1\r\n" + h + b"Content-Length: 1_7\r\n\r\n" + body,
            "Content-Length signed": b"POST /api/captures HTTP/1.1\r\n" + h + b"Content-Length: +17\r\n\r\n" + body,
            "Transfer-Encoding with Content-Length": b"POST /api/captures HTTP/1.1\r\n" + h +
            b"Transfer-Encoding: chunked\r\nContent-Length: 17\r\n\r\n" + body,
            "obs-fold": b"GET /healthz HTTP/1.1\r\n" + h + b"X-A: b\r\n c\r\n\r\n",
            "tab fold": b"GET /healthz HTTP/1.1\r\n" + h + b"X-A: b\r\n\tc\r\n\r\n",
            "space before colon": b"GET /healthz HTTP/1.1\r\nHost : 127.0.0.1\r\n\r\n",
            "bare LF": b"GET /healthz HTTP/1.1\n" + h + b"\r\n",
            "bare LF at the end": b"GET /healthz HTTP/1.1\r\n" + h + b"\n",
            "bare CR": b"GET /healthz HTTP/1.1\r\nX-A: b\rc\r\n" + h + b"\r\n",
            "NUL in a value": b"GET /healthz HTTP/1.1\r\n" + h + b"X-A: b\x00c\r\n\r\n",
            "control in a name": b"GET /healthz HTTP/1.1\r\n" + h + b"X\x01A: b\r\n\r\n",
            "target with a space": b"GET /health z HTTP/1.1\r\n" + h + b"\r\n",
            "absolute target": b"GET http://evil.example/healthz HTTP/1.1\r\n" + h + b"\r\n",
            "target with a fragment": b"GET /healthz#x HTTP/1.1\r\n" + h + b"\r\n",
            "bad escape": b"GET /health%zz HTTP/1.1\r\n" + h + b"\r\n",
            "no Host": b"GET /healthz HTTP/1.1\r\n\r\n",
            "two Hosts": b"GET /healthz HTTP/1.1\r\n" + h + h + b"\r\n",
            "not HTTP": b"HELLO\r\n\r\n",
        }
        for what, data in cases.items():
            with self.subTest(what):
                self.refused(data)
        self.assertIn("Transfer-Encoding", self.refused(b"POST /api/captures HTTP/1.1\r\n" + h +
                                                        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 501))
        self.refused(b"GET /healthz HTTP/2.0\r\n" + h + b"\r\n", 505)
        self.refused(b"GET /healthz HTTP/1.1\r\n" + h + b"X-Big: " + b"a" * 20000 + b"\r\n\r\n", 431)

    def test_good_requests_pass(self):
        answer, _ = raw(self.port, b"GET /healthz HTTP/1.1\r\n" + self.host + b"X-A:b\r\nX-B: \t c \r\n\r\n")
        self.assertEqual(parse_answer(answer)[:1], (200,))
        answer, _ = raw(self.port, b"GET /readyz HTTP/1.0\r\n\r\n")  # HAProxy's httpchk: no Host
        self.assertEqual(parse_answer(answer)[0], 200)
        answer, _ = raw(self.port, b"GET /healthz?x=%41&y HTTP/1.1\r\n" + self.host + b"\r\n")
        self.assertEqual(parse_answer(answer)[0], 200)


class Budgets(unittest.TestCase):
    def test_health_answers_under_idle_connections_and_every_stream_open(self):
        proxy = start_proxy(self)
        token = proxy.admin_token()
        alice = imaplib.IMAP4("127.0.0.1", proxy.imap_port)
        self.addCleanup(alice.logout)
        alice.login("alice", USERS["alice"])
        session = wait_until("alice's session", lambda: [s for s in proxy.admin_get("/api/sessions")["sessions"]
                                                           if s["user"] == "alice"])[0]
        streams = []

        def open_stream():
            conn = http.client.HTTPConnection("127.0.0.1", proxy.admin_port, timeout=20)
            conn.request("GET", f"/api/sessions/{session['id']}/events",
                         headers={"Accept": "text/event-stream", "Authorization": "Bearer " + token})
            r = conn.getresponse()
            streams.append(conn)
            return r

        for _ in range(16):  # admin_limits.streams by default
            r = open_stream()
            self.assertEqual(r.status, 200)
            self.assertEqual(r.getheader("Content-Type"), "text/event-stream")
        self.addCleanup(lambda: [c.close() for c in streams])
        self.assertEqual(open_stream().status, 503)  # one more than the budget
        idle = []
        self.addCleanup(lambda: [s.close() for s in idle])
        for _ in range(100):
            idle.append(socket.create_connection(("127.0.0.1", proxy.admin_port), timeout=10))
        # Half a request head from some of them, slow on purpose.
        for s in idle[::3]:
            s.sendall(b"GET /api/sessions HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        for probe in ("/healthz", "/readyz", "/metrics"):
            started = time.monotonic()
            status, _, _ = request(proxy.admin_port, "GET", probe)
            self.assertEqual(status, 200, probe)
            self.assertLess(time.monotonic() - started, 2.0, probe)
        # The operator gets in too.
        self.assertEqual(proxy.admin("GET", "/api/sessions")[0], 200)

    def test_slow_clients_cut_off_and_streams_time_limited(self):
        proxy = start_proxy(self, {"admin_limits": {"head_timeout_ms": 500, "stream_max_s": 1}})
        token = proxy.admin_token()
        # A connection that sends nothing, or half a head, is closed after head_timeout_ms.
        for data in (b"", b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n"):
            answer, took = raw(proxy.admin_port, data)
            self.assertEqual(answer, b"")
            self.assertGreaterEqual(took, 0.4)
            self.assertLess(took, 5)
        bob = imaplib.IMAP4("127.0.0.1", proxy.imap_port)
        self.addCleanup(bob.logout)
        bob.login("bob", USERS["bob"])
        session = wait_until("bob's session", lambda: [s for s in proxy.admin_get("/api/sessions")["sessions"]
                                                       if s["user"] == "bob"])[0]
        started = time.monotonic()
        answer, took = raw(proxy.admin_port, f"GET /api/sessions/{session['id']}/events?stream=1 HTTP/1.1\r\n"
                           f"Host: 127.0.0.1:{proxy.admin_port}\r\nAuthorization: Bearer {token}\r\n\r\n".encode())
        self.assertEqual(parse_answer(answer)[0], 200)
        self.assertIn(b"data: ", answer)
        self.assertIn(b": time limit of this stream reached", answer)
        self.assertNotIn(b"event: end", answer)  # bob is still there
        self.assertGreaterEqual(time.monotonic() - started, 0.9)
        self.assertLess(took, 8)


class MetricsAddress(unittest.TestCase):
    def test_metrics_and_probes_alone_and_open(self):
        metrics = free_port()
        proxy = start_proxy(self, args=["--metrics", f"127.0.0.1:{metrics}"])
        for path in ("/metrics", "/healthz", "/readyz"):
            status, headers, body = request(metrics, "GET", path)
            self.assertEqual(status, 200, path)
            self.assertEqual(headers["x-frame-options"], "DENY")
        self.assertIn(b"imapscope_", request(metrics, "GET", "/metrics")[2])
        token = {"Authorization": "Bearer " + proxy.admin_token()}
        for path in ("/api/sessions", "/api/captures", "/api/findings", "/", "/?token=" + proxy.admin_token()):
            status, _, body = request(metrics, "GET", path, token)
            self.assertEqual(status, 404, path)
            self.assertNotIn(b"sessions\"", body)
        self.assertEqual(request(metrics, "POST", "/api/captures", {**token, "Content-Type": "application/json"},
                                 '{"user": "alice"}')[0], 404)
        self.assertEqual(request(metrics, "GET", "/metrics", {"Host": f"evil.example:{metrics}"})[0], 421)
        # The admin address is as before.
        self.assertEqual(proxy.admin("GET", "/api/sessions")[0], 200)
        self.assertIn(f"metrics_listening address=127.0.0.1:{metrics}", proxy.log())

    def test_metrics_address_with_the_admin_address_off(self):
        metrics = free_port()
        proxy = start_proxy(self, args=["--admin", "none", "--metrics", f"127.0.0.1:{metrics}"])
        wait_until("the metrics address", lambda: request(metrics, "GET", "/healthz")[0] == 200)
        self.assertIn(b"imapscope_", request(metrics, "GET", "/metrics")[2])
        self.assertFalse(os.path.exists(os.path.join(proxy.state_dir, "admin-token")))


if __name__ == "__main__":
    unittest.main()
