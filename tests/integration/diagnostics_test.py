"""Diagnostics end to end: a real Dovecot, imapscope with low thresholds (config
"diagnostics"), and a scripted client per behaviour that reproduces it. Each
finding must show in the log (event=finding), in the metrics
(imapscope_findings_total) and, for one, in a transcript with what it means and
what fixes it; a well-behaved session must trigger none.
"""
import json
import os
import re
import socket
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "support"))
from imap_fixtures import temp_dir, USERS, Dovecot, Imapscope, RawClient, free_port, metric_sum, wait_until  # noqa: E402

# Users of their own per test: Dovecot's per-user limit must not mix the tests up.
MORE_USERS = {name: name + "-secret" for name in ["carol", "dave", "erin", "frank", "grace", "heidi", "ivan",
                                                   "judy", "mallory", "oscar", "peggy"]}
ALL_USERS = dict(USERS, **MORE_USERS)
DOVECOT = None
PROXY = None
WORK = None

THRESHOLDS = {
    "resync_min_messages": 5, "idle_short_s": 60, "idle_churn_count": 3, "keepalive_reaction_s": 3,
    "keepalive_wakeups": 2, "folder_connections": 3, "user_connection_limit": 5, "user_connection_warn": 4,
    "error_repeats": 3, "login_failures": 3, "deleted_messages": 3, "poll_count": 3, "poll_interval_s": 60,
    "timeout_silence_s": 1,
}


def start_proxy(name, timeouts=None, rules=None):
    port = free_port()
    config = {"diagnostics": dict(THRESHOLDS, state_file=os.path.join(WORK, f"diagnostics-state-{name}")),
              "transcripts": {"dir": os.path.join(WORK, "transcripts-" + name)},
              "listeners": [{"listen": f"127.0.0.1:{port}", "upstream": {"addresses": [f"127.0.0.1:{DOVECOT.port}"]}}]}
    if timeouts:
        config["timeouts"] = timeouts
    path = os.path.join(WORK, f"config-{name}.json")
    with open(path, "w") as f:
        json.dump(config, f)
    # The state folder stays across restarts: its label key keys the state file's entries.
    args = ["--config", path, "--state-dir", os.path.join(WORK, f"state-{name}")] + (["--rules", rules] if rules else [])
    proxy = Imapscope(args).start([port])
    proxy.port = port
    return proxy


def setUpModule():
    global DOVECOT, PROXY, WORK
    WORK = temp_dir(prefix="imapscope-diagnostics-")
    DOVECOT = Dovecot(extra_config="imap_idle_notify_interval = 1 secs\n"
                                   "protocol imap {\n  mail_max_userip_connections = 5\n}\n").start()
    with open(f"{DOVECOT.dir}/users", "a") as f:
        for user, password in MORE_USERS.items():
            f.write(f"{user}:{{PLAIN}}{password}\n")
    PROXY = start_proxy("main")


def tearDownModule():
    if PROXY:
        PROXY.stop()
    if DOVECOT:
        DOVECOT.stop()


def login(port, user, source=None):
    sock = socket.create_connection(("127.0.0.1", port), timeout=30, source_address=(source, 0) if source else None)
    c = RawClient(sock)
    answer = c.command("a1", f"LOGIN {user} {ALL_USERS[user]}")
    assert b"a1 OK" in answer, answer
    return c


def direct(user):
    return login(DOVECOT.port, user)


def session_id(proxy, client):
    """The proxy's session id of a client connection (from its session_start line)."""
    port = client.sock.getsockname()[1]
    match = re.search(rf"event=session_start session=(\d+) \S+ client=127\.0\.0\.\d+:{port}\b", proxy.log())
    assert match, f"no session for port {port}"
    return match.group(1)


def findings(proxy, name=None, session=None):
    out = []
    for m in re.finditer(r"event=finding session=(\d+) finding=(\w+) client_family=\S+ detail=(\".*?\"|\S+)$",
                         proxy.log(), re.M):
        if (name is None or m.group(2) == name) and (session is None or m.group(1) == session):
            out.append({"session": m.group(1), "finding": m.group(2), "detail": m.group(3)})
    return out


