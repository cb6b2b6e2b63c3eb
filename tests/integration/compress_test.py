"""COMPRESS=DEFLATE (RFC 4978) on the client leg, against a real Dovecot that offers
no compression itself: imapscope --compress offers its own after login. Against a
Dovecot that offers it (imap_zlib): the proxy's own COMPRESS towards it, and the
client's passed through (--compress-pass-through).

A Python client with zlib streams checks byte-exact APPEND/FETCH round trips of
messages up to 3 MB, an IDLE notification delivered compressed, and that a broken
stream ends only its own session; mbsync (isync, which turns COMPRESS on when
offered) syncs the same as without the proxy. The proxy sees plaintext: its metrics
count the commands sent compressed.
"""
import hashlib
import imaplib
import os
import random
import re
import socket
import ssl
import sys
import tempfile
import time
import unittest
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "support"))
from imap_fixtures import (temp_dir, USERS, Dovecot, Imapscope, RawClient, free_port, mbsync_pull, metric_sum,  # noqa: E402
                           wait_until)

DOVECOT = None
PROXY = None
PORTS = {}


def setUpModule():
    global DOVECOT, PROXY
    DOVECOT = Dovecot(extra_config="imap_idle_notify_interval = 1 secs").start()
    PORTS["plain"], PORTS["tls"] = free_port(), free_port()
    PROXY = Imapscope(["--listen", f"127.0.0.1:{PORTS['plain']}", "--listen-tls", f"127.0.0.1:{PORTS['tls']}",
                       "--tls-cert", DOVECOT.certs["cert"], "--tls-key", DOVECOT.certs["key"],
                       "--upstream", f"127.0.0.1:{DOVECOT.port}", "--compress", "--threads", "2"])
    PROXY.start([PORTS["plain"], PORTS["tls"]])


def tearDownModule():
    if PROXY:
        PROXY.stop()
    if DOVECOT:
        DOVECOT.stop()


def message(size, seed):
    """Exactly size bytes of CRLF lines of printable ASCII, some of it repetitive."""
    rng = random.Random(seed)
    words = [b"Received:", b"from", b"mail.example.org", b"Subject:", b"hello", b"world", b"=?UTF-8?Q?caf=C3=A9?="]
    out = bytearray(b"Subject: compress %d\r\n\r\n" % seed)
    while len(out) < size:
        line = b" ".join(rng.choice(words) for _ in range(rng.randint(1, 12)))
        if rng.random() < 0.3:
            line = bytes(rng.randint(33, 126) for _ in range(rng.randint(1, 200)))
        out += line + b"\r\n"
    del out[size:]
    if size >= 2:
        out[-2:] = b"\r\n"
    return bytes(out)


class Deflated:
    """An IMAP client speaking through zlib raw-DEFLATE streams (after COMPRESS)."""

    def __init__(self, sock, pending=b""):
        self.sock = sock
        self.out = zlib.compressobj(6, zlib.DEFLATED, -15)
        self.inflate = zlib.decompressobj(-15)
        self.buffer = self.inflate.decompress(pending)
        self.wire_in = len(pending)
        self.plain_in = len(self.buffer)

    def send(self, data):
        self.sock.sendall(self.out.compress(data) + self.out.flush(zlib.Z_SYNC_FLUSH))

    def _fill(self):
        chunk = self.sock.recv(1 << 16)
        if not chunk:
            raise ConnectionError("closed")
        self.wire_in += len(chunk)
        more = self.inflate.decompress(chunk)
        self.plain_in += len(more)
        self.buffer += more

    def read_line(self):
        while b"\r\n" not in self.buffer:
            self._fill()
        line, self.buffer = self.buffer.split(b"\r\n", 1)
        return line + b"\r\n"

    def read_exact(self, n):
        while len(self.buffer) < n:
            self._fill()
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data

    def until_tagged(self, tag):
        """Lines up to the tagged one; literals as (line, bytes) pairs."""
        out = []
        while True:
            line = self.read_line()
            literal = re.search(rb"\{(\d+)\}\r\n$", line)
            if literal:
                out.append((line, self.read_exact(int(literal.group(1)))))
                continue
            out.append((line, None))
            if line.startswith(tag.encode() + b" "):
                return out

    def command(self, tag, text):
        self.send(f"{tag} {text}\r\n".encode())
        return self.until_tagged(tag)


