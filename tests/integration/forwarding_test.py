"""Client addresses through the proxy, against a real Dovecot that trusts loopback.

In: PROXY protocol v1/v2 headers on imapscope's listeners, taken only from the trusted
network; anything else is refused and counted. Out: the client's address reaches
Dovecot by its ID forwarding (x-originating-ip ...) or by a PROXY header on a Dovecot
listener with haproxy = yes; Dovecot's own log and `doveadm who` are the proof.
Clients pick their source address in 127.0.0.0/8 to play distinct machines.
"""
import os
import socket
import ssl
import struct
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
from imap_fixtures import USERS, Dovecot, Imapscope, RawClient, free_port, wait_until  # noqa: E402

DOVECOT = None
PROXIES = {}  # name -> (Imapscope, {listener: port})


def v2_header(source, sport, destination, dport):
    addresses = socket.inet_aton(source) + socket.inet_aton(destination) + struct.pack("!HH", sport, dport)
    return b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x21, 0x11]) + struct.pack("!H", len(addresses)) + addresses


def connect(port, source="127.0.0.1"):
    return socket.create_connection(("127.0.0.1", port), timeout=20, source_address=(source, 0))


def start_proxy(name, flags, listeners=("plain",)):
    ports = {listener: free_port() for listener in listeners}
    args = []
    for listener, port in ports.items():
        args += ["--listen-tls" if listener == "tls" else "--listen", f"127.0.0.1:{port}"]
    certs = DOVECOT.certs
    # The tests log in on the plain listeners to read what Dovecot is told about the
    # client; the refusal of plaintext logins is plaintext_test.py's subject.
    proxy = Imapscope(args + ["--tls-cert", certs["cert"], "--tls-key", certs["key"], "--plaintext-login", "allow"] +
                      flags)
    proxy.start(list(ports.values()))
    PROXIES[name] = (proxy, ports)


def setUpModule():
    global DOVECOT
    DOVECOT = Dovecot(trusted="127.0.0.0/8").start()
    # Takes headers from 127.0.0.1 only; tells Dovecot by ID.
    start_proxy("header-in", ["--proxy-protocol-from", "127.0.0.1/32", "--upstream", f"127.0.0.1:{DOVECOT.port}",
                              "--upstream-forward-client", "id"], ("plain", "tls"))
    start_proxy("proxy-v2-out", ["--upstream", f"127.0.0.1:{DOVECOT.haproxy_port}",
                                 "--upstream-forward-client", "proxy-v2"])
    start_proxy("proxy-v1-out", ["--upstream", f"127.0.0.1:{DOVECOT.haproxy_port}",
                                 "--upstream-forward-client", "proxy-v1"])
    # STARTTLS towards Dovecot: the ID goes after the proxy's own TLS handshake.
    start_proxy("id-starttls-out", ["--upstream", f"127.0.0.1:{DOVECOT.port}", "--upstream-starttls",
                                    "--upstream-ca", DOVECOT.certs["ca"], "--upstream-forward-client", "id"])


def tearDownModule():
    for proxy, _ in PROXIES.values():
        proxy.stop()
    if DOVECOT:
        DOVECOT.stop()


def port(name, listener="plain"):
    return PROXIES[name][1][listener]


def log_of(name):
    return PROXIES[name][0].log()


def admin(name, path):
    return PROXIES[name][0].admin_get(path)


def dovecot_login_line(user, rip):
    """Dovecot's 'Login: user=<...>, ..., rip=...' line for user from rip."""
    def find():
        for line in DOVECOT.log().splitlines():
            if "Login: " in line and f"user=<{user}>" in line and f"rip={rip}," in line:
                return line
        return None
    return wait_until(f"Dovecot's login line for {user} from {rip}", find, 15)


def doveadm_who():
    return subprocess.run(["doveadm", "-c", DOVECOT.config, "who"], capture_output=True, text=True, timeout=30).stdout


def metric(name, text):
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return 0.0


