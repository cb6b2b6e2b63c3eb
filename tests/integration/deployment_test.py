"""The load-balancer recipe of docs/deployment.md, run on loopback: HAProxy (Debian, TCP mode,
send-proxy-v2, readiness checks on the admin address) in front of two imapscope
instances in front of Dovecot, and one Prometheus scraping both.

The configurations are docs/deployment.md's own blocks, with this
test's ports and certificate files put in. Clients come from distinct 127.0.0.x
addresses; Dovecot's log must show each of them, both instances must have carried
sessions, Prometheus must see both instances and the dashboards' panels must answer
for each; a draining instance (SIGTERM) must get no new sessions while its running
one finishes.
"""
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import unittest
import urllib.error
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(HERE, "..", "support"))
from imap_fixtures import start_process, temp_dir, USERS, Dovecot, Imapscope, RawClient, free_port, stop_process, wait_for_port, wait_until  # noqa: E402
from prometheus_fixture import Prometheus, http_json  # noqa: E402

CLIENTS = [f"127.0.0.{n}" for n in range(31, 39)]


def recipe_blocks():
    """docs/deployment.md's fenced blocks marked <!-- recipe: NAME -->, by NAME."""
    with open(os.path.join(ROOT, "docs", "deployment.md")) as f:
        text = f.read()
    blocks = dict(re.findall(r"<!-- recipe: (\S+) -->\n```[a-z]*\n(.*?)```", text, re.S))
    for name in ("haproxy.cfg", "imapscope-a.json", "dovecot.conf", "prometheus.yml"):
        if name not in blocks:
            raise AssertionError(f"docs/deployment.md has no recipe block {name}")
    return blocks


def substitute(text, mapping):
    for old, new in mapping.items():
        text = re.sub(r"(?<![\d.])" + re.escape(old) + r"(?!\d)", new, text)
    return text


