"""Who imapscope runs as, end to end in front of a real Dovecot: started as root with
--user it binds, loads, then becomes that user for good (ids, groups, no capability,
not dumpable, no core file) and still relays and reloads its rules on SIGHUP; started
without root with only CAP_NET_BIND_SERVICE it binds a port below 1024, and without
the capability it says which address it could not bind and why; an unknown user or
group is refused at start and by --check-config. Everything on 127.0.0.1."""
import grp
import imaplib
import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "support"))
from imap_fixtures import (temp_dir, MAIL_USER, USERS, Dovecot, Imapscope, ensure_mail_user, free_port,  # noqa: E402
                           imapscope_binary, wait_until)

DOVECOT = None

ANSWER_XYZZY = {"name": "answer-xyzzy", "description": "test rule: a command only this test sends",
                "match": {"direction": "client", "command": ["XYZZY"]},
                "actions": {"answer": {"status": "OK", "text": "Nothing happens"}}}


def setUpModule():
    global DOVECOT
    DOVECOT = Dovecot().start()


def tearDownModule():
    DOVECOT.stop()


def status(pid):
    """/proc/PID/status as a dict of its fields (value strings)."""
    with open(f"/proc/{pid}/status") as f:
        return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)


def core_limit(pid):
    with open(f"/proc/{pid}/limits") as f:
        line = next(line for line in f if line.startswith("Max core file size"))
    return line.split()[4:6]  # soft, hard


def work_dir(test):
    """A folder the service user can pass through (its parents are root's 0700 temp dirs otherwise)."""
    d = temp_dir(prefix="imapscope-privs-")
    os.chmod(d, 0o711)
    test.addCleanup(shutil.rmtree, d, True)
    return d


def free_low_port():
    """A free port below 1024 on 127.0.0.1 (we are root here, so we may try)."""
    for port in range(700, 1000):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
    raise unittest.SkipTest("no free port below 1024")


def imap_round_trip(test, port):
    c = imaplib.IMAP4("127.0.0.1", port)
    c.login("alice", USERS["alice"])
    typ, _ = c.select("INBOX")
    test.assertEqual(typ, "OK")
    c.append("INBOX", None, None, b"Subject: privileges\r\n\r\nthrough a proxy without root\r\n")
    typ, data = c.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    test.assertEqual(typ, "OK")
    test.assertTrue(any(isinstance(part, tuple) and b"Subject:" in part[1] for part in data), data)
    c.logout()


