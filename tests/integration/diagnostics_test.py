"""Diagnostics end to end: a real Dovecot and imapscope with the default thresholds
(config "diagnostics": only the state file is set). What ordinary clients do (real
mbsync, OfflineIMAP and fetchmail, Python imaplib doing what Thunderbird and mutt do) must
trigger no finding; each finding must fire on behaviour that genuinely costs the
server (large mailboxes seeded straight into Dovecot's maildir) and show in the log
(event=finding), in the metrics (imapscope_findings_total) and, for one, in a
transcript with what it means and what fixes it.
"""
import concurrent.futures
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "support"))
from imap_fixtures import (temp_dir, USERS, Dovecot, Imapscope, RawClient, free_port, mbsync_pull, metric_sum,  # noqa: E402
                           wait_until)

# Users of their own per test: Dovecot's per-user limit must not mix the tests up.
MORE_USERS = {name: name + "-secret" for name in ["carol", "dave", "erin", "frank", "grace", "heidi", "ivan",
                                                   "judy", "mallory", "oscar", "peggy", "rita", "tina", "mike",
                                                   "mona"]}
ALL_USERS = dict(USERS, **MORE_USERS)
DOVECOT = None
PROXY = None
WORK = None

# The defaults: the tests show that they stay quiet for ordinary clients and fire on
# costly behaviour. Only Dovecot's keepalive interval is shortened (1 s, below), so
# that IDLE patterns take seconds, not minutes.
THRESHOLDS = {}


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
                                   "protocol imap {\n  mail_max_userip_connections = 10\n}\n").start()
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


def bulk(c, tag, line):
    """Sends 'tag line' and reads up to the tagged answer in large chunks (a sweep of
    thousands of messages); returns the tagged line and the bytes received."""
    c.sock.sendall(f"{tag} {line}\r\n".encode())
    size, tail, marker = len(c.buffer), c.buffer, f"\r\n{tag} ".encode()
    c.buffer = b""
    while True:
        at = tail.find(marker)
        if at >= 0 and tail.find(b"\r\n", at + 2) >= 0:
            end = tail.find(b"\r\n", at + 2) + 2
            c.buffer = tail[end:]
            return tail[at + 2:end], size - len(c.buffer)
        chunk = c.sock.recv(1 << 20)
        if not chunk:
            raise ConnectionError("closed during " + line)
        size += len(chunk)
        tail = tail[-len(marker) - 200:] + chunk