def wait_finding(proxy, name, session=None, timeout=20):
    wait_until(f"finding {name}", lambda: findings(proxy, name, session), timeout)
    return findings(proxy, name, session)


def logout(c):
    try:
        c.command("z9", "LOGOUT")
    except (ConnectionError, OSError):
        pass
    c.sock.close()


def idle_until_keepalive(c, tag):
    """IDLE, wait for the server's '* OK Still here', then DONE at once."""
    c.sock.sendall(f"{tag} IDLE\r\n".encode())
    assert c.read_line().startswith(b"+")
    deadline = time.monotonic() + 45  # Dovecot may fall back to polling (30 s)
    while time.monotonic() < deadline:
        if c.read_line().startswith(b"* OK Still here"):
            break
    c.sock.sendall(b"DONE\r\n")
    c.until_tagged(tag)


class WellBehaved(unittest.TestCase):
    def test_a_well_behaved_client_triggers_nothing(self):
        c = login(PROXY.port, "alice")
        sid = session_id(PROXY, c)
        c.command("b1", "SELECT INBOX")
        c.command("b2", "UID FETCH 1:* (FLAGS)")  # a small mailbox, once
        c.sock.sendall(b"b3 IDLE\r\n")
        self.assertTrue(c.read_line().startswith(b"+"))
        other = direct("alice")
        other.sock.sendall(b"x1 APPEND INBOX {20}\r\n")
        other.read_line()
        other.sock.sendall(b"Subject: hi\r\n\r\nhello\r\n")
        other.until_tagged("x1")
        logout(other)
        deadline = time.monotonic() + 45
        while time.monotonic() < deadline and b"EXISTS" not in c.read_line():
            pass
        c.sock.sendall(b"DONE\r\n")
        c.until_tagged("b3")
        c.command("b4", "NOOP")
        logout(c)
        wait_until("session end", lambda: f"event=session_end session={sid} " in PROXY.log())
        self.assertEqual(findings(PROXY, session=sid), [])


