"""The admin address end to end: imapscope in front of a real Dovecot, real imaplib
sessions, and the admin API read over HTTP: the live session table, one session's
events and its server-sent-event tail, on-demand captures (by user, mid-session,
stopped), the token (made at first start, or a configured file), and the live page
driven by a real headless Chromium (logging in through the cookie; in routing mode
its Backends section, drained, undrained and kicked from its buttons).
Everything on 127.0.0.1."""
import http.client
import imaplib
import json
import os
import shutil
import signal
import sys
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "support"))
from imap_fixtures import temp_dir, USERS, Dovecot, Imapscope, free_port, wait_until  # noqa: E402

DOVECOT = None


def setUpModule():
    global DOVECOT
    DOVECOT = Dovecot().start()


def tearDownModule():
    DOVECOT.stop()


class Proxy:
    """imapscope with transcripts written only for captures, user names in clear."""

    def __init__(self, test, extra_config=None, token=None, state_args=None, routing=None):
        self.dir = temp_dir(prefix="imapscope-live-")
        os.chmod(self.dir, 0o755)
        test.addCleanup(shutil.rmtree, self.dir, True)
        self.out = os.path.join(self.dir, "transcripts")
        self.port = free_port()
        self.token = token
        config = {"user_names": "clear",
                  "transcripts": {"dir": self.out, "select": {"sample": 0}},
                  "listeners": [{"listen": f"127.0.0.1:{self.port}",
                                 "upstream": {"addresses": [f"127.0.0.1:{DOVECOT.port}"]}}]}
        if token:
            fd = os.open(os.path.join(self.dir, "token"), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(token + "\n")
            config["admin_token_file"] = os.path.join(self.dir, "token")
        if routing:  # routing mode: no upstream, each login to the backend the routing names
            del config["listeners"][0]["upstream"]
            config["routing"] = routing
        config.update(extra_config or {})
        config = {k: v for k, v in config.items() if v is not None}
        path = os.path.join(self.dir, "config.json")
        with open(path, "w") as f:
            json.dump(config, f)
        self.proxy = Imapscope(["--config", path] + (state_args or []))
        self.proxy.token = token
        test.addCleanup(shutil.rmtree, self.proxy.log_dir, True)
        self.proxy.start([self.port])
        test.addCleanup(self.proxy.stop)
        self.admin = f"http://127.0.0.1:{self.proxy.admin_port}"

    def request(self, method, path, body=None, token=True):
        """(status, parsed JSON body or text); token: True (the proxy's), False/"" (none) or a string"""
        return self.proxy.admin(method, path, body, token=token)

    def get(self, path):
        return self.proxy.admin_get(path)

    def sessions(self):
        return self.get("/api/sessions")["sessions"]

    def session_of(self, user):
        for s in self.sessions():
            if s["user"] == user:
                return s
        return None

    def written(self):
        """Every transcript event written so far (the writer flushes per batch)."""
        out = []
        if not os.path.isdir(self.out):
            return out
        for name in sorted(os.listdir(self.out)):
            with open(os.path.join(self.out, name)) as f:
                out += [json.loads(line) for line in f if line.strip()]
        return out


def login(port, user):
    c = imaplib.IMAP4("127.0.0.1", port)
    c.login(user, USERS[user])
    return c


class Api(unittest.TestCase):
    def test_session_table_and_events(self):
        proxy = Proxy(self)
        alice = login(proxy.port, "alice")
        alice.select("INBOX")
        s = wait_until("alice's row", lambda: proxy.session_of("alice"))
        self.assertEqual(s["state"], "selected")
        self.assertEqual(s["mailbox"], "INBOX")
        self.assertEqual(s["last_command"], "SELECT")
        self.assertEqual(s["client"]["family"], "python_imaplib")
        self.assertTrue(s["client_address"].startswith("127.0.0.1:"))
        self.assertGreater(s["bytes"]["from_server"], 0)
        self.assertEqual(proxy.get(f"/api/sessions/{s['id']}")["id"], s["id"])

        events = proxy.get(f"/api/sessions/{s['id']}/events")
        texts = [e.get("text", "") for e in events["events"]]
        self.assertTrue(any("LOGIN alice ***" in t for t in texts), texts)
        self.assertTrue(any(t.endswith("SELECT INBOX") for t in texts), texts)
        self.assertNotIn(USERS["alice"], json.dumps(events))
        after = events["last"]
        alice.noop()
        newer = proxy.get(f"/api/sessions/{s['id']}/events?after={after}")["events"]
        self.assertTrue(any(e.get("text", "").endswith("NOOP") for e in newer), newer)
        self.assertTrue(all("NOOP" in e.get("text", "") or e.get("dir") == "S" for e in newer), newer)

        alice.logout()
        wait_until("alice in the closed list",
                 lambda: any(r["id"] == s["id"] for r in proxy.get("/api/sessions")["recent"]))
        self.assertEqual(proxy.request("GET", "/api/sessions/999999")[0], 404)
        self.assertEqual(proxy.request("GET", "/api/sessions/abc/events")[0], 404)
        self.assertEqual(proxy.request("POST", "/api/sessions", {})[0], 405)

    def test_live_tail_streams_until_the_session_ends(self):
        proxy = Proxy(self)
        bob = login(proxy.port, "bob")
        s = wait_until("bob's row", lambda: proxy.session_of("bob"))
        conn = http.client.HTTPConnection("127.0.0.1", proxy.proxy.admin_port, timeout=20)
        conn.request("GET", f"/api/sessions/{s['id']}/events",
                     headers={"Accept": "text/event-stream", "Authorization": "Bearer " + proxy.proxy.admin_token()})
        response = conn.getresponse()
        self.assertEqual(response.status, 200)
        self.assertEqual(response.getheader("Content-Type"), "text/event-stream")
        received = []
        done = threading.Event()

        def read():
            block = []
            for raw in response:
                line = raw.decode().rstrip("\n")
                if line:
                    block.append(line)
                    continue
                received.append(block)
                block = []
                if any(b == "event: end" for b in received[-1]):
                    break
            done.set()

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        bob.select("INBOX")
        bob.noop()
        # The commands show up while the session runs, not only at its end.
        wait_until("the live NOOP", lambda: any("NOOP" in line for b in received for line in b))
        self.assertFalse(done.is_set())
        bob.logout()
        self.assertTrue(done.wait(20), "the stream ends with the session")
        data = [json.loads(line[6:]) for b in received for line in b if line.startswith("data: ")]
        ids = [int(line[4:]) for b in received for line in b if line.startswith("id: ")]
        self.assertEqual(ids, sorted(ids))
        self.assertEqual(len(ids), len(set(ids)))
        self.assertTrue(any(e.get("event") == "close" for e in data), data)
        self.assertNotIn(USERS["bob"], json.dumps(data))

    def test_captures(self):
        proxy = Proxy(self)
        # Bad requests say why.
        status, body = proxy.request("POST", "/api/captures", {"duration_s": 5})
        self.assertEqual((status, "name a user" in body["error"]), (400, True))
        status, body = proxy.request("POST", "/api/captures", {"address": "mail.example.org"})
        self.assertEqual(status, 400)
        self.assertIn("not an address", body["error"])

        # Alice is already logged in when her capture starts: her session is written
        # from what the live view still holds of it on.
        alice = login(proxy.port, "alice")
        alice.select("INBOX")
        wait_until("alice's row", lambda: proxy.session_of("alice"))
        status, capture = proxy.request("POST", "/api/captures", {"user": "alice", "duration_s": 120})
        self.assertEqual(status, 201, capture)
        self.assertEqual(capture["user"], "alice")
        alice.noop()
        bob = login(proxy.port, "bob")  # not captured
        bob.select("INBOX")
        bob.noop()
        alice2 = login(proxy.port, "alice")  # a new session of hers: captured from the start
        alice2.select("INBOX")

        listed = proxy.get("/api/captures")["captures"]
        self.assertEqual([c["id"] for c in listed], [capture["id"]])
        self.assertEqual(listed[0]["sessions"], 2)
        metrics = proxy.request("GET", "/metrics")[1]
        self.assertIn("imapscope_captures_active 1", metrics)

        status, _ = proxy.request("DELETE", f"/api/captures/{capture['id']}")
        self.assertEqual(status, 204)
        self.assertEqual(proxy.request("DELETE", f"/api/captures/{capture['id']}")[0], 404)
        alice.status("INBOX", "(MESSAGES)")  # after the stop: not written
        for c in (alice, alice2, bob):
            c.logout()
        proxy.proxy.stop()  # flushes the writer

        events = proxy.written()
        sessions = {e["s"] for e in events}
        self.assertEqual(len(sessions), 2, sessions)
        users = {e["user"] for e in events if e.get("event") == "user"}
        self.assertEqual(users, {"alice"})
        texts = [e.get("text", "") for e in events]
        self.assertTrue(any(t.endswith("SELECT INBOX") for t in texts))  # from the backlog
        self.assertTrue(any(t.endswith("NOOP") for t in texts))
        self.assertFalse(any("STATUS INBOX" in t for t in texts), "written after the capture stopped")
        self.assertEqual(sum(1 for e in events if e.get("event") == "capture_end"), 2)
        everything = json.dumps(events) + proxy.proxy.log()
        for secret in USERS.values():
            self.assertNotIn(secret, everything)

    def test_captures_need_a_transcripts_folder(self):
        proxy = Proxy(self, {"transcripts": None})
        status, body = proxy.request("POST", "/api/captures", {"user": "alice"})
        self.assertEqual(status, 409)
        self.assertIn("transcripts folder", body["error"])


class Probes(unittest.TestCase):
    def test_ready_until_draining(self):
        proxy = Proxy(self, {"timeouts": {"shutdown_grace_ms": 20000}})
        self.assertEqual(proxy.request("GET", "/healthz", token=""), (200, {"status": "alive"}))
        self.assertEqual(proxy.request("GET", "/readyz", token=""), (200, {"status": "ready"}))
        alice = login(proxy.port, "alice")  # keeps the drain waiting for its grace period
        proxy.proxy.proc.send_signal(signal.SIGTERM)
        wait_until("readyz to say draining", lambda: proxy.request("GET", "/readyz")[0] == 503)
        self.assertEqual(proxy.request("GET", "/healthz")[0], 200)  # alive all the same
        alice.logout()
        self.assertEqual(proxy.proxy.proc.wait(timeout=30), 0)


class Token(unittest.TestCase):
    TOKEN = "t0ken-" + "9f2c4e1a7b3d5f60"
    API = ["/api/sessions", "/api/sessions/1", "/api/sessions/1/events", "/api/captures", "/api/captures/1",
           "/api/findings", "/api/nothing-here"]

    def test_made_at_first_start_required_everywhere_and_kept(self):
        state = temp_dir(prefix="imapscope-state-")
        self.addCleanup(shutil.rmtree, state, True)
        state_dir = os.path.join(state, "state")
        proxy = Proxy(self, state_args=["--state-dir", state_dir])
        path = os.path.join(state_dir, "admin-token")
        token = proxy.proxy.admin_token()
        self.assertEqual(os.stat(path).st_mode & 0o777, 0o600)
        self.assertEqual(os.stat(state_dir).st_mode & 0o777, 0o700)
        self.assertGreaterEqual(len(token), 32)
        for path_ in self.API + ["/", "/index.html"]:
            self.assertEqual(proxy.request("GET", path_, token=False)[0], 401, path_)
            self.assertEqual(proxy.request("GET", path_, token="wrong-" + token)[0], 401, path_)
        for method in ("POST", "DELETE"):
            self.assertEqual(proxy.request(method, "/api/captures/1", {}, token=False)[0], 401)
        self.assertEqual(proxy.request("POST", "/api/captures", {"user": "alice"}, token=False)[0], 401)
        self.assertEqual(proxy.request("GET", "/api/sessions")[0], 200)
        self.assertEqual(proxy.request("GET", "/api/captures")[0], 200)
        status, page = proxy.request("GET", "/")
        self.assertEqual(status, 200)
        self.assertIn("imapscope: live sessions", page)
        status, login = proxy.request("GET", "/", token=False)
        self.assertIn('name="token"', login)  # the way in for a browser
        self.assertNotIn("live sessions", login)
        # Open on loopback, as Prometheus exporters are: probes and metrics.
        self.assertEqual(proxy.request("GET", "/metrics", token=False)[0], 200)
        self.assertEqual(proxy.request("GET", "/readyz", token=False)[0], 200)
        self.assertEqual(proxy.request("GET", "/healthz", token=False)[0], 200)
        self.assertNotIn(token, proxy.proxy.log())
        self.assertIn(os.path.join(state_dir, "admin-token"), proxy.proxy.log())  # where to find it

        # The next start reads the same token.
        proxy.proxy.stop()
        again = Proxy(self, state_args=["--state-dir", state_dir])
        self.assertEqual(again.proxy.admin_token(), token)
        self.assertEqual(again.request("GET", "/api/sessions", token=token)[0], 200)

    def test_configured_token_file(self):
        proxy = Proxy(self, token=self.TOKEN)
        self.assertEqual(proxy.request("GET", "/api/sessions", token=False)[0], 401)
        self.assertEqual(proxy.request("GET", "/api/sessions", token="wrong-" + self.TOKEN[6:])[0], 401)
        self.assertEqual(proxy.request("GET", "/api/sessions")[0], 200)
        self.assertFalse(os.path.exists(os.path.join(proxy.proxy.state_dir, "admin-token")))
        self.assertNotIn(self.TOKEN, proxy.proxy.log())

    def test_world_readable_token_file_refused(self):
        folder = temp_dir(prefix="imapscope-token-")
        self.addCleanup(shutil.rmtree, folder, True)
        path = os.path.join(folder, "token")
        with open(path, "w") as f:
            f.write(self.TOKEN + "\n")
        os.chmod(path, 0o644)
        proxy = Imapscope(["--listen", f"127.0.0.1:{free_port()}", "--upstream", f"127.0.0.1:{DOVECOT.port}",
                           "--admin-token-file", path])
        self.addCleanup(shutil.rmtree, proxy.log_dir, True)
        proxy.start()
        self.addCleanup(proxy.stop)
        self.assertEqual(proxy.proc.wait(timeout=20), 2)
        self.assertIn(f"flag --admin-token-file: {path}: can be read by every local user (chmod o-r)", proxy.log())
        self.assertNotIn(self.TOKEN, proxy.log())

    def test_metrics_need_the_token_off_loopback(self):
        # Bound to every address (reached here on loopback): not a loopback address, so
        # /metrics needs the credential; the probes stay open.
        port, admin = free_port(), free_port()
        proxy = Imapscope(["--listen", f"127.0.0.1:{port}", "--upstream", f"127.0.0.1:{DOVECOT.port}",
                           "--admin", f"0.0.0.0:{admin}"])
        self.addCleanup(shutil.rmtree, proxy.log_dir, True)
        proxy.start([port])
        self.addCleanup(proxy.stop)
        self.assertEqual(proxy.admin("GET", "/metrics", token=False)[0], 401)
        status, text = proxy.admin("GET", "/metrics")
        self.assertEqual(status, 200)
        self.assertIn("imapscope_", text)
        self.assertEqual(proxy.admin("GET", "/healthz", token=False)[0], 200)
        self.assertEqual(proxy.admin("GET", "/api/sessions", token=False)[0], 401)


class Browser(unittest.TestCase):
    """The live page in a real headless Chromium (Debian's chromium and chromedriver,
    driven through Selenium) against a running imapscope with real sessions."""

    def setUp(self):
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
        options = webdriver.ChromeOptions()
        for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--no-first-run", "--disable-extensions", "--disable-background-networking",
                    "--window-size=1400,1000"):
            options.add_argument(arg)
        options.binary_location = "/usr/bin/chromium"
        self.profile = temp_dir(prefix="imapscope-chromium-")
        self.addCleanup(shutil.rmtree, self.profile, True)
        options.add_argument("--user-data-dir=" + self.profile)
        self.driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
        self.addCleanup(self.driver.quit)
        self.driver.set_page_load_timeout(30)

    # Read in one script run: the page redraws its table every second, so elements
    # found one by one may be gone by the time their text is asked for.
    def rows(self):
        pairs = self.driver.execute_script(
            "return [...document.querySelectorAll('#sessions tbody tr[data-id]')].map(tr => [tr.dataset.id, tr.innerText])")
        return {int(k): v for k, v in pairs}

    def conversation(self):
        return self.driver.execute_script(
            "return [...document.querySelectorAll('#conversation .line')].map(d => d.textContent)")

    def test_page_shows_sessions_and_tails_a_conversation(self):
        from selenium.webdriver.common.by import By
        proxy = Proxy(self)
        token = proxy.proxy.admin_token()
        alice = login(proxy.port, "alice")
        alice.select("INBOX")
        # Without the cookie: the form that asks for the token, and nothing else.
        self.driver.get(proxy.admin + "/")
        self.assertNotIn("alice", self.driver.page_source)
        form = self.driver.find_element(By.TAG_NAME, "form")
        form.find_element(By.NAME, "token").send_keys(token)
        form.find_element(By.TAG_NAME, "button").click()
        # "/?token=..." answered with the cookie and a redirect to "/": the token leaves
        # the address bar, and no script of the page can read the cookie.
        # The address was "/" before the form went too: the cookie says the answer came.
        wait_until("the page at / with its cookie",
                   lambda: self.driver.current_url == proxy.admin + "/" and self.driver.get_cookies())
        cookies = self.driver.get_cookies()
        self.assertEqual(len(cookies), 1, cookies)
        self.assertTrue(cookies[0]["httpOnly"], cookies)
        self.assertEqual(cookies[0]["sameSite"], "Strict", cookies)
        self.assertNotIn(token, cookies[0]["value"])
        self.assertEqual(self.driver.execute_script("return document.cookie"), "")
        rows = wait_until("alice's row on the page", lambda: {k: v for k, v in self.rows().items() if "alice" in v})
        session_id, text = next(iter(rows.items()))
        # Transparent mode: no backends to show (/api/backends answers 404).
        self.assertTrue(self.driver.execute_script("return document.getElementById('backends-section').hidden"))
        self.assertIn("selected", text)
        self.assertIn("INBOX", text)
        self.assertIn("python_imaplib", text)

        # Open her conversation: what happened so far, then what she does next, live.
        self.driver.find_element(By.CSS_SELECTOR, f'#sessions tr[data-id="{session_id}"]').click()
        wait_until("the SELECT in the conversation", lambda: any("SELECT INBOX" in line for line in self.conversation()))
        self.assertTrue(any("LOGIN alice ***" in line for line in self.conversation()))
        alice.select("INBOX", readonly=True)  # EXAMINE
        wait_until("the live EXAMINE", lambda: any("EXAMINE INBOX" in line for line in self.conversation()))

        # Start a capture of bob from the page's form; the API lists it.
        form = self.driver.find_element(By.ID, "capture")
        form.find_element(By.NAME, "user").send_keys("bob")
        form.find_element(By.TAG_NAME, "button").click()
        captures = wait_until("the capture", lambda: proxy.get("/api/captures")["captures"])
        self.assertEqual(captures[0]["user"], "bob")
        wait_until("the capture on the page", lambda: "bob" in self.driver.find_element(By.ID, "captures").text)

        alice.logout()
        wait_until("the session closed on the page",
                 lambda: "closed" in self.rows().get(session_id, "") and
                 any("close" in line for line in self.conversation()))
        page = self.driver.page_source
        self.assertNotIn(USERS["alice"], page)
        self.assertNotIn(token, page)

    def test_tail_goes_on_after_the_stream_time_limit(self):
        from selenium.webdriver.common.by import By
        proxy = Proxy(self, {"admin_limits": {"stream_max_s": 1}})
        alice = login(proxy.port, "alice")
        alice.select("INBOX")
        self.driver.get(proxy.admin + "/?token=" + proxy.proxy.admin_token())
        rows = wait_until("alice's row on the page", lambda: {k: v for k, v in self.rows().items() if "alice" in v})
        session_id = next(iter(rows))
        self.driver.find_element(By.CSS_SELECTOR, f'#sessions tr[data-id="{session_id}"]').click()
        wait_until("the SELECT in the conversation", lambda: any("SELECT INBOX" in line for line in self.conversation()))
        time.sleep(2.5)  # the tail is cut at least twice meanwhile, and resumed after its last event
        alice.noop()
        wait_until("the NOOP after the cuts", lambda: any(line.endswith("NOOP") for line in self.conversation()))
        lines = self.conversation()
        self.assertEqual(sum(1 for line in lines if "SELECT INBOX" in line and "C:" in line), 1, lines)
        self.assertEqual(len(lines), len(set(lines)), lines)
        alice.logout()

    def test_the_demo_link_logs_in(self):
        proxy = Proxy(self)
        token = proxy.proxy.admin_token()
        bob = login(proxy.port, "bob")
        self.driver.get(proxy.admin + "/?token=" + token)  # what scripts/demo.py prints
        wait_until("bob's row on the page", lambda: any("bob" in v for v in self.rows().values()))
        self.assertEqual(self.driver.current_url, proxy.admin + "/")
        bob.logout()


    def alert(self):
        from selenium.common.exceptions import NoAlertPresentException
        try:
            return self.driver.switch_to.alert.text
        except NoAlertPresentException:
            return None

    def test_backends_listed_drained_and_kicked_from_the_page(self):
        # Routing mode: the Backends section, its drain, undrain and kick buttons.
        from selenium.webdriver.common.by import By
        routes = os.path.join(temp_dir(prefix="imapscope-live-routes-"), "routes.map")
        backend = f"127.0.0.1:{DOVECOT.port}"
        with open(routes, "w") as f:
            f.write(f"* {backend}\n")
        proxy = Proxy(self, routing={"map": routes, "kick_spread_ms": 0,
                                     "health": {"interval_ms": 500, "timeout_ms": 2000}})
        alice = login(proxy.port, "alice")
        self.driver.get(proxy.admin + "/?token=" + proxy.proxy.admin_token())
        wait_until("the page at /", lambda: self.driver.current_url == proxy.admin + "/")

        def row():
            return self.driver.execute_script(
                "const tr = document.querySelector('#backends tbody tr');"
                "return document.getElementById('backends-section').hidden || !tr ? '' : tr.innerText")

        def click(label):
            # Found and clicked in one script run (the table is redrawn every second); the
            # click a moment later, so that a confirm() it opens doesn't cut this script's answer.
            clicked = self.driver.execute_script(
                "const b = [...document.querySelectorAll('#backends tbody button')]"
                ".find(b => b.textContent === arguments[0]); if (b) setTimeout(() => b.click(), 200); return !!b", label)
            self.assertTrue(clicked, f"no {label} button in {row()!r}")

        text = wait_until("the backend up with alice's session", lambda: (lambda t: t if backend in t and "up" in t
                                                                            and "\t1\t" in t else "")(row()))
        self.assertIn("drain", text)
        click("drain")
        wait_until("drained", lambda: proxy.get("/api/backends")["backends"][0]["state"] == "draining")
        wait_until("the page says draining", lambda: "draining" in row())
        self.assertEqual(alice.noop()[0], "OK")  # running sessions go on
        bob = imaplib.IMAP4("127.0.0.1", proxy.port)
        self.addCleanup(bob.shutdown)
        with self.assertRaises(imaplib.IMAP4.error) as refused:
            bob.login("bob", USERS["bob"])  # no new ones
        self.assertIn("UNAVAILABLE", str(refused.exception))
        click("undrain")
        wait_until("undrained", lambda: proxy.get("/api/backends")["backends"][0]["state"] == "up")
        wait_until("the page says up", lambda: "up" in row() and "undrain" not in row())
        click("kick all")
        wait_until("the kick's question", lambda: self.alert())
        self.driver.switch_to.alert.accept()  # "End the 1 sessions on ...?"
        wait_until("alice kicked", lambda: proxy.get("/api/backends")["backends"][0]["sessions"] == 0)
        with self.assertRaises((imaplib.IMAP4.abort, OSError)):
            alice.noop()
        alice.shutdown()


if __name__ == "__main__":
    unittest.main()
