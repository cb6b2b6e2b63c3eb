"""What imapscope writes is the operator's only, end to end in front of a real Dovecot:
transcripts and the state folder owner-only whatever the umask, a link planted at the
next transcript name or at the diagnostics state file never followed, a transcripts
folder others can write or another user owns refused at start, and user labels keyed
with the state folder's secret (stable across restarts with the same folder, not the
SHA-256 of the name). Everything on 127.0.0.1."""
import glob
import hashlib
import imaplib
import json
import os
import re
import shutil
import subprocess
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "support"))
from imap_fixtures import temp_dir, USERS, Dovecot, Imapscope, ensure_mail_user, free_port, imapscope_binary  # noqa: E402

DOVECOT = None


def setUpModule():
    global DOVECOT
    DOVECOT = Dovecot().start()


def tearDownModule():
    DOVECOT.stop()


def mode(path):
    return os.lstat(path).st_mode & 0o7777


def events(folder):
    out = []
    for path in sorted(glob.glob(os.path.join(folder, "*.jsonl"))):
        if os.path.islink(path):  # planted by a test
            continue
        with open(path) as f:
            out += [json.loads(line) for line in f]
    return out


class Work:
    """A temp folder for one test, and imapscope started in it with transcripts on."""

    def __init__(self, test):
        self.test = test
        self.dir = temp_dir(prefix="imapscope-files-")
        test.addCleanup(shutil.rmtree, self.dir, True)
        self.transcripts = os.path.join(self.dir, "transcripts")
        self.state = os.path.join(self.dir, "state")

    def command(self, extra=(), state=None, config=None):
        port = free_port()
        cfg = dict({"transcripts": {"dir": self.transcripts}}, **(config or {}))
        cfg["listeners"] = [{"listen": f"127.0.0.1:{port}", "upstream": {"addresses": [f"127.0.0.1:{DOVECOT.port}"]}}]
        path = os.path.join(self.dir, "config.json")
        with open(path, "w") as f:
            json.dump(cfg, f)
        return port, ["--config", path, "--state-dir", state or self.state, *extra]

    def start(self, extra=(), state=None, config=None, umask=None):
        port, args = self.command(extra, state, config)
        proxy = Imapscope(args)
        proxy.start(wait_ports=[port], preexec_fn=(lambda: os.umask(umask)) if umask is not None else None)
        self.test.addCleanup(proxy.stop)
        proxy.port = port
        return proxy

    def refused(self, extra=()):
        _, args = self.command(extra)
        return subprocess.run([imapscope_binary(), *args, "--admin", "none"], capture_output=True, text=True,
                              timeout=60)


def log_in(port, user="alice"):
    c = imaplib.IMAP4("127.0.0.1", port)
    c.login(user, USERS[user])
    c.select("INBOX")
    c.logout()


class Transcripts(unittest.TestCase):
    def test_owner_only_whatever_the_umask(self):
        work = Work(self)
        proxy = work.start(umask=0)
        log_in(proxy.port)
        self.assertEqual(proxy.stop(), 0)
        self.assertEqual(mode(work.transcripts), 0o700)
        files = glob.glob(os.path.join(work.transcripts, "*"))
        self.assertTrue(files)
        for path in files:
            self.assertEqual(mode(path), 0o600, path)
        self.assertEqual(mode(work.state), 0o700)
        self.assertEqual(mode(os.path.join(work.state, "label-key")), 0o600)
        self.assertTrue([e for e in events(work.transcripts) if e.get("event") == "user"])

    def test_a_link_at_the_next_name_is_not_followed(self):
        work = Work(self)
        victim = os.path.join(work.dir, "victim")
        with open(victim, "w") as f:
            f.write("untouched\n")
        os.mkdir(work.transcripts, 0o700)
        # The first transcript is imapscope-<UTC second>-000000.jsonl: a link at every
        # name it could get in the next two minutes.
        now = int(time.time())
        for t in range(now, now + 120):
            name = time.strftime("imapscope-%Y%m%dT%H%M%SZ-000000.jsonl", time.gmtime(t))
            os.symlink(victim, os.path.join(work.transcripts, name))
        proxy = work.start()
        log_in(proxy.port)
        self.assertEqual(proxy.stop(), 0)
        with open(victim) as f:
            self.assertEqual(f.read(), "untouched\n")
        written = [p for p in glob.glob(os.path.join(work.transcripts, "*.jsonl")) if not os.path.islink(p)]
        self.assertEqual(len(written), 1, written)
        self.assertRegex(os.path.basename(written[0]), r"^imapscope-\d{8}T\d{6}Z-000000-[0-9a-f]{16}\.jsonl$")
        self.assertEqual(mode(written[0]), 0o600)
        self.assertTrue([e for e in events(work.transcripts) if e.get("event") == "user"])
        taken = [line for line in proxy.log().splitlines() if "event=transcript_name_taken" in line]
        self.assertEqual(len(taken), 1, taken)
        self.assertIn(os.path.basename(written[0]), taken[0])

    def test_a_folder_others_can_write_is_refused(self):
        work = Work(self)
        os.mkdir(work.transcripts)
        os.chmod(work.transcripts, 0o777)
        out = work.refused()
        self.assertEqual(out.returncode, 2, out.stderr)
        self.assertIn(work.transcripts, out.stderr)
        self.assertIn("writable by its group or by others", out.stderr)
        self.assertEqual(os.listdir(work.transcripts), [])

    def test_a_folder_of_another_user_is_refused(self):
        uid, gid = ensure_mail_user()
        work = Work(self)
        os.mkdir(work.transcripts, 0o700)
        os.chown(work.transcripts, uid, gid)
        out = work.refused()
        self.assertEqual(out.returncode, 2, out.stderr)
        self.assertIn(work.transcripts, out.stderr)
        self.assertIn(f"is owned by user {uid}", out.stderr)
        self.assertEqual(os.listdir(work.transcripts), [])