class Drop(unittest.TestCase):
    def test_started_as_root_runs_as_the_user(self):
        uid, gid = ensure_mail_user()
        work = work_dir(self)
        rules = os.path.join(work, "rules")
        os.mkdir(rules, 0o755)
        with open(os.path.join(rules, "empty.json"), "w") as f:
            json.dump({"rules": []}, f)
        os.chmod(os.path.join(rules, "empty.json"), 0o644)
        port = free_port()
        proxy = Imapscope(["--listen", f"127.0.0.1:{port}", "--upstream", f"127.0.0.1:{DOVECOT.port}",
                           "--user", MAIL_USER, "--rules", rules,
                           "--transcripts", os.path.join(work, "transcripts"),
                           "--diagnostics-state", os.path.join(work, "diagnostics", "state"),
                           "--state-dir", os.path.join(work, "state")], log_dir=work)
        proxy.start(wait_ports=[port])
        self.addCleanup(proxy.stop)
        pid = proxy.proc.pid
        wait_until("the privileges dropped", lambda: "event=privileges_dropped" in proxy.log())

        st = status(pid)
        self.assertEqual(st["Uid"].split(), [str(uid)] * 4, st["Uid"])
        self.assertEqual(st["Gid"].split(), [str(gid)] * 4, st["Gid"])
        self.assertEqual(set(map(int, st["Groups"].split())), set(os.getgrouplist(MAIL_USER, gid)), st["Groups"])
        self.assertNotIn(0, map(int, st["Groups"].split()))
        for field in ("CapEff", "CapPrm", "CapInh", "CapAmb"):
            self.assertEqual(int(st[field], 16), 0, f"{field} {st[field]}")
        self.assertEqual(st["NoNewPrivs"], "1")
        # Every thread, not only the first: the ones started before the drop too.
        for tid in os.listdir(f"/proc/{pid}/task"):
            t = status(f"{pid}/task/{tid}")
            self.assertEqual(t["Uid"].split(), [str(uid)] * 4, f"thread {tid}")
            self.assertEqual(t["Gid"].split(), [str(gid)] * 4, f"thread {tid}")
            self.assertEqual(t["Groups"], st["Groups"], f"thread {tid}")
            self.assertEqual(int(t["CapEff"], 16), 0, f"thread {tid}")
        # Not dumpable: /proc/PID's files belong to root though the process runs as the
        # user, and the user itself can't read its memory or environment.
        self.assertEqual(os.stat(f"/proc/{pid}/environ").st_uid, 0)
        self.assertEqual(os.stat(f"/proc/{pid}/mem").st_uid, 0)
        as_user = subprocess.run(["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups",
                                  "cat", f"/proc/{pid}/environ"], capture_output=True, timeout=30)
        self.assertNotEqual(as_user.returncode, 0, "the user read the proxy's environment")
        self.assertIn(b"Permission denied", as_user.stderr)
        self.assertEqual(core_limit(pid), ["0", "0"])

        # It relays, and what it writes now belongs to the user.
        imap_round_trip(self, port)
        for path in (os.path.join(work, "transcripts"), os.path.join(work, "state")):
            s = os.stat(path)
            self.assertEqual((s.st_uid, s.st_mode & 0o7777), (uid, 0o700), path)
        key = os.stat(os.path.join(work, "state", "label-key"))
        self.assertEqual((key.st_uid, key.st_mode & 0o7777), (uid, 0o600))

        # SIGHUP: the rules are read again, by the user now.
        with open(os.path.join(rules, "empty.json"), "w") as f:
            json.dump({"rules": [ANSWER_XYZZY]}, f)
        proxy.proc.send_signal(signal.SIGHUP)
        wait_until("the reload", lambda: "event=reload result=ok" in proxy.log())
        c = imaplib.IMAP4("127.0.0.1", port)
        c.login("bob", USERS["bob"])
        imaplib.Commands.setdefault("XYZZY", ("AUTH", "SELECTED"))
        typ, data = c._simple_command("XYZZY")
        self.assertEqual((typ, data), ("OK", [b"Nothing happens"]))  # the new rule answered, not Dovecot
        c.logout()

        self.assertEqual(proxy.stop(), 0)
        for name in os.listdir(os.path.join(work, "transcripts")):
            s = os.stat(os.path.join(work, "transcripts", name))
            self.assertEqual((s.st_uid, s.st_mode & 0o7777), (uid, 0o600), name)
        s = os.stat(os.path.join(work, "diagnostics", "state"))  # saved at the end, by the user
        self.assertEqual((s.st_uid, s.st_mode & 0o7777), (uid, 0o600))


class NoRoot(unittest.TestCase):
    """No root at all: the service manager gives the user CAP_NET_BIND_SERVICE (here
    setpriv, as systemd's AmbientCapabilities= would)."""

    def start(self, work, port, caps):
        uid, gid = ensure_mail_user()
        state = os.path.join(work, "state")
        os.mkdir(state, 0o700)
        os.chown(state, uid, gid)
        cmd = ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--init-groups"]
        if caps:
            cmd += ["--inh-caps=+net_bind_service", "--ambient-caps=+net_bind_service"]
        cmd += [imapscope_binary(), "--listen", f"127.0.0.1:{port}", "--upstream", f"127.0.0.1:{DOVECOT.port}",
                "--state-dir", state, "--transcripts", os.path.join(state, "transcripts")]
        proxy = Imapscope(cmd[1:], log_dir=work, binary=cmd[0])
        return proxy, uid

    def test_a_port_below_1024_with_the_capability_only(self):
        work = work_dir(self)
        port = free_low_port()
        proxy, uid = self.start(work, port, caps=True)
        proxy.start(wait_ports=[port])
        self.addCleanup(proxy.stop)
        st = status(proxy.proc.pid)
        self.assertEqual(st["Uid"].split(), [str(uid)] * 4)
        # Bound: the capability is given up, none is left, in any thread (the admin
        # server's and the transcript writer's were started before the bind).
        wait_until("capabilities cleared", lambda: int(status(proxy.proc.pid)["CapEff"], 16) == 0)
        tasks = os.listdir(f"/proc/{proxy.proc.pid}/task")
        self.assertGreaterEqual(len(tasks), 3)
        for tid in tasks:
            t = status(f"{proxy.proc.pid}/task/{tid}")
            for field in ("CapEff", "CapPrm", "CapInh", "CapAmb"):
                self.assertEqual(int(t[field], 16), 0, f"thread {tid} {t['Name']} {field}")
        self.assertEqual(os.stat(f"/proc/{proxy.proc.pid}/environ").st_uid, 0)  # not dumpable
        self.assertEqual(core_limit(proxy.proc.pid), ["0", "0"])
        imap_round_trip(self, port)
        self.assertEqual(proxy.stop(), 0)

    def test_without_the_capability_the_address_is_named(self):
        work = work_dir(self)
        port = free_low_port()
        proxy, _ = self.start(work, port, caps=False)
        proxy.start()
        self.assertNotEqual(proxy.proc.wait(timeout=60), 0)
        log = proxy.log()
        self.assertIn(f"127.0.0.1:{port}", log)
        self.assertIn("Permission denied", log)
        self.assertIn("CAP_NET_BIND_SERVICE", log)


