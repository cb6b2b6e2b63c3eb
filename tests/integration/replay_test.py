"""`imapscope replay` end to end: a session recorded through imapscope (transcripts
on, bodies captured) in front of one Dovecot, replayed against fresh Dovecots seeded
the same way (every answer the same, plain and TLS) and against one whose INBOX holds
another message (the differences named and shown). The password never shows.
Everything on 127.0.0.1."""
import glob
import imaplib
import json
import os
import shutil
import subprocess
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "support"))
from imap_fixtures import temp_dir, USERS, Dovecot, Imapscope, free_port, imapscope_binary, make_certs  # noqa: E402

PASSWORD = USERS["alice"]
DATE = '"01-Jan-2024 10:00:00 +0000"'  # fixed INTERNALDATEs: the mailboxes are alike to the byte


def seed_message(i):
    return (f"From: seed@example.org\r\nTo: alice@example.org\r\nSubject: Seed {i}\r\n"
            f"Date: Mon, 1 Jan 2024 10:00:00 +0000\r\nMessage-ID: <seed-{i}@example.org>\r\n\r\n"
            f"Seed body {i}.\r\n").encode()


def seeded_dovecot(certs, count):
    """A Dovecot whose alice has `count` messages in INBOX, none seen by a session yet."""
    dovecot = Dovecot(certs=certs).start()
    c = imaplib.IMAP4("127.0.0.1", dovecot.port)
    c.login("alice", PASSWORD)
    for i in range(1, count + 1):
        c.append("INBOX", None, DATE, seed_message(i))
    c.logout()
    return dovecot


def record_session(test, dovecot):
    """imaplib through imapscope with transcripts on; returns the transcript files."""
    work = temp_dir(prefix="imapscope-replay-")
    test.addCleanup(shutil.rmtree, work, True)
    out, port = os.path.join(work, "transcripts"), free_port()
    config = {"transcripts": {"dir": out, "body_cap_kb": 64},
              "listeners": [{"listen": f"127.0.0.1:{port}", "upstream": {"addresses": [f"127.0.0.1:{dovecot.port}"]}}]}
    path = os.path.join(work, "config.json")
    with open(path, "w") as f:
        json.dump(config, f)
    proxy = Imapscope(["--config", path]).start([port])
    test.addCleanup(proxy.stop)

    c = imaplib.IMAP4("127.0.0.1", port)
    c.login("alice", PASSWORD)
    test.assertEqual(c.select("INBOX")[0], "OK")
    body = b"From: bob@example.org\r\nSubject: Appended\r\n\r\n" + b"An appended line.\r\n" * 40
    test.assertEqual(c.append("INBOX", "(\\Seen)", DATE, body)[0], "OK")
    test.assertEqual(c.fetch("1:*", "(UID FLAGS RFC822.SIZE BODY.PEEK[])")[0], "OK")
    test.assertEqual(c.search(None, "SUBJECT", "Seed")[0], "OK")
    test.assertEqual(c.store("1", "+FLAGS", "\\Flagged")[0], "OK")
    test.assertEqual(c.noop()[0], "OK")
    test.assertEqual(c.select("Missing")[0], "NO")
    # IDLE by hand: imaplib has no idle() before Python 3.14.
    tag = c._new_tag()
    c.send(tag + b" IDLE\r\n")
    test.assertTrue(c.readline().startswith(b"+"))
    time.sleep(0.3)
    c.send(b"DONE\r\n")
    while not c.readline().startswith(tag + b" OK"):
        pass
    c.logout()
    proxy.stop()
    files = sorted(glob.glob(os.path.join(out, "*.jsonl")))
    test.assertTrue(files)
    password_file = os.path.join(work, "password")
    with open(password_file, "w") as f:
        f.write(PASSWORD + "\n")
    return files, password_file


def replay(files, password_file, port, *extra):
    return subprocess.run([imapscope_binary(), "replay", *files, "--server", f"127.0.0.1:{port}", "--user", "alice",
                           "--password-file", password_file, *extra], capture_output=True, text=True, timeout=120)