class DiagnosticsState(unittest.TestCase):
    def test_owner_only_and_a_planted_link_is_replaced(self):
        work = Work(self)
        victim = os.path.join(work.dir, "victim")
        with open(victim, "w") as f:
            f.write("untouched\n")
        folder = os.path.join(work.dir, "diagnostics")
        os.mkdir(folder, 0o700)
        state = os.path.join(folder, "state")
        os.symlink(victim, state)
        proxy = work.start(extra=["--diagnostics-state", state], umask=0)
        log_in(proxy.port)  # SELECT INBOX: a UIDVALIDITY to remember
        self.assertEqual(proxy.stop(), 0)  # saved on the way out
        self.assertFalse(os.path.islink(state))
        self.assertEqual(mode(state), 0o600)
        with open(state) as f:
            self.assertRegex(f.read(), r"^[0-9a-f]{32} \d+ \d+\n")
        with open(victim) as f:
            self.assertEqual(f.read(), "untouched\n")
        self.assertIn("event=diagnostics_state_ignored", proxy.log())  # the link was not read either
        self.assertEqual(sorted(os.listdir(folder)), ["state"])  # no temporary file left behind

    def test_a_folder_others_can_write_is_refused(self):
        work = Work(self)
        folder = os.path.join(work.dir, "diagnostics")
        os.mkdir(folder)
        os.chmod(folder, 0o777)
        out = work.refused(["--diagnostics-state", os.path.join(folder, "state")])
        self.assertNotEqual(out.returncode, 0)
        self.assertIn(folder, out.stderr)
        self.assertIn("writable by its group or by others", out.stderr)


class Labels(unittest.TestCase):
    def label(self, work, state, user="alice"):
        shutil.rmtree(work.transcripts, True)
        proxy = work.start(state=state)
        log_in(proxy.port, user)
        self.assertEqual(proxy.stop(), 0)
        labels = {e["user"] for e in events(work.transcripts) if e.get("event") == "user"}
        self.assertEqual(len(labels), 1, labels)
        return labels.pop()

    def test_keyed_by_the_state_folder(self):
        work = Work(self)
        first = self.label(work, work.state)
        self.assertRegex(first, r"^u:[0-9a-f]{16}$")
        self.assertEqual(mode(os.path.join(work.state, "label-key")), 0o600)
        self.assertEqual(self.label(work, work.state), first, "the same state folder: the same label")
        self.assertNotEqual(self.label(work, work.state, "bob"), first)
        other = self.label(work, os.path.join(work.dir, "other-state"))
        self.assertRegex(other, r"^u:[0-9a-f]{16}$")
        self.assertNotEqual(other, first, "another state folder (another key): another label")
        # Not computable from the name: no part of its SHA-256 (the old labels).
        for name in ("alice", "ALICE"):
            self.assertNotIn(first[2:10], hashlib.sha256(name.encode()).hexdigest())

    def test_selection_by_user_with_hashed_labels(self):
        work = Work(self)
        proxy = work.start(config={"transcripts": {"dir": work.transcripts, "select": {"users": ["bob"]}}})
        for user in ("alice", "bob", "alice"):
            log_in(proxy.port, user)
        self.assertEqual(proxy.stop(), 0)
        labels = [e["user"] for e in events(work.transcripts) if e.get("event") == "user"]
        self.assertEqual(len(labels), 1, labels)
        self.assertRegex(labels[0], r"^u:[0-9a-f]{16}$")
        logins = [e["text"] for e in events(work.transcripts) if e.get("command") == "LOGIN"]
        self.assertEqual(len(logins), 1)
        self.assertRegex(logins[0], r"^\S+ LOGIN " + re.escape(labels[0]) + r" \*\*\*$")


if __name__ == "__main__":
    unittest.main()
