"""Real clients through routing mode: mbsync (implicit TLS), fetchmail (plain, on a
listener without a certificate) and neomutt (STARTTLS, driven in tmux), each logging
in as its own user, routed by a map file to its own backend of three real Dovecot
instances.

Every user exists on every backend, with a different message on each ("on backend
A", "on backend B", ...): what a client fetched shows where it went, and the
backend's own log ("Login: user=<...>") confirms it, absent from the others' logs;
the proxy's session_end names the client, as in transparent mode.
"""
import glob
import imaplib
import os
import re
import shutil
import subprocess
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "support"))
sys.path.insert(0, HERE)
from imap_fixtures import (Dovecot, Imapscope, free_port, make_certs, mbsync_pull, temp_dir,  # noqa: E402
                           wait_until)
from real_clients_test import Tmux, installed  # noqa: E402

USERS = {"mbsync": "mbsync-secret", "fetchmail": "fetchmail-secret", "neomutt": "neomutt-secret"}
HOME = {"mbsync": 0, "fetchmail": 1, "neomutt": 2}  # each user's backend (index into BACKENDS)
LETTERS = "ABC"
BACKENDS = []
CERTS = None
PROXY = None
PLAIN_PORT = STARTTLS_PORT = TLS_PORT = None
LOGIN_LINE = re.compile(r"imap-login: Info: Login: user=<([^>]*)>")


def message(user, letter):
    return (f"From: sender@example.org\r\nTo: {user}@example.org\r\nSubject: on backend {letter}\r\n"
            f"Message-ID: <{user}.{letter}@example.org>\r\n\r\nthe copy of {user} on backend {letter}\r\n").encode()


def setUpModule():
    global CERTS, PROXY, PLAIN_PORT, STARTTLS_PORT, TLS_PORT
    CERTS = make_certs(temp_dir(prefix="imapscope-routing-clients-certs-"))
    try:
        for letter in LETTERS:
            backend = Dovecot(certs=CERTS, users=USERS, extra_config="auth_failure_delay = 0\n").start()
            BACKENDS.append(backend)
            for user, password in USERS.items():
                seed = imaplib.IMAP4("127.0.0.1", backend.port)
                seed.login(user, password)
                seed.append("INBOX", None, None, message(user, letter))
                seed.logout()
        work = temp_dir(prefix="imapscope-routing-clients-")
        routes = os.path.join(work, "routes.map")
        with open(routes, "w") as f:
            for user, index in HOME.items():
                f.write(f"{user} 127.0.0.1:{BACKENDS[index].port}\n")
        PLAIN_PORT, STARTTLS_PORT, TLS_PORT = free_port(), free_port(), free_port()
        config = os.path.join(work, "imapscope.json")
        with open(config, "w") as f:
            f.write(f"""{{"routing": {{"map": "{routes}"}},
 "listeners": [
  {{"name": "plain", "listen": "127.0.0.1:{PLAIN_PORT}"}},
  {{"name": "starttls", "listen": "127.0.0.1:{STARTTLS_PORT}", "tls": "starttls",
    "cert": "{CERTS['cert']}", "key": "{CERTS['key']}"}},
  {{"name": "imaps", "listen": "127.0.0.1:{TLS_PORT}", "tls": "implicit",
    "cert": "{CERTS['cert']}", "key": "{CERTS['key']}"}}]}}
""")
        PROXY = Imapscope(["--config", config], log_dir=work).start([PLAIN_PORT, STARTTLS_PORT, TLS_PORT])
    except BaseException:
        tearDownModule()
        raise


def tearDownModule():
    if PROXY:
        PROXY.stop()
    for backend in BACKENDS:
        backend.stop()


class RoutedClient:
    """What every client's test checks: it logged in on its own backend only."""

    def assert_landed_home(self, user, before):
        home = BACKENDS[HOME[user]]
        wait_until(f"{user}'s login in its backend's log",
                   lambda: user in LOGIN_LINE.findall(home.log()[before[HOME[user]]:]), timeout=10)
        for index, backend in enumerate(BACKENDS):
            if index != HOME[user]:
                self.assertNotIn(user, LOGIN_LINE.findall(backend.log()[before[index]:]),
                                 f"{user} also logged in on backend {LETTERS[index]}")

    def assert_named(self, user, family):
        """The proxy's session_end for the session on user's backend names the client
        (identification works on routed sessions as on any other)."""
        server = f"server=127.0.0.1:{BACKENDS[HOME[user]].port} "
        wait_until(f"{user}'s session_end naming {family}", lambda: any(
            server in line and f"client_family={family} " in line
            for line in PROXY.log().splitlines() if "event=session_end" in line), timeout=10)

    @staticmethod
    def marks():
        return [len(b.log()) for b in BACKENDS]