class RoundTrip(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dovecots = []
        certs_dir = temp_dir(prefix="imapscope-replay-certs-")
        cls.certs_dir = certs_dir
        cls.certs = make_certs(certs_dir)
        os.chmod(certs_dir, 0o755)

    @classmethod
    def tearDownClass(cls):
        for d in cls.dovecots:
            d.stop()
        shutil.rmtree(cls.certs_dir, ignore_errors=True)

    def dovecot(self, count):
        d = seeded_dovecot(self.certs, count)
        self.dovecots.append(d)
        return d

    def assert_no_password(self, out):
        self.assertNotIn(PASSWORD, out.stdout + out.stderr)

    def test_round_trip(self):
        files, password_file = record_session(self, self.dovecot(2))

        # A fresh Dovecot seeded the same way: every answer as recorded.
        same = replay(files, password_file, self.dovecot(2).port)
        self.assert_no_password(same)
        self.assertEqual(same.returncode, 0, same.stdout + same.stderr)
        commands = [line for line in same.stdout.splitlines() if " ... " in line]
        verbs = [line.split()[1] for line in commands]
        for verb in ("CAPABILITY", "LOGIN", "SELECT", "APPEND", "FETCH", "SEARCH", "STORE", "NOOP", "IDLE", "LOGOUT"):
            self.assertIn(verb, verbs, same.stdout)
        self.assertTrue(all(line.endswith(" ... same") for line in commands), same.stdout)
        self.assertIn(f" LOGIN \"alice\" *** ... same", same.stdout)
        self.assertIn("one at a time", same.stdout)
        self.assertRegex(same.stdout, r"summary: (\d+) commands, \1 same, 0 differ, 0 approximated")

        # The same over implicit TLS, verified against the test CA; machine-readable.
        # One real difference: on a TLS port Dovecot's pre-login CAPABILITY has no STARTTLS.
        tls = replay(files, password_file, self.dovecot(2).tls_port, "--tls", "--ca", self.certs["ca"], "--json")
        self.assert_no_password(tls)
        self.assertEqual(tls.returncode, 1, tls.stdout + tls.stderr)
        report = json.loads(tls.stdout)
        self.assertEqual(report["summary"]["differ"], 1)
        self.assertEqual(report["summary"]["same"], report["summary"]["commands"] - 1)
        differing = [c for c in report["commands"] if c["result"] != "same"]
        self.assertEqual([c["command"] for c in differing], ["CAPABILITY"])
        removed = [line for line in differing[0]["diff"] if line.startswith("- ")]
        added = [line for line in differing[0]["diff"] if line.startswith("+ ")]
        self.assertEqual([line.replace(" STARTTLS", "") for line in removed], [line.replace("+", "-", 1) for line in added])
        # Without the CA the certificate isn't trusted: a clear error, exit 2.
        untrusted = replay(files, password_file, self.dovecots[-1].tls_port, "--tls")
        self.assertEqual(untrusted.returncode, 2, untrusted.stdout + untrusted.stderr)
        self.assertIn("TLS handshake", untrusted.stderr)

        # One more message in INBOX: SELECT and what follows differ, shown as a diff.
        other = replay(files, password_file, self.dovecot(3).port)
        self.assert_no_password(other)
        self.assertEqual(other.returncode, 1, other.stdout + other.stderr)
        self.assertRegex(other.stdout, r"\S+ SELECT INBOX \.\.\. differs")
        self.assertIn("    - * 2 EXISTS", other.stdout)
        self.assertIn("    + * 3 EXISTS", other.stdout)
        self.assertRegex(other.stdout, r"\S+ NOOP \.\.\. same")
        self.assertRegex(other.stdout, r"summary: \d+ commands, \d+ same, [1-9]\d* differ")

    def test_unreachable_server_and_wrong_password(self):
        files, password_file = record_session(self, self.dovecot(2))
        closed = replay(files, password_file, free_port())
        self.assertEqual(closed.returncode, 2)
        self.assertIn("can't connect", closed.stderr)
        wrong = os.path.join(os.path.dirname(password_file), "wrong")
        with open(wrong, "w") as f:
            f.write("not-the-password")
        refused = replay(files, wrong, self.dovecot(2).port)
        self.assertEqual(refused.returncode, 2, refused.stdout + refused.stderr)
        self.assertIn("login as alice", refused.stderr)
        self.assertNotIn("not-the-password", refused.stdout + refused.stderr)


if __name__ == "__main__":
    unittest.main()