class HeaderIn(unittest.TestCase):
    """A balancer's PROXY header names the client to imapscope and, by ID, to Dovecot."""

    def test_v2_header_names_the_client_everywhere(self):
        sock = connect(port("header-in"))
        sock.sendall(v2_header("192.0.2.10", 40001, "198.51.100.1", 143))
        client = RawClient(sock)
        self.assertTrue(client.greeting.startswith(b"* OK"), client.greeting)
        self.assertIn(b"a1 OK", client.command("a1", f"LOGIN alice {USERS['alice']}"))
        # Dovecot logged the client in from its real address, in the proxy's session.
        line = dovecot_login_line("alice", "192.0.2.10")
        self.assertIn("lip=198.51.100.1", line)
        self.assertRegex(line, r"session=<imapscope-[0-9a-f]{8}-\d+>")
        self.assertIn("(192.0.2.10)", doveadm_who())
        # imapscope's log and its live view show it too, with the balancer it came through.
        sessions = admin("header-in", "/api/sessions")["sessions"]
        self.assertIn("192.0.2.10:40001", [s["client_address"] for s in sessions])
        self.assertRegex(log_of("header-in"), r"event=session_start session=\d+ listener=imap-0 "
                                              r"client=192\.0\.2\.10:40001 via=127\.0\.0\.1:\d+")
        # Dovecot's answer to the forwarding ID never reaches the client.
        self.assertNotIn(b"* ID", client.command("a2", "NOOP"))
        client.close()

    def test_v1_header_then_implicit_tls_split_over_segments(self):
        sock = connect(port("header-in", "tls"))
        header = b"PROXY TCP4 192.0.2.20 198.51.100.1 40002 993\r\n"
        sock.sendall(header[:9])  # a header that arrives in pieces is waited for
        time.sleep(0.2)
        sock.sendall(header[9:])
        context = ssl.create_default_context(cafile=DOVECOT.certs["ca"])
        client = RawClient(context.wrap_socket(sock, server_hostname="localhost"))
        self.assertIn(b"a1 OK", client.command("a1", f"LOGIN bob {USERS['bob']}"))
        dovecot_login_line("bob", "192.0.2.20")
        client.close()

    def test_refused_without_a_header_or_from_elsewhere(self):
        before = admin("header-in", "/metrics")
        # From 127.0.0.3, outside the trusted network: closed before a greeting, even
        # with a well-formed header.
        sock = connect(port("header-in"), source="127.0.0.3")
        sock.sendall(v2_header("192.0.2.99", 1, "198.51.100.1", 143))
        self.assertEqual(sock.recv(100), b"")
        sock.close()
        # From the balancer's address, but no header: closed too.
        sock = connect(port("header-in"))
        sock.sendall(b"a1 CAPABILITY\r\n")
        self.assertEqual(sock.recv(100), b"")
        sock.close()
        log = wait_until("the refusal in the log",
                         lambda: log_of("header-in") if "result=invalid" in log_of("header-in") else None, 15)
        self.assertRegex(log, r"event=proxy_header_refused session=\d+ listener=imap-0 result=untrusted "
                              r"detail=\"127\.0\.0\.3 is not in")
        after = admin("header-in", "/metrics")
        for result in ("untrusted", "invalid"):
            name = f'imapscope_proxy_headers_total{{result="{result}"}}'
            self.assertEqual(metric(name, after) - metric(name, before), 1, result)
        # A refused connection is not a session: nothing in the live view or the session counts.
        addresses = [s["client_address"] for s in admin("header-in", "/api/sessions")["sessions"]]
        self.assertFalse([a for a in addresses if a.startswith("127.0.0.3:")])
        self.assertNotIn("192.0.2.99", log_of("header-in"))

    def test_connections_reset_at_once_are_not_untrusted(self):
        # A balancer's or a scanner's connect-and-reset, from the trusted address:
        # whether imapscope still reads the peer's address or not, it is "closed".
        before = admin("header-in", "/metrics")
        for _ in range(30):
            sock = connect(port("header-in"))
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()
        name = 'imapscope_proxy_headers_total{result="closed"}'
        wait_until("30 closed connections counted", lambda: metric(name, admin("header-in", "/metrics"))
                   - metric(name, before) >= 30, 15)
        after = admin("header-in", "/metrics")
        untrusted = 'imapscope_proxy_headers_total{result="untrusted"}'
        self.assertEqual(metric(untrusted, after), metric(untrusted, before))
        self.assertNotIn("result=untrusted detail=\"unknown", log_of("header-in"))


class ForwardOut(unittest.TestCase):
    """Without a balancer, imapscope tells Dovecot the address its client connected from."""

    def login_from(self, proxy, source, user):
        client = RawClient(connect(port(proxy), source=source))
        self.assertIn(b"a1 OK", client.command("a1", f"LOGIN {user} {USERS[user]}"))
        line = dovecot_login_line(user, source)
        self.assertIn("lip=127.0.0.1", line)
        self.assertIn(f"({source})", doveadm_who())
        client.close()

    def test_proxy_v2_header_to_dovecot(self):
        self.login_from("proxy-v2-out", "127.0.0.9", "alice")

    def test_proxy_v1_header_to_dovecot(self):
        self.login_from("proxy-v1-out", "127.0.0.10", "bob")

    def test_id_after_starttls_to_dovecot(self):
        self.login_from("id-starttls-out", "127.0.0.11", "alice")


if __name__ == "__main__":
    unittest.main()