def compressed_session(user="alice"):
    sock = socket.create_connection(("127.0.0.1", PORTS["tls"]), timeout=60)
    sock = ssl.create_default_context(cafile=DOVECOT.certs["ca"]).wrap_socket(sock, server_hostname="localhost")
    raw = RawClient(sock)
    login = raw.command("a1", f"LOGIN {user} {USERS[user]}")
    assert b"COMPRESS=DEFLATE" in login, login
    answer = raw.command("a2", "COMPRESS DEFLATE")
    assert answer == b"a2 OK DEFLATE active\r\n", answer
    return Deflated(sock, raw.buffer)


def wait_for_log(proxy, pattern):
    """Waits (10 s) for a log line matching pattern; the log's end in the failure."""
    try:
        wait_until(pattern, lambda: re.search(pattern, proxy.log()), 10, 0.2)
    except AssertionError as e:
        raise AssertionError(f"{e}: {proxy.log()[-2000:]}") from None


def new_mail_during_idle(c, dovecot_port, seed):
    """IDLE on c (SELECTed), a message appended to bob's INBOX directly, and the lines
    c read until its EXISTS (at most 45 s: Dovecot may fall back to polling, 30 s)."""
    c.send(b"i1 IDLE\r\n")
    assert c.read_line().startswith(b"+")
    other = imaplib.IMAP4("127.0.0.1", dovecot_port)
    other.login("bob", USERS["bob"])
    other.append("INBOX", None, None, message(500, seed))
    other.logout()
    deadline = time.monotonic() + 45
    timeout = c.sock.gettimeout()
    c.sock.settimeout(5)
    seen = b""
    while b"EXISTS" not in seen and time.monotonic() < deadline:
        try:
            seen += c.read_line()
        except socket.timeout:
            pass
    c.sock.settimeout(timeout)
    return seen


class ClientLeg(unittest.TestCase):
    def test_byte_exact_append_and_fetch_compressed(self):
        appends_before = metric_sum(PROXY.admin_port, "imapscope_commands_total", 'command="append"')
        c = compressed_session()
        self.assertEqual(c.command("b1", "CREATE Compress-1")[-1][0][:5], b"b1 OK")
        sizes = [1, 2, 1000, 65536, 100_003, 3_000_000]
        sent = {}
        for i, size in enumerate(sizes):
            body = message(size, i)
            sent[i + 1] = hashlib.sha256(body).hexdigest()
            if i % 2:  # LITERAL+ (non-synchronising)
                c.send(b"p%d APPEND Compress-1 {%d+}\r\n" % (i, size) + body + b"\r\n")
            else:  # synchronising: waits for the server's "+" through both legs
                c.send(b"p%d APPEND Compress-1 {%d}\r\n" % (i, size))
                self.assertTrue(c.read_line().startswith(b"+"))
                c.send(body + b"\r\n")
            self.assertIn(b"OK", c.until_tagged(f"p{i}")[-1][0])
        self.assertIn(b"OK", c.command("s1", "SELECT Compress-1")[-1][0])
        got = {}
        for line, literal in c.command("f1", "UID FETCH 1:* BODY.PEEK[]"):
            if literal is not None:
                uid = int(re.search(rb"UID (\d+)", line).group(1))
                got[uid] = hashlib.sha256(literal).hexdigest()
        self.assertEqual(got, sent)
        # Dovecot has exactly what was sent (read directly, without the proxy).
        direct = imaplib.IMAP4("127.0.0.1", DOVECOT.port)
        direct.login("alice", USERS["alice"])
        direct.select("Compress-1", readonly=True)
        _, data = direct.uid("FETCH", "1:*", "(BODY.PEEK[])")
        stored = sorted(hashlib.sha256(part[1]).hexdigest() for part in data if isinstance(part, tuple))
        direct.logout()
        self.assertEqual(stored, sorted(sent.values()))
        # The client leg carried less than the plaintext it stood for.
        self.assertLess(c.wire_in, c.plain_in)
        c.command("z1", "LOGOUT")
        c.sock.close()
        # The proxy saw the plaintext: it counted the APPENDs sent compressed.
        wait_until("APPENDs counted", lambda: metric_sum(PROXY.admin_port, "imapscope_commands_total",
                                                         'command="append"') - appends_before >= len(sizes), 10, 0.2)
        self.assertRegex(PROXY.log(), r"event=session_end .*client_compress=deflate")

    def test_idle_notification_arrives_compressed(self):
        c = compressed_session("bob")
        self.assertIn(b"OK", c.command("s1", "SELECT INBOX")[-1][0])
        self.assertIn(b"EXISTS", new_mail_during_idle(c, DOVECOT.port, 99))
        c.send(b"DONE\r\n")
        self.assertIn(b"i1 OK", c.until_tagged("i1")[-1][0])
        c.command("z1", "LOGOUT")
        c.sock.close()

    def test_a_broken_stream_ends_only_its_session(self):
        bystander = compressed_session("bob")
        broken = compressed_session("alice")
        broken.sock.sendall(b"\xff\xfe this is not deflate\r\n" * 4)
        broken.sock.settimeout(10)
        closed = False
        try:
            while True:
                if not broken.sock.recv(4096):
                    closed = True
                    break
        except (ConnectionError, ssl.SSLError, OSError):
            closed = True
        self.assertTrue(closed)
        self.assertIn(b"n1 OK", bystander.command("n1", "NOOP")[-1][0])
        bystander.command("z1", "LOGOUT")
        bystander.sock.close()
        wait_for_log(PROXY, "event=compress_error")
        self.assertRegex(PROXY.log(), r"event=compress_error session=\d+ side=client detail=\"corrupt compressed data")