class Recipe(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dovecot = cls.haproxy = cls.prometheus = None
        cls.proxies = {}
        cls.dir = temp_dir(prefix="imapscope-deploy-")
        try:
            cls.start_everything()
        except BaseException:
            cls.tearDownClass()  # unittest doesn't when setUpClass fails
            raise

    @classmethod
    def start_everything(cls):
        blocks = recipe_blocks()
        cls.dovecot = Dovecot(extra_config=blocks["dovecot.conf"]).start()
        certs = cls.dovecot.certs
        cls.front = free_port()
        cls.listen = {"a": free_port(), "b": free_port()}
        cls.admin = {"a": free_port(), "b": free_port()}
        ports = {"127.0.0.1:993": f"127.0.0.1:{cls.front}",
                 "127.0.0.1:10993": f"127.0.0.1:{cls.listen['a']}",
                 "127.0.0.1:11993": f"127.0.0.1:{cls.listen['b']}",
                 "127.0.0.1:9143": f"127.0.0.1:{cls.admin['a']}",
                 "127.0.0.1:9144": f"127.0.0.1:{cls.admin['b']}",
                 "port 9143": f"port {cls.admin['a']}",
                 "port 9144": f"port {cls.admin['b']}",
                 "127.0.0.1:143": f"127.0.0.1:{cls.dovecot.port}"}
        files = {"/etc/imapscope/cert.pem": certs["cert"], "/etc/imapscope/key.pem": certs["key"]}
        for name in ("a", "b"):
            # The second instance: "the same with 11993 and 9144".
            text = blocks["imapscope-a.json"]
            if name == "b":
                text = text.replace("127.0.0.1:10993", "127.0.0.1:11993").replace("127.0.0.1:9143", "127.0.0.1:9144")
            text = substitute(text, ports)
            for old, new in files.items():
                text = text.replace(old, new)
            config = json.loads(text)
            config["timeouts"]["shutdown_grace_ms"] = 4000  # the test's drain, not a production one
            path = os.path.join(cls.dir, f"imapscope-{name}.json")
            with open(path, "w") as f:
                json.dump(config, f)
            cls.proxies[name] = Imapscope(["--config", path, "--admin", f"127.0.0.1:{cls.admin[name]}"])
            cls.proxies[name].start([cls.listen[name], cls.admin[name]])
        cfg = os.path.join(cls.dir, "haproxy.cfg")
        with open(cfg, "w") as f:
            f.write(substitute(blocks["haproxy.cfg"], ports))
        check = subprocess.run(["haproxy", "-c", "-f", cfg], capture_output=True, text=True, timeout=30)
        if check.returncode != 0:
            raise AssertionError("haproxy -c: " + check.stdout + check.stderr)
        cls.haproxy = start_process(["haproxy", "-f", cfg, "-db"], os.path.join(cls.dir, "haproxy.log"),
                                    stdout=subprocess.DEVNULL)
        wait_for_port(cls.front, proc=cls.haproxy)
        cls.prometheus = Prometheus([], scrape_config=substitute(
            blocks["prometheus.yml"].replace("scrape_interval: 15s", "scrape_interval: 1s"), ports))

    @classmethod
    def tearDownClass(cls):
        if cls.prometheus:
            cls.prometheus.stop()
        stop_process(cls.haproxy)
        for proxy in cls.proxies.values():
            proxy.stop()
        if cls.dovecot:
            cls.dovecot.stop()
        shutil.rmtree(cls.dir, ignore_errors=True)

    def client(self, source, user="alice"):
        sock = socket.create_connection(("127.0.0.1", self.front), timeout=20, source_address=(source, 0))
        context = ssl.create_default_context(cafile=self.dovecot.certs["ca"])
        client = RawClient(context.wrap_socket(sock, server_hostname="localhost"))
        self.assertTrue(client.greeting.startswith(b"* OK"), client.greeting)
        self.assertIn(b"a1 OK", client.command("a1", f"LOGIN {user} {USERS[user]}"))
        return client

    def readyz(self, name):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.admin[name]}/readyz", timeout=5) as r:
                return r.status
        except urllib.error.HTTPError as e:
            return e.code

    def dovecot_rips(self):
        return set(re.findall(r"Login: user=<\w+>, method=PLAIN, rip=([\d.]+),", self.dovecot.log()))

    def test_1_client_addresses_reach_dovecot_through_both_instances(self):
        # HAProxy's checks must have found both instances ready.
        time.sleep(2.5)
        # Sessions open at the same time, so that leastconn spreads them.
        clients = [self.client(source) for source in CLIENTS]
        for c in clients:
            self.assertIn(b"a2 OK", c.command("a2", "SELECT INBOX"))
        wait_until("Dovecot's login lines for every client", lambda: set(CLIENTS) <= self.dovecot_rips(), 30, 0.2)
        logs = {name: proxy.log() for name, proxy in self.proxies.items()}
        for name, log in logs.items():
            carried = re.findall(r"event=session_start session=\d+ listener=imaps client=(127\.0\.0\.\d+):\d+ "
                                 r"via=127\.0\.0\.1:\d+", log)
            self.assertGreaterEqual(len(carried), 2, f"instance {name} carried {carried}")
        everyone = " ".join(logs.values())
        for source in CLIENTS:
            self.assertIn(f"client={source}:", everyone)
        # HAProxy's checks go to the admin address: no refusals but the fixtures' own
        # port probes (connect, close).
        self.assertNotRegex(everyone, r"proxy_header_refused .*result=(?!closed)")
        for c in clients:
            c.close()

    def test_2_one_prometheus_sees_both_instances(self):
        instances = sorted(f"127.0.0.1:{port}" for port in self.admin.values())

        def both_scraped():
            answer = self.prometheus.query("sum by (instance) (imapscope_sessions_total)")["data"]["result"]
            counted = {r["metric"]["instance"]: float(r["value"][1]) for r in answer}
            return sorted(counted) == instances and sum(counted.values()) >= len(CLIENTS) and counted
        counted = wait_until("both instances' sessions in Prometheus", both_scraped, 60, 0.2)
        self.assertTrue(all(v >= 2 for v in counted.values()), counted)
        # The dashboards' instance variable lists both; every panel answers for each one.
        values = http_json(f"{self.prometheus.url}/api/v1/label/instance/values?"
                           + urllib.parse.urlencode({"match[]": "imapscope_sessions_total"}))
        self.assertEqual(sorted(values["data"]), instances)
        with open(os.path.join(ROOT, "dashboards", "grafana", "dashboards", "imapscope-overview.json")) as f:
            overview = json.load(f)
        # The panels that this traffic (logins, SELECTs, closed sessions) must fill, for
        # each instance on its own; Prometheus needs two scrapes of a series for a rate.
        wanted = {"Sessions open", "New sessions /s", "Commands /s", "Bytes /s", "Session close reasons /s",
                  "Command latency p50"}
        exprs = [(p["title"], t["expr"]) for p in overview["panels"] for t in p["targets"]
                 if p["title"] in wanted and "$instance" in t["expr"]]
        self.assertEqual({title for title, _ in exprs}, wanted)

        def empty_panels(instance):
            empty = []
            for title, expr in exprs:
                concrete = expr.replace("$__rate_interval", "1m").replace("$instance", instance)
                answer = self.prometheus.query(concrete)
                self.assertEqual(answer["status"], "success", concrete)
                if not answer["data"]["result"]:
                    empty.append(title)
            return empty
        for instance in instances:
            try:
                wait_until(f"{instance}'s panels", lambda: not empty_panels(instance), 30, 0.2)
            except AssertionError:
                self.fail(f"{instance}: no series for {empty_panels(instance)}")

    def test_3_a_draining_instance_gets_no_new_sessions(self):
        # Two sessions: leastconn puts one on each instance.
        held = [self.client("127.0.0.40"), self.client("127.0.0.41")]
        before_a = self.proxies["a"].log().count("event=session_start")
        self.proxies["a"].proc.send_signal(signal.SIGTERM)
        wait_until("instance a's /readyz to turn 503", lambda: self.readyz("a") == 503, 30, 0.2)
        time.sleep(1.5)  # HAProxy's check (inter 1s, fall 1) takes it out
        for n in range(42, 46):
            c = self.client(f"127.0.0.{n}")
            self.assertIn(b"a2 OK", c.command("a2", "NOOP"))
            c.close()
        self.assertEqual(self.proxies["a"].log().count("event=session_start"), before_a)
        # a ends once its grace period is over: its session gets a BYE, b's goes on.
        self.assertEqual(self.proxies["a"].proc.wait(timeout=30), 0)
        heard = [c.read_for(1.0) for c in held]
        self.assertEqual(sum(b"* BYE" in h for h in heard), 1, heard)
        survivor = held[0] if b"* BYE" in heard[1] else held[1]
        self.assertIn(b"a3 OK", survivor.command("a3", "NOOP"))
        for c in held:
            c.sock.close()

if __name__ == "__main__":
    unittest.main()
