"""Plaintext logins and one instance per address, end to end: Python's imaplib
against a real Dovecot through the real imapscope, everything on loopback.

Refused: on a listener that offers STARTTLS, LOGIN and AUTHENTICATE before TLS get
[PRIVACYREQUIRED] from the proxy (Dovecot never hears of them), LOGINDISABLED is
advertised and no AUTH=*; after STARTTLS the login works. Allowed / LoopbackOnly:
the plaintext_login setting. StartTlsState: STARTTLS after login or inside TLS is
BAD. NoCertificate: a listener that can't offer TLS takes LOGIN. SecondInstance: a
second imapscope on an address already served exits at start and the first keeps
serving; a multi-loop instance accepts on every loop."""
import imaplib
import os
import socket
import ssl
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
from imap_fixtures import (USERS, Dovecot, Imapscope, RawClient, free_port, imapscope_binary,  # noqa: E402
                           wait_until)

DOVECOT = None
# A user only the refused logins try: Dovecot's log must never name it before the
# login over TLS that proves the check would see it.
CAROL = ("carol", "carol-secret")


def setUpModule():
    global DOVECOT
    DOVECOT = Dovecot(users={CAROL[0]: CAROL[1]}).start()


def tearDownModule():
    DOVECOT.stop()


def context():
    return ssl.create_default_context(cafile=DOVECOT.certs["ca"])


def start_proxy(port, *flags, cert=True):
    args = ["--listen", f"127.0.0.1:{port}", "--upstream", f"127.0.0.1:{DOVECOT.port}"]
    if cert:
        args += ["--tls-cert", DOVECOT.certs["cert"], "--tls-key", DOVECOT.certs["key"]]
    return Imapscope(args + list(flags)).start([port])


class ProxyHeaderIMAP4(imaplib.IMAP4):
    """imaplib behind a load balancer: a PROXY v1 header naming `client` goes first."""

    def __init__(self, port, client):
        self.client_address = client
        super().__init__("127.0.0.1", port, timeout=30)

    def _create_socket(self, timeout):
        sock = socket.create_connection((self.host, self.port), timeout)
        sock.sendall(f"PROXY TCP4 {self.client_address} 127.0.0.1 40000 143\r\n".encode())
        return sock


def auth_mechanisms(client):
    return sorted(c for c in client.capabilities if c.startswith("AUTH="))


class Refused(unittest.TestCase):
    def test_login_before_starttls_is_refused_and_works_after(self):
        port = free_port()
        proxy = start_proxy(port)
        try:
            c = imaplib.IMAP4("127.0.0.1", port, timeout=30)
            self.assertIn("LOGINDISABLED", c.capabilities)
            self.assertIn("STARTTLS", c.capabilities)
            self.assertEqual(auth_mechanisms(c), [])  # Dovecot offers AUTH=PLAIN AUTH=LOGIN
            with self.assertRaises(imaplib.IMAP4.error) as caught:
                c.login(*CAROL)
            self.assertIn("PRIVACYREQUIRED", str(caught.exception))
            # AUTHENTICATE, with SASL-IR (imaplib sends the initial response on the line).
            with self.assertRaises(imaplib.IMAP4.error) as caught:
                c.authenticate("PLAIN", lambda _: f"\0{CAROL[0]}\0{CAROL[1]}".encode())
            self.assertIn("PRIVACYREQUIRED", str(caught.exception))
            self.assertEqual(c.noop()[0], "OK")  # the session goes on
            c.starttls(ssl_context=context())
            self.assertNotIn("LOGINDISABLED", c.capabilities)
            self.assertNotIn("STARTTLS", c.capabilities)
            self.assertIn("AUTH=PLAIN", c.capabilities)
            refused_log = DOVECOT.log()
            self.assertEqual(c.login(*CAROL)[0], "OK")
            self.assertEqual(c.select("INBOX")[0], "OK")
            c.logout()
        finally:
            proxy.stop()
        # Dovecot heard nothing of the refused attempts: its log names carol only for
        # the login over TLS (which shows the check would have seen them).
        self.assertNotIn(f"user=<{CAROL[0]}>", refused_log)
        self.assertNotIn("auth failed", refused_log)
        wait_until("Dovecot's log of the login over TLS", lambda: f"user=<{CAROL[0]}>" in DOVECOT.log())
        for log in (proxy.log(), DOVECOT.log()):
            self.assertNotIn(CAROL[1], log)

    def test_authenticate_without_initial_response_is_refused(self):
        port = free_port()
        proxy = start_proxy(port)
        try:
            raw = RawClient(port)
            # No "+" is asked of the server: the refusal comes at once, and the
            # client isn't left owing a SASL response.
            self.assertEqual(raw.command("a1", "AUTHENTICATE PLAIN"),
                             b"a1 NO [PRIVACYREQUIRED] Use STARTTLS before logging in\r\n")
            self.assertEqual(raw.command("a2", "NOOP"), b"a2 OK NOOP completed.\r\n")
            raw.close()
        finally:
            proxy.stop()


