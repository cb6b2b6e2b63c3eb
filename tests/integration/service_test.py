"""imapscope under a service manager: the real binary with NOTIFY_SOCKET pointing at
a unix datagram socket this test listens on, as systemd does for a Type=notify unit
(dist/systemd/imapscope.service), in front of a real Dovecot on 127.0.0.1.

Readiness: READY=1 comes once, when the listeners already accept (a client gets
Dovecot's greeting through the proxy and /readyz says ready); SIGHUP is announced
with RELOADING=1 and ended with READY=1; SIGTERM with STOPPING=1 while the drain
has begun (/readyz 503); an abstract socket ("@name") works too; a socket nobody
listens on is logged, and the proxy runs all the same.
"""
import imaplib
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
import unittest
import urllib.error
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
from imap_fixtures import temp_dir, USERS, Dovecot, free_port, imapscope_binary, stop_process  # noqa: E402

import subprocess  # noqa: E402

DOVECOT = None


def setUpModule():
    global DOVECOT
    DOVECOT = Dovecot().start()


def tearDownModule():
    if DOVECOT:
        DOVECOT.stop()


def readyz(admin_port):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/readyz", timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


class NotifiedProxy:
    """A notify socket of our own and imapscope started with NOTIFY_SOCKET naming it."""

    def __init__(self, test, abstract=False, listen_on_socket=True):
        self.dir = temp_dir(prefix="imapscope-notify-")
        test.addCleanup(shutil.rmtree, self.dir, True)
        self.socket = None
        if abstract:
            name = f"imapscope-test-notify-{os.getpid()}-{time.monotonic_ns()}"
            address, self.env_value = "\0" + name, "@" + name
        else:
            address = self.env_value = os.path.join(self.dir, "notify")
        if listen_on_socket:
            self.socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            test.addCleanup(self.socket.close)
            self.socket.bind(address)
        self.port, self.admin_port = free_port(), free_port()
        env = dict(os.environ, NOTIFY_SOCKET=self.env_value)
        self.log_path = os.path.join(self.dir, "imapscope.log")
        with open(self.log_path, "w") as log:
            self.proc = subprocess.Popen(
                [imapscope_binary(), "--listen", f"127.0.0.1:{self.port}", "--upstream", f"127.0.0.1:{DOVECOT.port}",
                 "--admin", f"127.0.0.1:{self.admin_port}", "--state-dir", os.path.join(self.dir, "state")],
                stdout=subprocess.DEVNULL, stderr=log, env=env)
        test.addCleanup(stop_process, self.proc, signal.SIGKILL, 5)

    def message(self, timeout=30):
        """The next state message as a dict (NAME=VALUE lines)."""
        self.socket.settimeout(timeout)
        try:
            data = self.socket.recv(4096)
        except socket.timeout:
            raise AssertionError(f"no notification within {timeout}s; log:\n{self.log()}") from None
        return dict(line.split("=", 1) for line in data.decode().splitlines() if line)

    def no_message(self, seconds):
        self.socket.settimeout(seconds)
        try:
            return self.socket.recv(4096).decode()
        except socket.timeout:
            return None

    def log(self):
        with open(self.log_path) as f:
            return f.read()


class Readiness(unittest.TestCase):
    def test_ready_once_the_listeners_accept(self):
        proxy = NotifiedProxy(self)
        message = proxy.message()
        self.assertEqual(message.get("READY"), "1", message)
        # Right at READY=1, without waiting: a session goes through, and the probe agrees.
        client = imaplib.IMAP4("127.0.0.1", proxy.port, timeout=30)
        self.addCleanup(client.sock.close)
        self.assertIn(b"OK", client.welcome)
        self.assertEqual(client.login("alice", USERS["alice"])[0], "OK")
        self.assertEqual(readyz(proxy.admin_port), 200)
        self.assertIsNone(proxy.no_message(0.5), "one READY=1 at start, nothing else")
        client.logout()

    def test_reload_is_announced_and_ended(self):
        proxy = NotifiedProxy(self)
        self.assertEqual(proxy.message().get("READY"), "1")
        for _ in range(2):
            proxy.proc.send_signal(signal.SIGHUP)
            reloading = proxy.message()
            self.assertEqual(reloading.get("RELOADING"), "1", reloading)
            self.assertGreater(int(reloading["MONOTONIC_USEC"]), 0)
            self.assertNotIn("READY", reloading)
            ready = proxy.message()
            self.assertEqual(ready.get("READY"), "1", ready)
        self.assertIsNone(proxy.proc.poll())
        self.assertIn("event=reload", proxy.log())
        client = imaplib.IMAP4("127.0.0.1", proxy.port, timeout=30)
        self.assertEqual(client.login("bob", USERS["bob"])[0], "OK")
        client.logout()

    def test_stopping_when_the_drain_starts(self):
        proxy = NotifiedProxy(self)
        self.assertEqual(proxy.message().get("READY"), "1")
        # A logged-in session holds the drain open for a moment (grace: 10 s by default).
        client = imaplib.IMAP4("127.0.0.1", proxy.port, timeout=30)
        self.addCleanup(client.sock.close)
        client.login("alice", USERS["alice"])
        proxy.proc.send_signal(signal.SIGTERM)
        stopping = proxy.message()
        self.assertEqual(stopping.get("STOPPING"), "1", stopping)
        self.assertEqual(readyz(proxy.admin_port), 503)
        client.logout()
        self.assertEqual(proxy.proc.wait(timeout=30), 0)
        self.assertIn("event=drain", proxy.log())

    def test_abstract_socket(self):
        proxy = NotifiedProxy(self, abstract=True)
        self.assertEqual(proxy.message().get("READY"), "1")
        proxy.proc.send_signal(signal.SIGTERM)
        self.assertEqual(proxy.message().get("STOPPING"), "1")
        self.assertEqual(proxy.proc.wait(timeout=30), 0)

    def test_socket_nobody_listens_on_is_logged_and_harmless(self):
        proxy = NotifiedProxy(self, listen_on_socket=False)
        client = None
        deadline = time.monotonic() + 30
        while client is None and time.monotonic() < deadline:
            try:
                client = imaplib.IMAP4("127.0.0.1", proxy.port, timeout=30)
            except OSError:
                self.assertIsNone(proxy.proc.poll(), proxy.log())
                time.sleep(0.05)
        self.assertIsNotNone(client, proxy.log())
        self.assertEqual(client.login("alice", USERS["alice"])[0], "OK")
        client.logout()
        self.assertIn("event=service_notify_failed", proxy.log())
        proxy.proc.send_signal(signal.SIGTERM)
        self.assertEqual(proxy.proc.wait(timeout=30), 0)


if __name__ == "__main__":
    unittest.main(verbosity=2)