class ServerLeg(unittest.TestCase):
    """A Dovecot that offers COMPRESS (imap_zlib): the proxy turns it on towards it,
    with the client leg compressed or not."""

    @classmethod
    def setUpClass(cls):
        cls.dovecot = Dovecot(extra_config="protocol imap {\n  mail_plugins = $mail_plugins imap_zlib\n}\n").start()
        cls.port = free_port()
        cls.proxy = Imapscope(["--listen", f"127.0.0.1:{cls.port}", "--upstream", f"127.0.0.1:{cls.dovecot.port}",
                               "--upstream-compress", "--compress"]).start([cls.port])

    @classmethod
    def tearDownClass(cls):
        cls.proxy.stop()
        cls.dovecot.stop()

    def test_plain_client_compressed_server_leg(self):
        c = imaplib.IMAP4("127.0.0.1", self.port, timeout=60)
        c.login("alice", USERS["alice"])
        c.create("Upstream-Z")
        sent = []
        for i, size in enumerate([1, 5000, 250_000, 3_000_000]):
            body = message(size, 500 + i)
            sent.append(hashlib.sha256(body).hexdigest())
            self.assertEqual(c.append("Upstream-Z", None, None, body)[0], "OK")
        c.select("Upstream-Z", readonly=True)
        _, data = c.uid("FETCH", "1:*", "(BODY.PEEK[])")
        got = [hashlib.sha256(part[1]).hexdigest() for part in data if isinstance(part, tuple)]
        self.assertEqual(got, sent)
        # The client sees the proxy's own offer (--compress) once, not the server's.
        self.assertEqual(c.capability()[1][0].count(b"COMPRESS"), 1)
        c.logout()
        wait_for_log(self.proxy, "server_compress=deflate")
        self.assertIn("event=server_compress", self.proxy.log())

    def test_both_legs_compressed(self):
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=60)
        raw = RawClient(sock)
        self.assertIn(b"COMPRESS=DEFLATE", raw.command("a1", f"LOGIN bob {USERS['bob']}"))
        self.assertEqual(raw.command("a2", "COMPRESS DEFLATE"), b"a2 OK DEFLATE active\r\n")
        c = Deflated(sock, raw.buffer)
        self.assertIn(b"OK", c.command("b1", "CREATE Both-Z")[-1][0])
        body = message(1_500_000, 77)
        c.send(b"p1 APPEND Both-Z {%d+}\r\n" % len(body) + body + b"\r\n")
        self.assertIn(b"OK", c.until_tagged("p1")[-1][0])
        self.assertIn(b"OK", c.command("s1", "EXAMINE Both-Z")[-1][0])
        literals = [lit for _, lit in c.command("f1", "FETCH 1 BODY.PEEK[]") if lit is not None]
        self.assertEqual(literals, [body])
        c.command("z1", "LOGOUT")
        sock.close()
        wait_for_log(self.proxy, r"client_compress=deflate server_compress=deflate")