class Mbsync(RoutedClient, unittest.TestCase):
    def test_mbsync_over_implicit_tls(self):
        before = self.marks()
        work = temp_dir(prefix="imapscope-routing-mbsync-")
        self.addCleanup(shutil.rmtree, work, True)
        mbsync_pull(TLS_PORT, "IMAPS", CERTS["ca"], work, "INBOX", user="mbsync", password=USERS["mbsync"])
        fetched = b""
        for sub in ("cur", "new"):
            for path in glob.glob(os.path.join(work, "local", "**", sub, "*"), recursive=True):
                with open(path, "rb") as f:
                    fetched += f.read()
        self.assertIn(b"Subject: on backend A", fetched)
        self.assertNotIn(b"on backend B", fetched)
        self.assertNotIn(b"on backend C", fetched)
        self.assert_landed_home("mbsync", before)
        self.assert_named("mbsync", "mbsync")


@unittest.skipIf(installed("fetchmail"), installed("fetchmail"))
class Fetchmail(RoutedClient, unittest.TestCase):
    def test_fetchmail_over_plain(self):
        before = self.marks()
        work = temp_dir(prefix="imapscope-routing-fetchmail-")
        self.addCleanup(shutil.rmtree, work, True)
        out = os.path.join(work, "delivered")
        rc = os.path.join(work, "fetchmailrc")
        with open(rc, "w") as f:
            f.write(f'poll 127.0.0.1 service {PLAIN_PORT} protocol IMAP auth password\n'
                    f'  user "fetchmail" password "{USERS["fetchmail"]}" is "root" here\n'
                    f'  keep fetchall sslproto "" mda "/bin/cat >> {out}"\n')
        os.chmod(rc, 0o600)
        env = dict(os.environ, HOME=work, FETCHMAILHOME=work)
        result = subprocess.run(["fetchmail", "-f", rc, "--nodetach", "--nosyslog", "-v"], env=env,
                                capture_output=True, text=True, timeout=120)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)  # 0: mail fetched
        with open(out, "rb") as f:
            delivered = f.read()
        self.assertIn(b"Subject: on backend B", delivered)
        self.assertNotIn(b"on backend A", delivered)
        self.assertNotIn(b"on backend C", delivered)
        self.assert_landed_home("fetchmail", before)
        self.assert_named("fetchmail", "fetchmail")


@unittest.skipIf(installed("neomutt", "tmux"), installed("neomutt", "tmux"))
class NeoMutt(RoutedClient, unittest.TestCase):
    def test_neomutt_over_starttls(self):
        before = self.marks()
        work = temp_dir(prefix="imapscope-routing-neomutt-")
        self.addCleanup(shutil.rmtree, work, True)
        home = os.path.join(work, "home")
        os.makedirs(home)
        rc = os.path.join(work, "muttrc")
        with open(rc, "w") as f:
            f.write(f'set folder="imap://neomutt@localhost:{STARTTLS_PORT}/"\n'
                    f'set spoolfile="+INBOX"\nset imap_pass="{USERS["neomutt"]}"\n'
                    f'set ssl_starttls=yes\nset ssl_force_tls=yes\nset certificate_file="{CERTS["ca"]}"\n'
                    'set quit=yes\nset move=no\nset record=""\nset postponed=""\nset header_cache=""\n'
                    'set message_cachedir=""\nset mail_check=60\nset timeout=60\n')
        os.chmod(rc, 0o600)
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": home, "LANG": "C.UTF-8",
               "TERM": "xterm-256color"}
        tmux = Tmux(work, f"neomutt -n -F {rc}", env)
        try:
            tmux.wait_for("on backend C")              # the index, from the headers it fetched
            tmux.send("Enter")                         # opens the message
            tmux.wait_for("the copy of neomutt on backend C")
            screen = tmux.screen()
            tmux.send("q")
            tmux.wait_for("on backend C")
            tmux.send("q")                             # quit (quit=yes: no question)
            tmux.wait_gone()
        finally:
            tmux.stop()
        self.assertNotIn("on backend A", screen)
        self.assertNotIn("on backend B", screen)
        self.assert_landed_home("neomutt", before)
        self.assert_named("neomutt", "mutt")  # neomutt speaks mutt's IMAP


if __name__ == "__main__":
    unittest.main()