class Allowed(unittest.TestCase):
    def test_allow_lets_plaintext_login_through(self):
        port = free_port()
        proxy = start_proxy(port, "--plaintext-login", "allow")
        try:
            c = imaplib.IMAP4("127.0.0.1", port, timeout=30)
            self.assertNotIn("LOGINDISABLED", c.capabilities)
            self.assertIn("STARTTLS", c.capabilities)
            self.assertIn("AUTH=PLAIN", c.capabilities)
            self.assertEqual(c.login("alice", USERS["alice"])[0], "OK")
            c.logout()
        finally:
            proxy.stop()

    def test_legacy_config_key_still_parses(self):
        # Written before plaintext_login existed: false meant "take plaintext logins".
        port = free_port()
        with tempfile.TemporaryDirectory() as folder:
            config = os.path.join(folder, "config.json")
            with open(config, "w") as f:
                f.write('{"listeners": [{"listen": "127.0.0.1:%d", "tls": "starttls", "cert": "%s", "key": "%s",'
                        ' "login_disabled_until_tls": false, "upstream": {"addresses": ["127.0.0.1:%d"]}}]}'
                        % (port, DOVECOT.certs["cert"], DOVECOT.certs["key"], DOVECOT.port))
            checked = subprocess.run([imapscope_binary(), "--check-config", config], capture_output=True, text=True,
                                     timeout=30)
            self.assertEqual(checked.returncode, 0, checked.stderr)
            self.assertIn("plaintext_login=allow", checked.stdout)
            proxy = Imapscope(["--config", config]).start([port])
            try:
                c = imaplib.IMAP4("127.0.0.1", port, timeout=30)
                self.assertEqual(c.login("alice", USERS["alice"])[0], "OK")
                c.logout()
            finally:
                proxy.stop()


class LoopbackOnly(unittest.TestCase):
    """Loopback clients are trusted; the address judged is the real client's, the one
    a PROXY header names."""

    def test_loopback_clients_only(self):
        port = free_port()
        proxy = start_proxy(port, "--plaintext-login", "loopback", "--proxy-protocol-from", "127.0.0.1/32")
        try:
            near = ProxyHeaderIMAP4(port, "127.0.0.5")
            self.assertNotIn("LOGINDISABLED", near.capabilities)
            self.assertEqual(near.login("alice", USERS["alice"])[0], "OK")
            near.logout()

            far = ProxyHeaderIMAP4(port, "192.0.2.7")
            self.assertIn("LOGINDISABLED", far.capabilities)
            with self.assertRaises(imaplib.IMAP4.error) as caught:
                far.login("alice", USERS["alice"])
            self.assertIn("PRIVACYREQUIRED", str(caught.exception))
            far.starttls(ssl_context=context())
            self.assertEqual(far.login("alice", USERS["alice"])[0], "OK")
            far.logout()
        finally:
            proxy.stop()

    def test_direct_loopback_client(self):
        port = free_port()
        proxy = start_proxy(port, "--plaintext-login", "loopback")
        try:
            c = imaplib.IMAP4("127.0.0.1", port, timeout=30)
            self.assertNotIn("LOGINDISABLED", c.capabilities)
            self.assertEqual(c.login("alice", USERS["alice"])[0], "OK")
            c.logout()
        finally:
            proxy.stop()


class StartTlsState(unittest.TestCase):
    def test_starttls_after_login_and_inside_tls_is_bad(self):
        port = free_port()
        proxy = start_proxy(port, "--plaintext-login", "allow")
        try:
            # imaplib won't send STARTTLS after login: a raw client does.
            raw = RawClient(port)
            self.assertTrue(raw.command("l1", f"LOGIN alice {USERS['alice']}").splitlines()[-1].startswith(b"l1 OK"))
            self.assertEqual(raw.command("s1", "STARTTLS"), b"s1 BAD STARTTLS is only valid before login\r\n")
            self.assertTrue(raw.command("n1", "NOOP").startswith(b"n1 OK NOOP"))  # in clear, still working
            raw.close()

            t = imaplib.IMAP4("127.0.0.1", port, timeout=30)
            t.starttls(ssl_context=context())
            with self.assertRaises(imaplib.IMAP4.error) as caught:
                t._simple_command("STARTTLS")
            self.assertIn("TLS is already active", str(caught.exception))
            self.assertEqual(t.login("alice", USERS["alice"])[0], "OK")
            t.logout()
        finally:
            proxy.stop()