class Findings(unittest.TestCase):
    def test_uidvalidity_change_seen_across_a_restart(self):
        global PROXY
        c = login(PROXY.port, "bob")
        c.command("c1", "CREATE Renumbered")
        self.assertIn(b"c2 OK", c.command("c2", "SELECT Renumbered"))
        logout(c)
        # The folder is deleted and created again behind the proxy's back: new UIDVALIDITY.
        d = direct("bob")
        d.command("d1", "DELETE Renumbered")
        time.sleep(1.1)  # Dovecot's UIDVALIDITY is a timestamp
        d.command("d2", "CREATE Renumbered")
        logout(d)
        # imapscope restarts in between: the state file remembers.
        self.assertEqual(PROXY.stop(), 0)  # the state file is written on the way out
        self.assertTrue(os.path.exists(os.path.join(WORK, "diagnostics-state-main")))
        PROXY = start_proxy("main")
        c = login(PROXY.port, "bob")
        c.command("c3", "SELECT Renumbered")
        found = wait_finding(PROXY, "uidvalidity_changed")
        self.assertIn("Renumbered: UIDVALIDITY", found[0]["detail"])
        self.assertEqual(metric_sum(PROXY.admin_port, "imapscope_findings_total", 'finding="uidvalidity_changed"'), 1)
        logout(c)

    def test_full_resync_with_its_bytes(self):
        d = direct("carol")
        d.command("d1", "CREATE Sweep")
        for i in range(6):
            d.sock.sendall(b"d%d APPEND Sweep {14}\r\n" % (i + 2))
            d.read_line()
            d.sock.sendall(b"Subject: x\r\n\r\n\r\n")
            d.until_tagged(f"d{i + 2}")
        logout(d)
        c = login(PROXY.port, "carol")
        c.command("c1", "EXAMINE Sweep")
        c.command("c2", "FETCH 1:* (UID FLAGS)")
        sid = session_id(PROXY, c)
        found = wait_finding(PROXY, "full_resync", sid)
        self.assertIn("flags of 6 messages", found[0]["detail"])
        wait_until("finding counted", lambda: metric_sum(PROXY.admin_port, "imapscope_findings_total",
                                                         'finding="full_resync"') >= 1)
        self.assertGreater(metric_sum(PROXY.admin_port, "imapscope_full_resync_bytes_total"), 0)
        # The admin API lists it with the session and the user as user_names shows
        # users (hashed by default), and counts it for that user.
        listed = PROXY.admin_get("/api/findings")
        mine = [f for f in listed["recent"] if f["session"] == int(sid) and f["finding"] == "full_resync"]
        self.assertEqual(len(mine), 1, listed)
        self.assertRegex(mine[0]["user"], r"^u:[0-9a-f]{16}$")
        self.assertNotIn("carol", json.dumps(listed))
        users = {u["user"]: u["findings"] for u in listed["by_user"]}
        self.assertEqual(users[mine[0]["user"]]["full_resync"], 1)
        logout(c)

    def test_idle_churn_and_keepalive_wakeups(self):
        c = login(PROXY.port, "dave")
        sid = session_id(PROXY, c)
        c.command("c1", "SELECT INBOX")
        for i in range(4):  # the 2nd, 3rd and 4th IDLE re-issue a short one
            idle_until_keepalive(c, f"i{i}")
        wait_finding(PROXY, "keepalive_wakeups", sid)
        wait_finding(PROXY, "idle_churn", sid)
        logout(c)

    def test_idle_without_a_selected_mailbox(self):
        c = login(PROXY.port, "erin")
        c.sock.sendall(b"i1 IDLE\r\n")
        self.assertTrue(c.read_line().startswith(b"+"))
        c.sock.sendall(b"DONE\r\n")
        c.until_tagged("i1")
        wait_finding(PROXY, "idle_without_select", session_id(PROXY, c))
        logout(c)

    def test_one_connection_per_folder_and_the_users_limit(self):
        setup = direct("frank")
        for folder in ["Lists", "Work"]:
            setup.command("c" + folder, f"CREATE {folder}")
        logout(setup)
        held = []
        for folder in ["INBOX", "Lists", "Work"]:
            c = login(PROXY.port, "frank")
            c.command("s1", f"SELECT {folder}")
            c.sock.sendall(b"i1 IDLE\r\n")
            self.assertTrue(c.read_line().startswith(b"+"))
            held.append(c)
        wait_finding(PROXY, "connection_per_folder")
        held.append(login(PROXY.port, "frank"))  # the 4th: imapscope's warning (user_connection_warn 4)
        wait_finding(PROXY, "user_connection_limit")
        held.append(login(PROXY.port, "frank"))  # the 5th: Dovecot's limit (5) is reached
        sock = socket.create_connection(("127.0.0.1", PROXY.port), timeout=30)
        refused = RawClient(sock)
        self.assertIn(b"Maximum number of connections", refused.command("a1", f"LOGIN frank {ALL_USERS['frank']}"))
        found = wait_finding(PROXY, "user_connection_limit", session_id(PROXY, refused))
        self.assertIn("mail_max_userip_connections", found[0]["detail"])
        sock.close()
        for c in held:
            c.sock.close()

    def test_error_loop_bad_expected_done(self):
        c = login(PROXY.port, "grace")
        c.command("s1", "SELECT INBOX")
        for _ in range(3):
            c.sock.sendall(b"x IDLE\r\n")
            self.assertTrue(c.read_line().startswith(b"+"))
            c.sock.sendall(b"x NOOP\r\n")  # what the seed's user typed: not DONE
            self.assertIn(b"Expected DONE", c.until_tagged("x"))
        found = wait_finding(PROXY, "error_loop", session_id(PROXY, c))
        self.assertIn("refused (BAD) 3 times", found[0]["detail"])
        logout(c)

    def test_login_failure_storm_names_the_address_never_the_password(self):
        for i in range(3):
            sock = socket.create_connection(("127.0.0.1", PROXY.port), timeout=30, source_address=("127.0.0.20", 0))
            c = RawClient(sock)
            self.assertIn(b"NO", c.command("a1", f"LOGIN heidi wrong-password-{i}"))
            sock.close()
        found = wait_finding(PROXY, "login_failure_storm")
        self.assertIn("from 127.0.0.20", found[0]["detail"])
        self.assertNotIn("wrong-password", PROXY.log())

    def test_deleted_messages_never_expunged(self):
        d = direct("ivan")
        for i in range(4):
            d.sock.sendall(b"d%d APPEND INBOX {14}\r\n" % i)
            d.read_line()
            d.sock.sendall(b"Subject: x\r\n\r\n\r\n")
            d.until_tagged(f"d{i}")
        logout(d)
        c = login(PROXY.port, "ivan")
        sid = session_id(PROXY, c)
        c.command("s1", "SELECT INBOX")
        c.command("s2", "STORE 1:3 +FLAGS.SILENT (\\Deleted)")
        logout(c)  # the Outlook way: flagged, never purged
        found = wait_finding(PROXY, "deleted_build_up", sid)
        self.assertIn("flagged 3 messages", found[0]["detail"])
        # The next session sees them in FETCH FLAGS.
        c = login(PROXY.port, "ivan")
        c.command("s1", "SELECT INBOX")
        c.command("f1", "FETCH 1:* (FLAGS)")
        found = wait_finding(PROXY, "deleted_build_up", session_id(PROXY, c))
        self.assertIn("3 messages flagged \\\\Deleted", found[0]["detail"])
        logout(c)

    def test_polling_where_idle_is_offered(self):
        c = login(PROXY.port, "judy")
        for i in range(3):
            c.command(f"p{i}", "STATUS INBOX (MESSAGES UNSEEN)")
            time.sleep(0.2)
        wait_finding(PROXY, "polling_instead_of_idle", session_id(PROXY, c))
        logout(c)

    def test_inactivity_timeout_of_the_proxy(self):
        proxy = start_proxy("timeout", timeouts={"idle_ms": 2000})
        try:
            c = login(proxy.port, "oscar")
            sid = session_id(proxy, c)
            c.command("s1", "SELECT INBOX")
            # Silence: imapscope's idle timeout closes the session with a BYE.
            self.assertIn(b"BYE", c.read_line())
            found = wait_finding(proxy, "inactivity_timeout", sid)
            self.assertIn("imapscope's idle timeout", found[0]["detail"])
            c.sock.close()
            # The transcript carries the finding with what it means and what fixes it.
            def transcript_finding():
                for root, _, files in os.walk(os.path.join(WORK, "transcripts-timeout")):
                    for name in files:
                        with open(os.path.join(root, name)) as f:
                            for line in f:
                                event = json.loads(line)
                                if event.get("event") == "finding":
                                    return event
                return None
            event = wait_until("transcript finding", transcript_finding)
            self.assertEqual(event["finding"], "inactivity_timeout")
            self.assertIn("NAT", event["meaning"])
            self.assertIn("29 minutes", event["fix"])
        finally:
            proxy.stop()