class Refusals(unittest.TestCase):
    def run_imapscope(self, *args):
        return subprocess.run([imapscope_binary(), *args], capture_output=True, text=True, timeout=60)

    def test_unknown_user_or_group(self):
        work = work_dir(self)
        base = ["--listen", f"127.0.0.1:{free_port()}", "--upstream", f"127.0.0.1:{DOVECOT.port}",
                "--admin", "none", "--state-dir", os.path.join(work, "state")]
        out = self.run_imapscope(*base, "--user", "no-such-user-21")
        self.assertEqual(out.returncode, 2, out.stderr)
        self.assertIn('flag --user: no user "no-such-user-21" on this system', out.stderr)
        out = self.run_imapscope(*base, "--user", MAIL_USER, "--group", "no-such-group-21")
        self.assertEqual(out.returncode, 2, out.stderr)
        self.assertIn('no group "no-such-group-21"', out.stderr)
        out = self.run_imapscope(*base, "--user", "root")
        self.assertEqual(out.returncode, 2, out.stderr)
        self.assertIn("is root", out.stderr)
        self.assertFalse(os.path.exists(os.path.join(work, "state")), "nothing made before the refusal")

        config = os.path.join(work, "config.json")
        with open(config, "w") as f:
            json.dump({"user": "no-such-user-21",
                       "listeners": [{"listen": "127.0.0.1:1143",
                                      "upstream": {"addresses": [f"127.0.0.1:{DOVECOT.port}"]}}]}, f)
        out = self.run_imapscope("--check-config", config)
        self.assertEqual(out.returncode, 2, out.stderr)
        self.assertRegex(out.stderr, re.escape(config) + r".*/user.*no user \"no-such-user-21\"")
        with open(config, "w") as f:
            json.dump({"user": MAIL_USER,
                       "listeners": [{"listen": "127.0.0.1:1143",
                                      "upstream": {"addresses": [f"127.0.0.1:{DOVECOT.port}"]}}]}, f)
        out = self.run_imapscope("--check-config", config)
        self.assertEqual(out.returncode, 0, out.stderr)
        uid, gid = ensure_mail_user()
        self.assertIn(f"runs as: user {MAIL_USER} ({uid}), group {grp.getgrgid(gid).gr_name} ({gid})", out.stdout)

    def test_a_folder_the_user_can_not_reach(self):
        """Started as root, the folders are made; the user must still reach them later."""
        ensure_mail_user()
        hidden = temp_dir(prefix="imapscope-privs-")  # 0700 root: the user can't pass
        self.addCleanup(shutil.rmtree, hidden, True)
        work = work_dir(self)
        out = self.run_imapscope("--listen", f"127.0.0.1:{free_port()}", "--upstream", f"127.0.0.1:{DOVECOT.port}",
                                 "--admin", "none", "--state-dir", os.path.join(work, "state"), "--user", MAIL_USER,
                                 "--transcripts", os.path.join(hidden, "transcripts"))
        self.assertEqual(out.returncode, 2, out.stderr)
        self.assertIn(f"as user {MAIL_USER}: {hidden}/transcripts: user", out.stderr)
        self.assertIn("can't make files there", out.stderr)

    def test_a_user_can_not_become_another(self):
        uid, gid = ensure_mail_user()
        work = work_dir(self)
        other = pwd.getpwnam("nobody")
        out = subprocess.run(["setpriv", f"--reuid={uid}", f"--regid={gid}", "--init-groups", imapscope_binary(),
                              "--listen", f"127.0.0.1:{free_port()}", "--upstream", f"127.0.0.1:{DOVECOT.port}",
                              "--admin", "none", "--state-dir", os.path.join(work, "state"), "--user", "nobody"],
                             capture_output=True, text=True, timeout=60)
        self.assertEqual(out.returncode, 1, out.stderr)
        self.assertIn(f"can't become user {other.pw_name}", out.stderr)
        self.assertIn("not root", out.stderr)


if __name__ == "__main__":
    unittest.main()
