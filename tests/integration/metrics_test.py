"""Metrics against a real Prometheus: Dovecot, imapscope and Prometheus (the Debian
package) on loopback; traffic from several client identities over plain, STARTTLS and
implicit TLS; Prometheus scrapes imapscope every second; then every query of every
panel of every dashboard in dashboards/grafana/dashboards is evaluated through
Prometheus's HTTP API and must return series without error. promtool checks the
scrape configuration and the alerting rules (and their unit tests)."""
import glob
import imaplib
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import unittest
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "support"))
from imap_fixtures import USERS, Dovecot, Imapscope, RawClient, free_port  # noqa: E402
from prometheus_fixture import Prometheus, http_json  # noqa: E402

ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
DASHBOARDS = os.path.join(ROOT, "dashboards")
# The dashboards' row of routing mode: its series exist only when the proxy routes.
ROUTING_ROWS = {"Backends"}


def panel_queries(routing):
    """(dashboard, title, expr) of every panel in the routing rows (routing) or outside them."""
    for path in sorted(glob.glob(os.path.join(DASHBOARDS, "grafana", "dashboards", "*.json"))):
        with open(path) as f:
            dashboard = json.load(f)
        row = None
        for panel in dashboard["panels"]:
            if panel["type"] == "row":
                row = panel["title"]
                continue
            if (row in ROUTING_ROWS) != routing:
                continue
            for target in panel["targets"]:
                yield os.path.basename(path), panel["title"], target["expr"]


def panels_without_series(prometheus, routing=False):
    """(failed, empty): the panel queries Prometheus refused, and those with no series."""
    empty, failed = [], []
    for dashboard, title, expr in panel_queries(routing):
        concrete = expr.replace("$__rate_interval", "1m").replace("$instance", ".*")
        answer = prometheus.query(concrete)
        if answer.get("status") != "success":
            failed.append(f"{dashboard} / {title}: {answer}")
        elif not answer["data"]["result"]:
            empty.append(f"{dashboard} / {title}: {concrete}")
    return failed, empty