class ThinKeepalives(unittest.TestCase):
    def test_the_rule_lets_one_keepalive_through_per_interval(self):
        rules = os.path.join(WORK, "rules")
        os.makedirs(rules, exist_ok=True)
        with open(os.path.join(rules, "thin.json"), "w") as f:
            json.dump({"rules": [{
                "name": "thin-keepalive", "description": "one keepalive an hour",
                "match": {"direction": "server", "state": ["idle"], "kind": ["untagged_status"], "status": ["OK"],
                          "text": "^\\* OK Still here$"},
                "actions": {"thin_keepalives_s": 3600}}]}, f)
        proxy = start_proxy("thin", rules=rules)
        try:
            counts = {}
            for port, label in [(DOVECOT.port, "direct"), (proxy.port, "thinned")]:
                c = login(port, "peggy")
                c.command("s1", "SELECT INBOX")
                c.sock.sendall(b"i1 IDLE\r\n")
                self.assertTrue(c.read_line().startswith(b"+"))
                c.sock.settimeout(0.5)
                seen, end = 0, time.monotonic() + 5
                while time.monotonic() < end:
                    try:
                        seen += c.read_line().startswith(b"* OK Still here")
                    except socket.timeout:
                        pass
                c.sock.settimeout(30)
                c.sock.sendall(b"DONE\r\n")
                c.until_tagged("i1")
                logout(c)
                counts[label] = seen
            self.assertGreaterEqual(counts["direct"], 3, counts)  # Dovecot: one a second here
            self.assertEqual(counts["thinned"], 1, counts)
        finally:
            proxy.stop()


if __name__ == "__main__":
    unittest.main()
