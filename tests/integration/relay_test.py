"""The relay against a real Dovecot, with Python's imaplib as the client.

Matrix: client leg {implicit TLS, STARTTLS, plain} x upstream {plain, implicit TLS,
STARTTLS}; byte-exact FETCH/APPEND from 0 bytes to 20 MB; failure cases asserted
from the client's side. Everything on 127.0.0.1.
"""
import hashlib
import imaplib
import os
import random
import socket
import ssl
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
from imap_fixtures import USERS, Dovecot, Imapscope, free_port  # noqa: E402

DOVECOT = None
PROXIES = {}  # upstream mode -> (Imapscope, plain port, tls port)


def setUpModule():
    global DOVECOT
    DOVECOT = Dovecot().start()
    upstreams = {
        "plain": ["--upstream", f"127.0.0.1:{DOVECOT.port}"],
        "tls": ["--upstream", f"localhost:{DOVECOT.tls_port}", "--upstream-tls", "--upstream-ca", DOVECOT.certs["ca"]],
        "starttls": ["--upstream", f"127.0.0.1:{DOVECOT.port}", "--upstream-starttls",
                     "--upstream-ca", DOVECOT.certs["ca"]],
    }
    for mode, flags in upstreams.items():
        plain, tls = free_port(), free_port()
        # The matrix's "plain" client leg logs in in clear on purpose.
        proxy = Imapscope(["--listen", f"127.0.0.1:{plain}", "--listen-tls", f"127.0.0.1:{tls}",
                           "--tls-cert", DOVECOT.certs["cert"], "--tls-key", DOVECOT.certs["key"],
                           "--plaintext-login", "allow", "--threads", "2"] + flags).start([plain, tls])
        PROXIES[mode] = (proxy, plain, tls)


def tearDownModule():
    for proxy, _, _ in PROXIES.values():
        proxy.stop()
    if DOVECOT:
        DOVECOT.stop()


def client_context():
    return ssl.create_default_context(cafile=DOVECOT.certs["ca"])


def connect(upstream, leg):
    _, plain, tls = PROXIES[upstream]
    if leg == "tls":
        return imaplib.IMAP4_SSL("127.0.0.1", tls, ssl_context=client_context(), timeout=60)
    c = imaplib.IMAP4("127.0.0.1", plain, timeout=60)
    if leg == "starttls":
        c.starttls(ssl_context=client_context())
    return c


def direct():
    return imaplib.IMAP4("127.0.0.1", DOVECOT.port, timeout=60)


def message(size, seed):
    """A message of exactly size bytes: CRLF lines of printable ASCII (carried unchanged)."""
    rng = random.Random(seed)
    header = b"Subject: test %d\r\n\r\n" % seed
    if size <= len(header):
        return (b"x" * size)
    body = bytearray()
    alphabet = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 !#$%&'*+-/=?^_`{|}~.,;:<>[]()"
    remaining = size - len(header)
    while remaining > 0:
        line_len = min(remaining, rng.randint(1, 998))
        if line_len <= 2:
            body += b"z" * line_len
            remaining -= line_len
            continue
        body += bytes(rng.choice(alphabet) for _ in range(line_len - 2)) + b"\r\n"
        remaining -= line_len
    return header + bytes(body)


def fetch_body(c, uid):
    typ, data = c.uid("FETCH", str(uid), "(BODY.PEEK[])")
    assert typ == "OK", (typ, data)
    for item in data:
        if isinstance(item, tuple):
            return item[1]
    return b""


class Matrix(unittest.TestCase):
    def run_session(self, upstream, leg):
        box = f"matrix-{upstream}-{leg}"
        c = connect(upstream, leg)
        caps = c.capability()[1][0].decode()
        if leg in ("tls", "starttls"):
            self.assertNotIn("STARTTLS", caps)
        else:
            self.assertIn("STARTTLS", caps)
        self.assertNotIn("COMPRESS", caps)
        self.assertEqual(c.login("alice", USERS["alice"])[0], "OK")
        c.create(box)
        typ, boxes = c.list()
        self.assertEqual(typ, "OK")
        self.assertTrue(any(box.encode() in b for b in boxes))
        self.assertEqual(c.select(box)[0], "OK")
        body = message(3000, hash(box) & 0xffff)
        self.assertEqual(c.append(box, None, None, body)[0], "OK")
        typ, data = c.search(None, "ALL")
        uid_typ, uids = c.uid("SEARCH", None, "ALL")
        uid = int(uids[0].split()[-1])
        self.assertEqual(fetch_body(c, uid), body)
        self.assertEqual(c.uid("STORE", str(uid), "+FLAGS", "(\\Flagged)")[0], "OK")
        typ, data = c.uid("FETCH", str(uid), "(FLAGS)")
        self.assertIn(b"\\Flagged", data[0])

        # IDLE, and a message delivered meanwhile by another connection.
        tag = c._new_tag()
        c.send(tag + b" IDLE\r\n")
        self.assertTrue(c.readline().startswith(b"+"))
        deliverer = direct()
        deliverer.login("bob" if False else "alice", USERS["alice"])
        deliverer.append(box, None, None, message(500, 7))
        deliverer.logout()
        deadline = time.monotonic() + 45  # Dovecot may poll every 30 s without inotify
        seen_exists = False
        while time.monotonic() < deadline and not seen_exists:
            line = c.readline()
            seen_exists = line.endswith(b"EXISTS\r\n")
        self.assertTrue(seen_exists, "no EXISTS during IDLE")
        c.send(b"DONE\r\n")
        while True:
            line = c.readline()
            if line.startswith(tag):
                self.assertIn(b"OK", line)
                break
        self.assertEqual(c.logout()[0], "BYE")