# What mutt asks for when it opens a folder without a header cache.
MUTT_FETCH = ("(UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[HEADER.FIELDS (DATE FROM SENDER SUBJECT TO CC "
              "MESSAGE-ID REFERENCES CONTENT-TYPE CONTENT-DESCRIPTION IN-REPLY-TO REPLY-TO LINES LIST-POST X-LABEL)])")


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
    """Ordinary sessions of the clients on this machine, with the default thresholds:
    no finding at all."""

    def assertNoFindings(self, sessions):
        for sid in sessions:
            wait_until("session end", lambda: f"event=session_end session={sid} " in PROXY.log())
        found = [f for f in findings(PROXY) if f["session"] in sessions]
        self.assertEqual(found, [], "\n".join(line for line in PROXY.log().splitlines() if "event=finding" in line))

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
        self.assertNoFindings([sid])

    def test_thunderbird_connections_on_a_realistic_mailbox(self):
        """What Thunderbird does: up to 5 connections, the INBOX opened on two within a
        few seconds and its flags swept each time, IDLE in every selected folder, new
        mail fetched from the IDLE, a folder visited again; an INBOX of 420 messages."""
        DOVECOT.seed_maildir("tina", "INBOX", 420)
        for folder in ("Sent", "Drafts", "Lists"):
            DOVECOT.seed_maildir("tina", folder, 40)
        held = []
        try:
            for folder in ("INBOX", "INBOX", "Sent", "Drafts", "Lists"):
                c = login(PROXY.port, "tina")
                c.command("t1", 'ID ("name" "Thunderbird" "version" "115.16.0")')
                c.command("t2", f'SELECT "{folder}"')
                bulk(c, "t3", "UID FETCH 1:* (FLAGS)")
                c.sock.sendall(b"t4 IDLE\r\n")
                self.assertTrue(c.read_line().startswith(b"+"))
                held.append(c)
            sessions = [session_id(PROXY, c) for c in held]
            other = direct("tina")
            other.sock.sendall(b"x1 APPEND INBOX {20}\r\n")
            other.read_line()
            other.sock.sendall(b"Subject: hi\r\n\r\nhello\r\n")
            other.until_tagged("x1")
            logout(other)
            for c in held[:2]:  # the INBOX connections hear of it, leave IDLE and fetch it
                deadline = time.monotonic() + 45
                while time.monotonic() < deadline and b"EXISTS" not in c.read_line():
                    pass
                c.sock.sendall(b"DONE\r\n")
                c.until_tagged("t4")
                c.command("t5", "UID FETCH 421:* (UID RFC822.SIZE FLAGS BODY.PEEK[HEADER.FIELDS (From To Subject)])")
            # The user goes back to the Lists folder on the second INBOX connection.
            second = held[1]
            second.command("t6", 'SELECT "Lists"')
            bulk(second, "t7", "UID FETCH 1:* (FLAGS)")
            second.command("t8", 'SELECT "INBOX"')
            bulk(second, "t9", "UID FETCH 1:* (FLAGS)")
            for c in held[2:]:
                c.sock.sendall(b"DONE\r\n")
                c.until_tagged("t4")
            for c in held:
                logout(c)
        finally:
            for c in held:
                c.sock.close()
        self.assertNoFindings(sessions)

    def test_mutt_reopening_the_inbox_with_its_headers(self):
        """mutt without IDLE and without a header cache: the INBOX's headers at each
        open, re-opened within seconds, NOOPs, a few messages deleted and purged."""
        DOVECOT.seed_maildir("mike", "INBOX", 300)
        c = login(PROXY.port, "mike")
        sid = session_id(PROXY, c)
        for n in range(2):
            c.command(f"a{n}0", 'SELECT "INBOX"')
            bulk(c, f"a{n}1", "FETCH 1:300 " + MUTT_FETCH)
            c.command(f"a{n}2", "UID FETCH 1 BODY.PEEK[]")
            c.command(f"a{n}3", "NOOP")
        c.command("b1", "UID STORE 1:20 +FLAGS.SILENT (\\Deleted)")
        c.command("b2", "EXPUNGE")
        c.command("b3", "CLOSE")
        logout(c)
        self.assertNoFindings([sid])

    def test_mbsync_offlineimap_and_fetchmail_each_twice(self):
        """Real clients, each run twice in a row: isync's mbsync (UID FETCH 1:<last
        UID> (UID FLAGS) of every folder at each run), OfflineIMAP (FETCH 1:* (FLAGS
        UID INTERNALDATE) of every folder), fetchmail (its INBOX)."""
        DOVECOT.seed_maildir("mona", "INBOX", 200)
        DOVECOT.seed_maildir("mona", "Lists", 60)
        log_before = len(PROXY.log())
        workdir = temp_dir(prefix="imapscope-diagnostics-clients-")
        try:
            for run in range(2):
                mbsync_pull(PROXY.port, "None", DOVECOT.certs["ca"], workdir, "INBOX Lists", user="mona",
                            password=ALL_USERS["mona"])
            offlineimaprc = os.path.join(workdir, "offlineimaprc")
            with open(offlineimaprc, "w") as f:
                f.write(f"""[general]
accounts = test
metadata = {workdir}/offlineimap-state

[Account test]
localrepository = local
remoterepository = remote

[Repository local]
type = Maildir
localfolders = {workdir}/offlineimap-mail

[Repository remote]
type = IMAP
remotehost = 127.0.0.1
remoteport = {PROXY.port}
remoteuser = mona
remotepass = {ALL_USERS["mona"]}
ssl = no
starttls = no
readonly = True
folderfilter = lambda folder: folder in ["INBOX", "Lists"]
""")
            for run in range(2):
                result = subprocess.run(["offlineimap", "-c", offlineimaprc, "-o", "-u", "basic"],
                                        env=dict(os.environ, HOME=workdir), capture_output=True, text=True, timeout=120)
                self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
            rc = os.path.join(workdir, "fetchmailrc")
            with open(rc, "w") as f:
                f.write(f'poll 127.0.0.1 service {PROXY.port} protocol IMAP auth password\n'
                        f'  user "mona" password "{ALL_USERS["mona"]}" is "root" here\n'
                        f'  keep fetchall sslproto "" mda "/bin/cat > /dev/null"\n')
            os.chmod(rc, 0o600)
            env = dict(os.environ, HOME=workdir, FETCHMAILHOME=workdir)
            for run in range(2):
                result = subprocess.run(["fetchmail", "-f", rc, "--nodetach", "--nosyslog"], env=env,
                                        capture_output=True, text=True, timeout=120)
                self.assertIn(result.returncode, (0, 1), result.stdout + result.stderr)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        # Their sessions: those that sent commands (the others are port probes).
        def client_sessions():
            return re.findall(r"event=session_end session=(\d+) .*\bcommands=[1-9]", PROXY.log()[log_before:])
        wait_until("the clients' sessions end", lambda: len(client_sessions()) >= 6)
        sessions = client_sessions()
        families = re.findall(r"event=session_end .*\bcommands=[1-9].*client_family=(\S+)", PROXY.log()[log_before:])
        self.assertGreaterEqual(len(sessions), 6, families)
        self.assertNoFindings(sessions)


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

    def test_full_resync_of_a_large_mailbox_with_its_bytes(self):
        DOVECOT.seed_maildir("carol", "Archive", 20000)  # about 1 MB of flags
        c = login(PROXY.port, "carol")
        c.command("c1", "EXAMINE Archive")
        answer, size = bulk(c, "c2", "FETCH 1:* (UID FLAGS)")
        self.assertIn(b"c2 OK", answer)
        self.assertGreater(size, 800_000)
        sid = session_id(PROXY, c)
        found = wait_finding(PROXY, "full_resync", sid)
        self.assertIn("Archive: flags of 20000 messages", found[0]["detail"])
        wait_until("finding counted", lambda: metric_sum(PROXY.admin_port, "imapscope_findings_total",
                                                         'finding="full_resync"') >= 1)
        self.assertGreater(metric_sum(PROXY.admin_port, "imapscope_full_resync_bytes_total"), 800_000)
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

    def test_full_resync_of_the_same_mailbox_again(self):
        """mutt without a header cache opening a 2,000-message folder on one connection
        after another: 1.4 MB of headers each time. The first is the sync every client
        does; the second, within the hour, is the finding; the third adds none."""
        DOVECOT.seed_maildir("rita", "Lists", 2000)
        sessions = []
        for n in range(3):
            c = login(PROXY.port, "rita")
            c.command("m1", 'SELECT "Lists"')
            answer, size = bulk(c, "m2", "FETCH 1:2000 " + MUTT_FETCH)
            self.assertIn(b"m2 OK", answer)
            self.assertGreater(size, 1 << 20)
            sessions.append(session_id(PROXY, c))
            logout(c)
            if n == 0:
                wait_until("session end", lambda: f"event=session_end session={sessions[0]} " in PROXY.log())
                self.assertEqual(findings(PROXY, "full_resync", sessions[0]), [])
        found = wait_finding(PROXY, "full_resync", sessions[1])
        self.assertIn("Lists: flags of 2000 messages", found[0]["detail"])
        self.assertRegex(found[0]["detail"], r"previous full sweep of this mailbox was \d+ s ago; 2 sweeps within "
                                             r"60 min, \d{7} bytes fetched again")
        wait_until("session end", lambda: f"event=session_end session={sessions[2]} " in PROXY.log())
        self.assertEqual(findings(PROXY, "full_resync", sessions[2]), [])  # once per hour and mailbox

    def test_idle_churn_and_keepalive_wakeups(self):
        c = login(PROXY.port, "dave")
        sid = session_id(PROXY, c)
        c.command("c1", "SELECT INBOX")
        # Woken by each keepalive (Dovecot's, every second here) and IDLE again at once:
        # the 5th in a row is a wake-up pattern, the 10th IDLE re-issued is churn.
        for i in range(11):
            idle_until_keepalive(c, f"i{i}")
        found = wait_finding(PROXY, "keepalive_wakeups", sid)
        self.assertIn("times in a row", found[0]["detail"])
        found = wait_finding(PROXY, "idle_churn", sid)
        self.assertIn("10 times", found[0]["detail"])
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
        folders = ["INBOX", "Lists", "Work", "Family", "Receipts", "Travel"]
        setup = direct("frank")
        for folder in folders[1:]:
            setup.command("c" + folder, f"CREATE {folder}")
        logout(setup)
        held = []
        try:
            for folder in folders:  # more folders in IDLE than Thunderbird's 5 connections
                c = login(PROXY.port, "frank")
                c.command("s1", f"SELECT {folder}")
                c.sock.sendall(b"i1 IDLE\r\n")
                self.assertTrue(c.read_line().startswith(b"+"))
                held.append(c)
                if len(held) == 5:
                    time.sleep(0.5)
                    self.assertEqual(findings(PROXY, "connection_per_folder"), [])
            found = wait_finding(PROXY, "connection_per_folder")
            self.assertIn("6 connections", found[0]["detail"])
            for _ in range(2):  # the 8th: imapscope's warning (user_connection_warn 8)
                held.append(login(PROXY.port, "frank"))
            found = wait_finding(PROXY, "user_connection_limit")
            self.assertIn("8 concurrent sessions", found[0]["detail"])
            for _ in range(2):  # the 10th: Dovecot's limit (10) is reached
                held.append(login(PROXY.port, "frank"))
            sock = socket.create_connection(("127.0.0.1", PROXY.port), timeout=30)
            refused = RawClient(sock)
            self.assertIn(b"Maximum number of connections", refused.command("a1", f"LOGIN frank {ALL_USERS['frank']}"))
            found = wait_finding(PROXY, "user_connection_limit", session_id(PROXY, refused))
            self.assertIn("mail_max_userip_connections", found[0]["detail"])
            sock.close()
        finally:
            for c in held:
                c.sock.close()

    def test_error_loop_bad_expected_done(self):
        c = login(PROXY.port, "grace")
        sid = session_id(PROXY, c)
        c.command("s1", "SELECT INBOX")
        for n in range(10):
            c.sock.sendall(b"x IDLE\r\n")
            self.assertTrue(c.read_line().startswith(b"+"))
            c.sock.sendall(b"x NOOP\r\n")  # what the seed's user typed: not DONE
            self.assertIn(b"Expected DONE", c.until_tagged("x"))
            if n == 8:
                time.sleep(0.3)
                self.assertEqual(findings(PROXY, "error_loop", sid), [])
        found = wait_finding(PROXY, "error_loop", sid)
        self.assertIn("refused (BAD) 10 times", found[0]["detail"])
        logout(c)

    def test_login_failure_storm_names_the_address_never_the_password(self):
        # Someone guessing, ten at a time (Dovecot delays each failure by seconds).
        def attempt(i):
            sock = socket.create_connection(("127.0.0.1", PROXY.port), timeout=60, source_address=("127.0.0.20", 0))
            try:
                return RawClient(sock).command("a1", f"LOGIN heidi wrong-password-{i}")
            finally:
                sock.close()
        with concurrent.futures.ThreadPoolExecutor(10) as pool:
            answers = list(pool.map(attempt, range(10)))
        self.assertTrue(all(b"a1 NO" in a for a in answers), answers)
        found = wait_finding(PROXY, "login_failure_storm")
        self.assertIn("10 failed logins from 127.0.0.20", found[0]["detail"])
        self.assertNotIn("wrong-password", PROXY.log())

    def test_deleted_messages_never_expunged(self):
        DOVECOT.seed_maildir("ivan", "INBOX", 520)
        c = login(PROXY.port, "ivan")
        sid = session_id(PROXY, c)
        c.command("s1", "SELECT INBOX")
        c.command("s2", "STORE 1:500 +FLAGS.SILENT (\\Deleted)")
        logout(c)  # the Outlook way: flagged, never purged
        found = wait_finding(PROXY, "deleted_build_up", sid)
        self.assertIn("flagged 500 messages", found[0]["detail"])
        # The next session sees them in FETCH FLAGS.
        c = login(PROXY.port, "ivan")
        c.command("s1", "SELECT INBOX")
        bulk(c, "f1", "FETCH 1:* (FLAGS)")
        found = wait_finding(PROXY, "deleted_build_up", session_id(PROXY, c))
        self.assertIn("500 messages flagged \\\\Deleted", found[0]["detail"])
        logout(c)

    def test_polling_where_idle_is_offered(self):
        c = login(PROXY.port, "judy")
        sid = session_id(PROXY, c)
        for i in range(30):  # at least once a minute for half an hour, compressed
            c.command(f"p{i}", "STATUS INBOX (MESSAGES UNSEEN)")
            if i == 28:
                time.sleep(0.3)
                self.assertEqual(findings(PROXY, "polling_instead_of_idle", sid), [])
            time.sleep(0.05)
        found = wait_finding(PROXY, "polling_instead_of_idle", sid)
        self.assertIn("30 times in a row", found[0]["detail"])
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