class NoCertificate(unittest.TestCase):
    def test_plain_listener_without_certificate_takes_login(self):
        port = free_port()
        proxy = start_proxy(port, cert=False)
        try:
            c = imaplib.IMAP4("127.0.0.1", port, timeout=30)
            self.assertNotIn("LOGINDISABLED", c.capabilities)
            self.assertNotIn("STARTTLS", c.capabilities)
            self.assertEqual(c.login("alice", USERS["alice"])[0], "OK")
            c.logout()
        finally:
            proxy.stop()
        # On loopback there's nobody on the path to warn about.
        self.assertNotIn("passwords cross the network in clear", proxy.log())


def listening_sockets(pid, port):
    """How many of the process's sockets listen on 127.0.0.1:port (from /proc)."""
    inodes = set()
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            if fields[1] == f"0100007F:{port:04X}" and fields[3] == "0A":
                inodes.add(fields[9])
    owned = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:[") and target[8:-1] in inodes:
            owned.add(target[8:-1])
    return len(owned)


class SecondInstance(unittest.TestCase):
    def test_second_instance_on_the_same_address_exits_and_the_first_keeps_serving(self):
        port = free_port()
        first = start_proxy(port, "--threads", "2", cert=False)
        try:
            second = Imapscope(["--listen", f"127.0.0.1:{port}", "--upstream", f"127.0.0.1:{DOVECOT.port}",
                                "--threads", "2"])
            second.start()
            try:
                second.proc.wait(timeout=60)
            finally:
                second.stop()
            self.assertNotEqual(second.proc.returncode, 0)
            self.assertIn(f"listener imap-0: 127.0.0.1:{port} is already in use by another process", second.log())
            c = imaplib.IMAP4("127.0.0.1", port, timeout=30)
            self.assertEqual(c.login("alice", USERS["alice"])[0], "OK")
            c.logout()
            self.assertIsNone(first.proc.poll())
        finally:
            first.stop()

    def test_second_instance_on_the_same_admin_address_exits(self):
        port, other, admin = free_port(), free_port(), free_port()
        first = start_proxy(port, "--admin", f"127.0.0.1:{admin}", cert=False)
        try:
            result = subprocess.run([imapscope_binary(), "--listen", f"127.0.0.1:{other}", "--upstream",
                                     f"127.0.0.1:{DOVECOT.port}", "--admin", f"127.0.0.1:{admin}"],
                                    capture_output=True, text=True, timeout=60)
            self.assertNotEqual(result.returncode, 0)
            self.assertIn(f"admin address 127.0.0.1:{admin}: can't listen there", result.stderr)
            self.assertIn("in use", result.stderr)
            c = imaplib.IMAP4("127.0.0.1", port, timeout=30)
            self.assertEqual(c.login("alice", USERS["alice"])[0], "OK")
            c.logout()
        finally:
            first.stop()

    def test_two_listeners_of_one_instance_on_one_address_are_refused(self):
        port = free_port()
        result = subprocess.run([imapscope_binary(), "--listen", f"127.0.0.1:{port}", "--listen", f"127.0.0.1:{port}",
                                 "--upstream", f"127.0.0.1:{DOVECOT.port}", "--admin", "none"],
                                capture_output=True, text=True, timeout=60)
        self.assertNotEqual(result.returncode, 0)
        self.assertIn(f"listener imap-1: same address as listener imap-0 (127.0.0.1:{port})", result.stderr)

    def test_every_loop_of_one_instance_accepts(self):
        port = free_port()
        proxy = start_proxy(port, "--threads", "2", cert=False)
        try:
            self.assertEqual(listening_sockets(proxy.proc.pid, port), 2)
            # The kernel spreads connections over the loops' sockets by their ports:
            # with 16 of them, a loop that didn't accept would leave some unanswered
            # (all 16 on one socket: one chance in 2^15).
            clients = [RawClient(port) for _ in range(16)]
            for i, client in enumerate(clients):
                self.assertTrue(client.greeting.startswith(b"* OK"), client.greeting)
                self.assertIn(b"OK", client.command(f"l{i}", f"LOGIN alice {USERS['alice']}").splitlines()[-1])
            for client in clients:
                client.close()
        finally:
            proxy.stop()


if __name__ == "__main__":
    unittest.main()