def add_matrix_case(upstream, leg):
    def test(self):
        self.run_session(upstream, leg)
    setattr(Matrix, f"test_client_{leg}_upstream_{upstream}", test)


for _upstream in ("plain", "tls", "starttls"):
    for _leg in ("tls", "starttls", "plain"):
        add_matrix_case(_upstream, _leg)


class ByteExact(unittest.TestCase):
    SIZES = [1, 100, 64 * 1024 + 1, 1024 * 1024, 20 * 1024 * 1024]

    def check(self, upstream, leg):
        box = f"exact-{upstream}-{leg}"
        c = connect(upstream, leg)
        c.login("bob", USERS["bob"])
        c.create(box)
        c.select(box)
        d = direct()
        d.login("bob", USERS["bob"])
        d.select(box)
        # 0 bytes: Dovecot refuses to store an empty message; the client must get the
        # server's own answer, as it would directly.
        through = c.append(box, None, None, b"")
        straight = d.append(box, None, None, b"")
        self.assertEqual(through[0], straight[0])
        self.assertEqual(through[1][0].split(b" (")[0], straight[1][0].split(b" (")[0])
        for i, size in enumerate(self.SIZES):
            body = message(size, 1000 + i)
            digest = hashlib.sha256(body).hexdigest()
            typ, resp = c.append(box, None, None, body)
            self.assertEqual(typ, "OK", resp)
            uid = int(resp[0].split(b"]")[0].split()[-1])  # [APPENDUID v uid]
            through = fetch_body(c, uid)
            d.noop()  # let the direct session see the new message
            straight = fetch_body(d, uid)
            self.assertEqual(hashlib.sha256(through).hexdigest(), digest, f"through the proxy, {size} bytes")
            self.assertEqual(hashlib.sha256(straight).hexdigest(), digest, f"direct, {size} bytes")
        c.logout()
        d.logout()

    def test_tls_client_plain_upstream(self):
        self.check("plain", "tls")

    def test_tls_both_legs(self):
        self.check("tls", "tls")


def raw_session(port, use_tls=False):
    s = socket.create_connection(("127.0.0.1", port), timeout=20)
    if use_tls:
        s = client_context().wrap_socket(s, server_hostname="localhost")
    return s


def read_tagged(s, tag, limit=1 << 20):
    """Reads until the line of the tagged response to tag is complete."""
    data = b""
    while len(data) < limit:
        at = data.find(b"\r\n" + tag + b" ") if not data.startswith(tag + b" ") else 0
        if at >= 0 and data.find(b"\r\n", at + 2) >= 0:
            return data
        chunk = s.recv(65536)
        if not chunk:
            return data
        data += chunk
    return data


def read_until(s, marker, limit=1 << 20):
    data = b""
    while marker not in data and len(data) < limit:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