class PassThrough(unittest.TestCase):
    """A Dovecot that offers COMPRESS (imap_zlib) behind --compress-pass-through: the
    client's COMPRESS goes to Dovecot and both compressed streams are relayed as they
    are, while the proxy inflates copies to inspect."""

    @classmethod
    def setUpClass(cls):
        cls.dovecot = Dovecot(extra_config="imap_idle_notify_interval = 1 secs\n"
                                           "protocol imap {\n  mail_plugins = $mail_plugins imap_zlib\n}\n").start()
        cls.port = free_port()
        cls.proxy = Imapscope(["--listen-tls", f"127.0.0.1:{cls.port}", "--tls-cert", cls.dovecot.certs["cert"],
                               "--tls-key", cls.dovecot.certs["key"], "--upstream", f"127.0.0.1:{cls.dovecot.port}",
                               "--compress-pass-through"]).start([cls.port])

    @classmethod
    def tearDownClass(cls):
        cls.proxy.stop()
        cls.dovecot.stop()

    def session(self, port, user):
        sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        context = ssl.create_default_context(cafile=self.dovecot.certs["ca"])
        sock = context.wrap_socket(sock, server_hostname="localhost")
        raw = RawClient(sock)
        self.assertIn(b"COMPRESS=DEFLATE", raw.command("a1", f"LOGIN {user} {USERS[user]}"))
        # Dovecot's own answer, not the proxy's "DEFLATE active".
        self.assertRegex(raw.command("a2", "COMPRESS DEFLATE"), rb"^a2 OK Begin compression")
        return Deflated(sock, raw.buffer)

    def test_byte_exact_through_one_stream_end_to_end(self):
        def appends():
            return metric_sum(self.proxy.admin_port, "imapscope_commands_total", 'command="append"')
        before = appends()
        c = self.session(self.port, "alice")
        self.assertIn(b"OK", c.command("b1", "CREATE Pass-Z")[-1][0])
        sizes = [1, 1000, 100_003, 3_000_000]
        sent = {}
        for i, size in enumerate(sizes):
            body = message(size, 700 + i)
            sent[i + 1] = hashlib.sha256(body).hexdigest()
            if i % 2:
                c.send(b"p%d APPEND Pass-Z {%d+}\r\n" % (i, size) + body + b"\r\n")
            else:
                c.send(b"p%d APPEND Pass-Z {%d}\r\n" % (i, size))
                self.assertTrue(c.read_line().startswith(b"+"))
                c.send(body + b"\r\n")
            self.assertIn(b"OK", c.until_tagged(f"p{i}")[-1][0])
        self.assertIn(b"OK", c.command("s1", "EXAMINE Pass-Z")[-1][0])
        got = {}
        for line, literal in c.command("f1", "UID FETCH 1:* BODY.PEEK[]"):
            if literal is not None:
                got[int(re.search(rb"UID (\d+)", line).group(1))] = hashlib.sha256(literal).hexdigest()
        self.assertEqual(got, sent)
        self.assertLess(c.wire_in, c.plain_in)
        # After COMPRESS nothing is rewritten: the server's own capability list.
        caps = c.command("c1", "CAPABILITY")[0][0]
        self.assertIn(b"COMPRESS=DEFLATE", caps)
        c.command("z1", "LOGOUT")
        c.sock.close()
        wait_for_log(self.proxy, r"event=session_end .*client_compress=pass-through server_compress=pass-through")
        self.assertIn("event=compress_pass_through", self.proxy.log())
        # The proxy still read every command: it counted the APPENDs from its copy.
        wait_until("APPENDs counted", lambda: appends() - before >= len(sizes), 10, 0.2)

    def test_idle_notification_and_a_bye_of_the_proxys_own(self):
        # A proxy that drains in half a second: its BYE has to go into Dovecot's
        # compressed stream as a block of its own.
        port = free_port()
        config = os.path.join(temp_dir(prefix="imapscope-pass-"), "config.json")
        with open(config, "w") as f:
            f.write(f"""{{"timeouts": {{"shutdown_grace_ms": 500}}, "listeners": [{{
                "listen": "127.0.0.1:{port}", "tls": "implicit", "compress": "pass-through",
                "cert": "{self.dovecot.certs['cert']}", "key": "{self.dovecot.certs['key']}",
                "upstream": {{"addresses": ["127.0.0.1:{self.dovecot.port}"]}}}}]}}""")
        proxy = Imapscope(["--config", config]).start([port])
        try:
            c = self.session(port, "bob")
            self.assertIn(b"OK", c.command("s1", "SELECT INBOX")[-1][0])
            self.assertIn(b"EXISTS", new_mail_during_idle(c, self.dovecot.port, 98))
            c.sock.settimeout(30)
            self.assertEqual(proxy.stop(), 0)
            rest = b""
            try:
                while True:
                    rest += c.read_line()
            except (ConnectionError, ssl.SSLError, OSError):
                pass
            self.assertIn(b"* BYE [UNAVAILABLE] Server shutting down\r\n", rest)
            self.assertIn("event=compress_pass_through", proxy.log())
        finally:
            proxy.stop()

    def test_mbsync_syncs_the_same_through_the_passed_stream(self):
        seed = imaplib.IMAP4("127.0.0.1", self.dovecot.port)
        seed.login("bob", USERS["bob"])
        seed.create("Pass-Source")
        for i in range(20):
            seed.append("Pass-Source", None, None, message(300 + i * 30_000, 2000 + i))
        seed.logout()
        before = self.proxy.log().count("event=compress_pass_through")
        with tempfile.TemporaryDirectory() as direct_dir, tempfile.TemporaryDirectory() as proxied_dir:
            direct = mbsync_pull(self.dovecot.tls_port, "IMAPS", self.dovecot.certs["ca"], direct_dir, "Pass-*")
            proxied = mbsync_pull(self.port, "IMAPS", self.dovecot.certs["ca"], proxied_dir, "Pass-*")
        self.assertEqual(len([d for d in direct if d[0] == "Pass-Source"]), 20, direct)
        self.assertEqual(proxied, direct)
        self.assertGreater(self.proxy.log().count("event=compress_pass_through"), before,
                           "mbsync's COMPRESS was not passed through")


class Mbsync(unittest.TestCase):
    def sync(self, port, workdir):
        return mbsync_pull(port, "IMAPS", DOVECOT.certs["ca"], workdir, "Zync-*")

    def test_mbsync_turns_compress_on_and_syncs_the_same(self):
        seed = imaplib.IMAP4("127.0.0.1", DOVECOT.port)
        seed.login("bob", USERS["bob"])
        seed.create("Zync-Source")
        for i in range(25):
            seed.append("Zync-Source", None, None, message(200 + i * 20_000, 1000 + i))
        seed.logout()
        before = PROXY.log().count("event=client_compress")
        with tempfile.TemporaryDirectory() as direct_dir, tempfile.TemporaryDirectory() as proxied_dir:
            direct = self.sync(DOVECOT.tls_port, direct_dir)
            proxied = self.sync(PORTS["tls"], proxied_dir)
        self.assertEqual(len([d for d in direct if d[0] == "Zync-Source"]), 25, direct)
        self.assertEqual(proxied, direct)
        self.assertGreater(PROXY.log().count("event=client_compress"), before, "mbsync did not turn COMPRESS on")


if __name__ == "__main__":
    unittest.main()