class Dashboards(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dovecot = Dovecot(extra_config="imap_idle_notify_interval = 1 secs").start()
        cls.plain, cls.tls = free_port(), free_port()
        certs = cls.dovecot.certs
        # The traffic's small INBOX swept again and again makes a full_resync for the
        # diagnostics panels: only with thresholds far below the defaults' (a
        # thousand messages, a megabyte fetched again).
        cls.config = os.path.join(cls.dovecot.dir, "imapscope.json")
        with open(cls.config, "w") as f:
            json.dump({"diagnostics": {"resync_repeat_min_messages": 1, "resync_repeat_min_bytes": 1},
                       # a file needs a listener; the flags' listeners below replace it
                       "listeners": [{"listen": f"127.0.0.1:{cls.plain}",
                                      "upstream": {"addresses": [f"127.0.0.1:{cls.dovecot.port}"]}}]}, f)
        cls.proxy = Imapscope(["--config", cls.config, "--listen", f"127.0.0.1:{cls.plain}", "--listen-tls", f"127.0.0.1:{cls.tls}",
                               "--tls-cert", certs["cert"], "--tls-key", certs["key"],
                               # plain sessions (LOGIN in clear) are part of the traffic the panels show
                               "--plaintext-login", "allow",
                               "--upstream", f"127.0.0.1:{cls.dovecot.port}",
                               "--rules", os.path.join(ROOT, "rules", "quirks")]).start([cls.plain, cls.tls])
        cls.prometheus = Prometheus(f"127.0.0.1:{cls.proxy.admin_port}")

    @classmethod
    def tearDownClass(cls):
        cls.prometheus.stop()
        cls.proxy.stop()
        cls.dovecot.stop()

    def context(self):
        return ssl.create_default_context(cafile=self.dovecot.certs["ca"])

    def traffic(self):
        """Several client identities, every kind of event the panels show."""
        ctx = self.context()
        # A message in INBOX: the sessions' FETCH 1:* (FLAGS) then sweeps it again and
        # again, a finding (full_resync) for the diagnostics panels.
        seed = imaplib.IMAP4("127.0.0.1", self.dovecot.port)
        seed.login("alice", USERS["alice"])
        seed.append("INBOX", None, None, b"Subject: seed\r\n\r\nhello\r\n")
        seed.logout()
        for name in ("Thunderbird", "Microsoft Office 365", "K-9 Mail"):
            for tls in (False, True):
                sock = socket.create_connection(("127.0.0.1", self.tls if tls else self.plain), timeout=20)
                if tls:
                    sock = ctx.wrap_socket(sock, server_hostname="localhost")
                c = RawClient(sock)
                c.command("a1", f'ID ("name" "{name}" "version" "9.1")')
                c.command("a2", f"LOGIN alice {USERS['alice']}")
                c.command("a3", "SELECT INBOX")
                c.command("a4", "FETCH 1:* (FLAGS)")
                c.command("a5", "XYZZY")  # BAD from Dovecot
                c.sock.sendall(b"a6 IDLE\r\n")
                c.read_line()
                time.sleep(1.2)  # a keepalive or two ('* OK Still here'; dropped for K-9)
                c.sock.sendall(b"DONE\r\n")
                while not c.read_line().startswith(b"a6 "):
                    pass
                c.command("a7", "LOGOUT")
                sock.close()
        # imaplib (recognised by its tags), with STARTTLS and AUTHENTICATE PLAIN.
        client = imaplib.IMAP4("127.0.0.1", self.plain)
        client.starttls(ctx)
        client.authenticate("PLAIN", lambda _: f"\0alice\0{USERS['alice']}".encode())
        client.select("INBOX")
        client.noop()
        client.logout()
        # A line over the limit: a protocol error, answered BAD [TOOBIG].
        c = RawClient(socket.create_connection(("127.0.0.1", self.plain), timeout=20))
        c.sock.sendall(b"t1 NOOP " + b"x" * 70000 + b"\r\n")
        self.assertIn(b"TOOBIG", c.read_line())
        c.command("t2", "LOGOUT")
        # A rule reload (SIGHUP).
        self.proxy.proc.send_signal(signal.SIGHUP)


    def test_every_panel_query_returns_series(self):
        subprocess.run([sys.executable, os.path.join(DASHBOARDS, "build.py"), "--check"], check=True)
        self.assertGreater(len(list(panel_queries(routing=False))), 25)
        # Right after start, before any session: every family is there, at 0 where
        # its label values are known in advance (a rate needs two scrapes).
        for family in ("imapscope_protocol_errors_total", "imapscope_findings_total",
                       "imapscope_full_resync_bytes_total", "imapscope_rule_hits_total"):
            deadline = time.monotonic() + 30
            while not self.prometheus.query(f"sum({family})")["data"]["result"] and time.monotonic() < deadline:
                time.sleep(0.5)
            answer = self.prometheus.query(f"sum({family})")["data"]["result"]
            self.assertEqual([float(r["value"][1]) for r in answer], [0.0], family)
        deadline = time.monotonic() + 30
        while True:
            failed, empty = panels_without_series(self.prometheus)
            if (not failed and not empty) or time.monotonic() > deadline:
                break
            time.sleep(1)
        self.assertEqual(failed, [])
        self.assertEqual(empty, [], "panels without series before any traffic")
        # (The fixture's port checks were sessions: closed by the client, not errors.)
        before = self.prometheus.query('imapscope_sessions_closed_total{reason="server_error"}')["data"]["result"]
        self.assertEqual([float(r["value"][1]) for r in before], [0.0])

        self.traffic()
        # Let Prometheus take a few scrapes after the traffic.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            result = self.prometheus.query("sum(imapscope_sessions_closed_total)")["data"]["result"]
            if result and float(result[0]["value"][1]) >= 8:
                break
            time.sleep(0.5)
        time.sleep(3)
        failed, empty = panels_without_series(self.prometheus)
        self.assertEqual(failed, [])
        self.assertEqual(empty, [], "panels without series")
        # The instance variable's query.
        values = http_json(f"{self.prometheus.url}/api/v1/label/instance/values?"
                           + urllib.parse.urlencode({"match[]": "imapscope_sessions_total"}))
        self.assertEqual(values["data"], [f"127.0.0.1:{self.proxy.admin_port}"])
        # Some figures are what the traffic did.
        def value(expr):
            return float(self.prometheus.query(expr)["data"]["result"][0]["value"][1])
        self.assertGreaterEqual(value('sum(imapscope_commands_total{result="bad",command="other"})'), 6)
        self.assertGreaterEqual(value('sum(imapscope_client_identified_total{client="outlook",method="id"})'), 2)
        self.assertGreaterEqual(value('sum(imapscope_tls_sessions_total{side="client"})'), 4)
        self.assertGreaterEqual(value('sum(imapscope_rule_hits_total{rule="idle-keepalive-drop-k9"})'), 1)
        self.assertGreaterEqual(value('sum(imapscope_authentications_total{mechanism="plain",result="ok"})'), 1)
        self.assertEqual(value("sum(imapscope_sessions_active)"), 0)


class Routing(unittest.TestCase):
    """The Backends row in routing mode (a route map naming one Dovecot): its panels
    answer from start-up, and the figures follow logins, a wrong password and a drain."""

    @classmethod
    def setUpClass(cls):
        cls.dovecot = Dovecot().start()
        cls.port = free_port()
        cls.backend = f"127.0.0.1:{cls.dovecot.port}"
        cls.map = os.path.join(cls.dovecot.dir, "routes.map")
        with open(cls.map, "w") as f:
            f.write(f"*    {cls.backend}\n")
        cls.proxy = Imapscope(["--listen", f"127.0.0.1:{cls.port}", "--route-map", cls.map]).start([cls.port])
        cls.prometheus = Prometheus(f"127.0.0.1:{cls.proxy.admin_port}")

    @classmethod
    def tearDownClass(cls):
        cls.prometheus.stop()
        cls.proxy.stop()
        cls.dovecot.stop()

    def value(self, expr):
        result = self.prometheus.query(expr)["data"]["result"]
        return float(result[0]["value"][1]) if result else None

    def wait_for(self, expr, expected):
        deadline = time.monotonic() + 30
        while self.value(expr) != expected and time.monotonic() < deadline:
            time.sleep(0.5)
        self.assertEqual(self.value(expr), expected, expr)

    def test_backends_row(self):
        self.assertGreaterEqual(len(list(panel_queries(routing=True))), 6)
        # Before any session: every panel of the row has series (at 0).
        deadline = time.monotonic() + 30
        while True:
            failed, empty = panels_without_series(self.prometheus, routing=True)
            if (not failed and not empty) or time.monotonic() > deadline:
                break
            time.sleep(1)
        self.assertEqual(failed, [])
        self.assertEqual(empty, [], "Backends panels without series before any traffic")
        backend = f'backend="{self.backend}"'
        self.wait_for(f"imapscope_backend_up{{{backend}}}", 1.0)  # the first health check passed

        alice = imaplib.IMAP4("127.0.0.1", self.port)
        alice.login("alice", USERS["alice"])
        alice.select("INBOX")
        self.wait_for(f"imapscope_backend_sessions{{{backend}}}", 1.0)
        wrong = imaplib.IMAP4("127.0.0.1", self.port)
        with self.assertRaises(imaplib.IMAP4.error):
            wrong.login("alice", "not her password")
        wrong.logout()
        alice.logout()
        self.wait_for(f"imapscope_backend_sessions{{{backend}}}", 0.0)
        self.wait_for('imapscope_route_logins_total{result="ok"}', 1.0)
        self.wait_for('imapscope_route_logins_total{result="no"}', 1.0)
        self.assertGreaterEqual(self.value('sum(imapscope_route_lookups_total{result="routed"})'), 2)
        self.assertGreaterEqual(self.value(f'imapscope_backend_checks_total{{{backend},result="ok"}}'), 1)

        status, body = self.proxy.admin("POST", "/api/backends/drain", {"backend": self.backend})
        self.assertEqual((status, body), (200, {"backend": self.backend, "state": "draining"}))
        self.wait_for(f"imapscope_backend_draining{{{backend}}}", 1.0)
        status, _ = self.proxy.admin("POST", "/api/backends/undrain", {"backend": self.backend})
        self.assertEqual(status, 200)
        self.wait_for(f"imapscope_backend_draining{{{backend}}}", 0.0)
        time.sleep(3)
        failed, empty = panels_without_series(self.prometheus, routing=True)
        self.assertEqual(failed, [])
        self.assertEqual(empty, [], "Backends panels without series")


class Promtool(unittest.TestCase):
    def test_scrape_config_and_alerting_rules(self):
        prometheus_dir = os.path.join(DASHBOARDS, "prometheus")
        for args in (["check", "config", "prometheus.yml"], ["check", "rules", "alerts.yml"],
                     ["test", "rules", "alerts_test.yml"]):
            result = subprocess.run(["promtool", *args], cwd=prometheus_dir, capture_output=True, text=True, timeout=60)
            self.assertEqual(result.returncode, 0, result.stdout + result.stderr)


if __name__ == "__main__":
    unittest.main()