class Failures(unittest.TestCase):
    def test_upstream_unreachable_gives_bye(self):
        dead = free_port()
        port = free_port()
        proxy = Imapscope(["--listen", f"127.0.0.1:{port}", "--upstream", f"127.0.0.1:{dead}"]).start([port])
        try:
            s = raw_session(port)
            data = read_until(s, b"\r\n")
            self.assertTrue(data.startswith(b"* BYE [UNAVAILABLE]"), data)
            self.assertEqual(s.recv(100), b"")  # then a clean close
        finally:
            proxy.stop()
        self.assertIn("event=upstream_failed", proxy.log())

    def test_upstream_certificate_refused_gives_bye(self):
        port = free_port()
        # The system store doesn't know the test CA: verification must fail.
        proxy = Imapscope(["--listen", f"127.0.0.1:{port}", "--upstream", f"localhost:{DOVECOT.tls_port}",
                           "--upstream-tls"]).start([port])
        try:
            s = raw_session(port)
            self.assertTrue(read_until(s, b"\r\n").startswith(b"* BYE [UNAVAILABLE]"))
        finally:
            proxy.stop()
        self.assertIn("reason=upstream_tls_failed", proxy.log())

    def test_upstream_closing_gives_bye(self):
        # A server that greets and hangs up: the client must hear BYE, not silence.
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)

        def greet_and_hang_up(conn):
            conn.sendall(b"* OK fake ready\r\n")
            conn.recv(100)
            conn.close()

        # Every connection (the readiness probe's too) in a thread of its own: both
        # test sessions are opened before the first is read, and their upstream
        # connections may arrive in either order.
        def serve():
            while True:
                try:
                    conn, _ = listener.accept()
                except OSError:
                    return
                threading.Thread(target=greet_and_hang_up, args=(conn,), daemon=True).start()
        threading.Thread(target=serve, daemon=True).start()
        port, tls_port = free_port(), free_port()
        proxy = Imapscope(["--listen", f"127.0.0.1:{port}", "--listen-tls", f"127.0.0.1:{tls_port}",
                           "--tls-cert", DOVECOT.certs["cert"], "--tls-key", DOVECOT.certs["key"],
                           "--upstream", f"127.0.0.1:{listener.getsockname()[1]}"]).start([port, tls_port])
        try:
            # Over TLS too: the BYE must come before a clean close, not a TLS alert.
            for s in (raw_session(port), raw_session(tls_port, use_tls=True)):
                self.assertEqual(read_until(s, b"\r\n"), b"* OK fake ready\r\n")
                s.sendall(b"a1 NOOP\r\n")
                data = read_until(s, b"BYE")
                self.assertIn(b"* BYE [UNAVAILABLE]", data)
                s.close()
        finally:
            proxy.stop()
            listener.close()

    def test_too_long_line_gets_tagged_bad_and_session_goes_on(self):
        s = raw_session(PROXIES["plain"][1])
        read_until(s, b"\r\n")
        s.sendall(b"a1 SEARCH TEXT \"" + b"x" * (70 * 1024) + b"\"\r\na2 NOOP\r\n")
        data = read_tagged(s, b"a2")
        self.assertIn(b"a1 BAD [TOOBIG]", data)
        self.assertIn(b"a2 OK", data)
        s.close()

    def test_starttls_injection_is_dropped(self):
        s = raw_session(PROXIES["plain"][1])
        read_until(s, b"\r\n")
        # A LOGIN pipelined in plaintext after STARTTLS must never reach the server.
        s.sendall(b"a1 STARTTLS\r\na2 LOGIN alice " + USERS["alice"].encode() + b"\r\n")
        self.assertIn(b"a1 OK", read_tagged(s, b"a1"))
        t = client_context().wrap_socket(s, server_hostname="localhost")
        t.sendall(b"a3 SELECT INBOX\r\n")
        data = read_tagged(t, b"a3")
        self.assertNotIn(b"a2 OK", data)
        self.assertRegex(data, rb"a3 (BAD|NO)")
        t.close()

    def test_client_vanishing_mid_literal_closes_upstream(self):
        proxy = PROXIES["plain"][0]
        s = raw_session(PROXIES["plain"][1])
        read_until(s, b"\r\n")
        s.sendall(b"a1 LOGIN alice " + USERS["alice"].encode() + b"\r\n")
        read_tagged(s, b"a1")
        s.sendall(b"a2 APPEND INBOX {100000}\r\n")
        self.assertTrue(read_until(s, b"\r\n").startswith(b"+"))
        s.sendall(b"x" * 5000)
        s.close()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and "bytes_from_client=5" not in proxy.log():
            time.sleep(0.1)
        self.assertRegex(proxy.log(), r"reason=client_closed .*bytes_from_client=5\d{3} ")


class Drain(unittest.TestCase):
    def test_sighup_keeps_running_and_keeps_sessions(self):
        proxy, plain, _ = PROXIES["plain"]
        c = imaplib.IMAP4("127.0.0.1", plain, timeout=30)
        c.login("alice", USERS["alice"])
        for _ in range(5):
            proxy.proc.send_signal(1)
            time.sleep(0.05)
        self.assertIsNone(proxy.proc.poll())
        self.assertEqual(c.noop()[0], "OK")
        c.logout()

    def test_sigterm_drains_idle_sessions_with_bye(self):
        port = free_port()
        config = os.path.join(DOVECOT.dir, "drain.json")
        with open(config, "w") as f:
            f.write('{"timeouts": {"shutdown_grace_ms": 1000}, "listeners": [{"listen": "127.0.0.1:%d",'
                    ' "upstream": {"addresses": ["127.0.0.1:%d"]}}]}' % (port, DOVECOT.port))
        proxy = Imapscope(["--config", config]).start([port])
        c = imaplib.IMAP4("127.0.0.1", port, timeout=30)
        c.login("alice", USERS["alice"])
        c.select("INBOX")
        tag = c._new_tag()
        c.send(tag + b" IDLE\r\n")
        self.assertTrue(c.readline().startswith(b"+"))
        started = time.monotonic()
        proxy.proc.send_signal(15)
        line = c.readline()
        while line and not line.startswith(b"* BYE"):
            line = c.readline()
        self.assertTrue(line.startswith(b"* BYE"), line)
        self.assertEqual(proxy.proc.wait(timeout=20), 0)
        self.assertLess(time.monotonic() - started, 15)
        self.assertIn("reason=shutdown", proxy.log())


if __name__ == "__main__":
    unittest.main(verbosity=2)
