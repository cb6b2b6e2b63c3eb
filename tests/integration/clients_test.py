"""More of the relay against a real Dovecot: a second real client (isync's mbsync)
syncs a mailbox through the proxy with the same result as direct; upstream
fallbacks; LOGINDISABLED; config errors at start-up. Everything on 127.0.0.1."""
import imaplib
import json
import os
import re
import socket
import shutil
import ssl
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
from imap_fixtures import temp_dir, USERS, Dovecot, Imapscope, RawClient, free_port, imapscope_binary, mbsync_pull  # noqa: E402

DOVECOT = None


def setUpModule():
    global DOVECOT
    DOVECOT = Dovecot().start()


def tearDownModule():
    DOVECOT.stop()


def context():
    return ssl.create_default_context(cafile=DOVECOT.certs["ca"])


def session_ends(proxy):
    """The proxy's session_end log lines of sessions that sent something (the others
    are the fixture's port probes)."""
    return [line for line in proxy.log().splitlines()
            if "event=session_end" in line and "commands=" in line and "bytes_from_client=0 " not in line]


class Mbsync(unittest.TestCase):
    def mbsync(self, port, ssl_type, workdir):
        return mbsync_pull(port, ssl_type, DOVECOT.certs["ca"], workdir, "INBOX Sync-*")

    def test_mbsync_through_proxy_equals_direct(self):
        seed = imaplib.IMAP4("127.0.0.1", DOVECOT.port)
        seed.login("bob", USERS["bob"])
        seed.create("Sync-Source")
        for i in range(30):
            body = (f"From: sender{i}@example.org\r\nSubject: sync {i}\r\n\r\n" + f"line {i}\r\n" * (i * 300)).encode()
            seed.append("Sync-Source", "(\\Seen)" if i % 2 else None, None, body)
        seed.logout()

        plain, tls = free_port(), free_port()
        proxy = Imapscope(["--listen", f"127.0.0.1:{plain}", "--listen-tls", f"127.0.0.1:{tls}",
                           "--tls-cert", DOVECOT.certs["cert"], "--tls-key", DOVECOT.certs["key"],
                           "--upstream", f"127.0.0.1:{DOVECOT.port}"]).start([plain, tls])
        try:
            with tempfile.TemporaryDirectory() as direct_dir, tempfile.TemporaryDirectory() as tls_dir, \
                    tempfile.TemporaryDirectory() as starttls_dir:
                direct = self.mbsync(DOVECOT.tls_port, "IMAPS", direct_dir)
                through_tls = self.mbsync(tls, "IMAPS", tls_dir)
                through_starttls = self.mbsync(plain, "STARTTLS", starttls_dir)
        finally:
            proxy.stop()
        self.assertGreaterEqual(len(direct), 30)
        self.assertEqual(through_tls, direct)
        self.assertEqual(through_starttls, direct)
        # Every mbsync session was recognised as mbsync (it sends no ID).
        ends = session_ends(proxy)
        self.assertGreaterEqual(len(ends), 2, proxy.log())
        for line in ends:
            self.assertIn("client_family=mbsync", line)
            self.assertIn("client_id=heuristic", line)


class Upstreams(unittest.TestCase):
    def test_next_address_is_tried_when_the_first_is_down(self):
        port = free_port()
        dead = free_port()
        proxy = Imapscope(["--listen", f"127.0.0.1:{port}", "--upstream", f"127.0.0.1:{dead}",
                           "--upstream", f"127.0.0.1:{DOVECOT.port}"]).start([port])
        try:
            c = imaplib.IMAP4("127.0.0.1", port, timeout=30)
            self.assertEqual(c.login("alice", USERS["alice"])[0], "OK")
            c.logout()
        finally:
            proxy.stop()

    def test_upstream_starttls_refused_by_server_gives_bye(self):
        # Dovecot's implicit-TLS port doesn't speak plaintext IMAP: no greeting comes.
        port = free_port()
        config = os.path.join(DOVECOT.dir, "greeting.json")
        with open(config, "w") as f:
            f.write('{"timeouts": {"greeting_ms": 2000}, "listeners": [{"listen": "127.0.0.1:%d", "upstream":'
                    ' {"addresses": ["127.0.0.1:%d"], "tls": "starttls", "ca_file": "%s"}}]}'
                    % (port, DOVECOT.tls_port, DOVECOT.certs["ca"]))
        proxy = Imapscope(["--config", config]).start([port])
        try:
            with self.assertRaises(imaplib.IMAP4.error) as caught:
                imaplib.IMAP4("127.0.0.1", port, timeout=60)
            self.assertIn("UNAVAILABLE", str(caught.exception))
        finally:
            proxy.stop()
        self.assertIn("reason=upstream_greeting", proxy.log())


class LoginDisabled(unittest.TestCase):
    def test_login_needs_starttls_when_asked(self):
        port = free_port()
        proxy = Imapscope(["--listen", f"127.0.0.1:{port}", "--tls-cert", DOVECOT.certs["cert"],
                           "--tls-key", DOVECOT.certs["key"], "--login-disabled-until-tls",
                           "--upstream", f"127.0.0.1:{DOVECOT.port}"]).start([port])
        try:
            c = imaplib.IMAP4("127.0.0.1", port, timeout=30)
            self.assertIn("LOGINDISABLED", c.capabilities)
            with self.assertRaises(imaplib.IMAP4.error) as caught:
                c.login("alice", USERS["alice"])
            self.assertIn("PRIVACYREQUIRED", str(caught.exception))
            c.starttls(ssl_context=context())
            self.assertNotIn("LOGINDISABLED", c.capabilities)
            self.assertEqual(c.login("alice", USERS["alice"])[0], "OK")
            c.logout()
        finally:
            proxy.stop()
        self.assertNotIn(USERS["alice"], proxy.log())  # credentials never reach the log


class ServerRefusesSessions(unittest.TestCase):
    """Dovecot out of imap processes drops logins after ~10 s: over TLS the client
    must get "* BYE" and a clean close, not a TLS alert (a regression: the proxy's
    half-close of the client leg used to make OpenSSL answer with decode_error)."""

    def test_clients_get_bye_over_tls(self):
        import asyncio
        small = Dovecot(certs=DOVECOT.certs, extra_config="service imap {\n  process_limit = 3\n}\n").start()
        port = free_port()
        proxy = Imapscope(["--listen-tls", f"127.0.0.1:{port}", "--tls-cert", small.certs["cert"],
                           "--tls-key", small.certs["key"], "--upstream", f"127.0.0.1:{small.port}"]).start([port])
        open_writers = []

        async def login():
            reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context(),
                                                           server_hostname="localhost")
            open_writers.append(writer)  # sessions stay open: they hold Dovecot's processes
            await reader.readline()
            writer.write(b"a LOGIN alice " + USERS["alice"].encode() + b"\r\n")
            last = b""
            try:
                while True:
                    line = await asyncio.wait_for(reader.readline(), 30)
                    if not line or line.startswith(b"a "):
                        return line or last
                    last = line
            except Exception as e:  # noqa: BLE001 - the failure is the result
                return f"{type(e).__name__}: {e}".encode()

        async def run():
            results = await asyncio.gather(*[login() for _ in range(6)])
            for w in open_writers:
                w.close()
            return results
        try:
            results = asyncio.run(run())
        finally:
            proxy.stop()
            small.stop()
        logged_in = [r for r in results if r.startswith(b"a OK")]
        refused = [r for r in results if not r.startswith(b"a OK")]
        self.assertEqual(len(logged_in), 3, results)
        for r in refused:
            self.assertTrue(r.startswith(b"* BYE"), results)


class Identification(unittest.TestCase):
    """Real clients through the proxy are recognised (the session log says who)."""

    def test_imaplib_and_a_client_sending_id(self):
        port = free_port()
        proxy = Imapscope(["--listen", f"127.0.0.1:{port}", "--upstream", f"127.0.0.1:{DOVECOT.port}"]).start([port])
        try:
            client = imaplib.IMAP4("127.0.0.1", port)
            client.login("alice", USERS["alice"])
            client.select("INBOX")
            client.logout()
            # A client that names itself with ID (RFC 2971), after a heuristic guess.
            client = imaplib.IMAP4("127.0.0.1", port)
            client.login("alice", USERS["alice"])
            typ, data = client.xatom("ID", '("name" "Thunderbird" "version" "128.5.0esr")')
            self.assertEqual(typ, "OK", data)
            client.logout()
        finally:
            proxy.stop()
        ends = session_ends(proxy)
        self.assertEqual(len(ends), 2, proxy.log())
        self.assertIn("client_family=python_imaplib", ends[0])
        self.assertIn("client_id=heuristic", ends[0])
        self.assertIn('client_family=thunderbird client_version="128.5.0esr" client_id=id', ends[1])

    def test_fetchmail(self):
        """Debian's fetchmail polls through the proxy (it keeps the messages) and is
        recognised from its tags (A0001, A0002...) and its opening CAPABILITY."""
        port = free_port()
        proxy = Imapscope(["--listen", f"127.0.0.1:{port}", "--upstream", f"127.0.0.1:{DOVECOT.port}"]).start([port])
        workdir = temp_dir(prefix="imapscope-fetchmail-")
        try:
            rc = os.path.join(workdir, "fetchmailrc")
            with open(rc, "w") as f:
                f.write(f'poll 127.0.0.1 service {port} protocol IMAP auth password\n'
                        f'  user "bob" password "{USERS["bob"]}" is "root" here\n'
                        f'  keep fetchall sslproto "" mda "/bin/cat > /dev/null"\n')
            os.chmod(rc, 0o600)
            env = dict(os.environ, HOME=workdir, FETCHMAILHOME=workdir)
            result = subprocess.run(["fetchmail", "-f", rc, "--nodetach", "--nosyslog", "-v"], env=env,
                                    capture_output=True, text=True, timeout=120)
            # 0: messages fetched; 1: no mail. Either way it logged in and logged out.
            self.assertIn(result.returncode, (0, 1), result.stdout + result.stderr)
            self.assertIn("LOGOUT", result.stdout + result.stderr)
        finally:
            proxy.stop()
            shutil.rmtree(workdir, ignore_errors=True)
        ends = session_ends(proxy)
        self.assertEqual(len(ends), 1, proxy.log())
        self.assertIn("client_family=fetchmail client_version=\"\" client_id=heuristic", ends[0])

    def test_id_overturns_a_guess_and_the_rules_that_acted_on_it_are_logged(self):
        """Apple Mail's tag shape is guessed from one CAPABILITY; a rule that accepts
        such a guess acts on it; then ID says the client is Dovecot's imaptest: the ID
        wins and the log names the rule that acted on the wrong guess. A client with
        an unknown ID name is "other", its name in the log only."""
        workdir = temp_dir(prefix="imapscope-overturn-")
        rules = os.path.join(workdir, "rules.json")
        with open(rules, "w") as f:
            f.write('{"rules": [{"name": "apple-weak", "description": "test", "match": {"direction": "server", '
                    '"client": ["apple_mail"], "identified_by": "heuristic", "min_confidence": 0.5, '
                    '"kind": ["data"], "name": ["CAPABILITY"]}, "actions": {"capabilities": {"add": ["X-GUESS"]}}}]}')
        port = free_port()
        proxy = Imapscope(["--listen", f"127.0.0.1:{port}", "--upstream", f"127.0.0.1:{DOVECOT.port}",
                           "--rules", rules]).start([port])
        try:
            client = RawClient(port)
            self.assertIn(b"X-GUESS", client.command("1.854", "CAPABILITY"))
            self.assertIn(b"2.854 OK", client.command("2.854", 'ID ("name" "imaptest" "version" "1.0")'))
            self.assertNotIn(b"X-GUESS", client.command("3.854", "CAPABILITY"))
            client.command("4.854", "LOGOUT")
            client.close()
            other = RawClient(port)
            other.command("x1", 'ID ("name" "Some New Mailer" "version" "0.9")')
            other.command("x2", "LOGOUT")
            other.close()
        finally:
            proxy.stop()
            shutil.rmtree(workdir, ignore_errors=True)
        log = proxy.log()
        overturned = [line for line in log.splitlines() if "event=guess_overturned" in line]
        self.assertEqual(len(overturned), 1, log)
        self.assertIn("guessed=apple_mail identified=imaptest by=id", overturned[0])
        self.assertIn('client_name="imaptest" rules_acted=apple-weak', overturned[0])
        ends = session_ends(proxy)
        self.assertEqual(len(ends), 2, log)
        self.assertIn('client_family=imaptest client_version="1.0" client_id=id client_name="imaptest"', ends[0])
        self.assertIn('client_family=other client_version="0.9" client_id=id client_name="Some New Mailer"', ends[1])

    def test_signatures_from_a_file_and_errors_in_it(self):
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            f.write('{"families": {"acme": "Acme Mail"}, "id": [], "heuristics": '
                    '[{"family": "acme", "tag": "^[B-P][A-P]{3}[0-9]+$", "confidence": 0.9}]}')
        try:
            port = free_port()
            proxy = Imapscope(["--listen", f"127.0.0.1:{port}", "--upstream", f"127.0.0.1:{DOVECOT.port}",
                               "--clients", f.name]).start([port])
            try:
                client = imaplib.IMAP4("127.0.0.1", port)
                client.logout()
            finally:
                proxy.stop()
            self.assertIn("client_family=acme", "\n".join(session_ends(proxy)))
            with open(f.name, "w") as bad:
                bad.write('{"families": {"acme": "Acme"}, "id": [], "heuristics": [{"family": "acme", "tag": "(["}]}')
            result = subprocess.run([imapscope_binary(), "--listen", f"127.0.0.1:{free_port()}",
                                     "--upstream", "127.0.0.1:1", "--clients", f.name],
                                    capture_output=True, text=True, timeout=60)
        finally:
            os.unlink(f.name)
        self.assertEqual(result.returncode, 2, result.stdout + result.stderr)
        self.assertIn(f.name + ": /heuristics/0/tag: is not a valid regular expression", result.stderr)


class StartupErrors(unittest.TestCase):
    def run_imapscope(self, *args):
        return subprocess.run([imapscope_binary(), *args], capture_output=True, text=True, timeout=30)

    def test_bad_config_file_names_file_key_and_reason(self):
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            f.write('{"listeners": [{"listen": "127.0.0.1:1143", "tls": "implicit",'
                    ' "upstream": {"addresses": ["127.0.0.1:143"]}}]}')
        try:
            result = self.run_imapscope("--check-config", f.name)
            self.assertEqual(result.returncode, 2)
            self.assertIn(f'{f.name}: /listeners/0/tls: "implicit" needs cert and key', result.stderr)
        finally:
            os.unlink(f.name)

    def test_check_config_accepts_a_good_file(self):
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            f.write('{"listeners": [{"listen": "127.0.0.1:1143", "upstream": {"addresses": ["127.0.0.1:143"]}}]}')
        try:
            result = self.run_imapscope("--check-config", f.name)
            self.assertEqual(result.returncode, 0, result.stderr)
            self.assertIn("config OK", result.stdout)
        finally:
            os.unlink(f.name)

    def test_unusable_certificate_stops_startup(self):
        result = self.run_imapscope("--listen-tls", f"127.0.0.1:{free_port()}", "--tls-cert", "/nonexistent.pem",
                                    "--tls-key", "/nonexistent.key", "--upstream", "127.0.0.1:143")
        self.assertNotEqual(result.returncode, 0)
        self.assertIn("/nonexistent.pem", result.stderr)

    def test_every_command_answers_help(self):
        for command, usage, option in (([], "usage: imapscope [--config FILE]", "--listen-tls HOST:PORT"),
                                       (["inspect"], "usage: imapscope inspect", "--pcap OUT.pcapng"),
                                       (["replay"], "usage: imapscope replay", "--password-file F"),
                                       (["decode"], "usage: imapscope decode FILE...", "-h, --help")):
            for flag in ("--help", "-h"):
                with self.subTest(command=command, flag=flag):
                    result = self.run_imapscope(*command, flag)
                    self.assertEqual(result.returncode, 0, result.stderr)
                    self.assertTrue(result.stdout.startswith(usage), result.stdout)
                    self.assertIn(option, result.stdout)
                    self.assertEqual(result.stderr, "")
        # Among other arguments too; an unknown option is still refused.
        result = self.run_imapscope("--listen", "127.0.0.1:1", "--help")
        self.assertEqual((result.returncode, result.stdout.splitlines()[0]),
                         (0, "usage: imapscope [--config FILE] [flags]        run the proxy"))
        result = self.run_imapscope("inspect", "--bogus")
        self.assertEqual(result.returncode, 2)
        self.assertIn("inspect: unknown option --bogus", result.stderr)


class Logs(unittest.TestCase):
    def run_sessions(self, extra_args=(), env=None):
        """A proxy with the given flags; one login with a password, one failed; its log lines."""
        port = free_port()
        proxy = Imapscope(["--listen", f"127.0.0.1:{port}", "--upstream", f"127.0.0.1:{DOVECOT.port}",
                           "--plaintext-login", "allow", *extra_args])
        self.addCleanup(proxy.stop)
        if env:
            open(proxy.log_path, "w").close()  # the file stderr will be: the journal stream's stand-in
            env = env(os.stat(proxy.log_path))
        proxy.start([port], env=env)
        c = imaplib.IMAP4("127.0.0.1", port)
        c.login("alice", USERS["alice"])
        c.logout()
        c = imaplib.IMAP4("127.0.0.1", port)
        with self.assertRaises(imaplib.IMAP4.error):
            c.login("alice", "Wrong-Password-In-Json")
        c.logout()
        proxy.stop()
        self.assertNotIn(USERS["alice"], proxy.log())
        self.assertNotIn("Wrong-Password-In-Json", proxy.log())
        return proxy.log().splitlines()

    def test_json_lines(self):
        lines = self.run_sessions(["--log-format", "json"])
        events = [json.loads(line) for line in lines]  # every line one JSON object
        self.assertTrue(all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", e["ts"]) for e in events))
        ends = [e for e in events if e["event"] == "session_end" and e.get("state") != "not_authenticated"]
        self.assertEqual(len(ends), 2, lines)
        self.assertEqual(ends[0]["level"], "info")
        self.assertIsInstance(ends[0]["session"], int)
        self.assertIsInstance(ends[0]["bytes_from_server"], int)
        self.assertIn(ends[0]["reason"], ("client_closed", "server_closed"))  # LOGOUT: who closes first
        self.assertRegex(ends[0]["client"], r"^127\.0\.0\.1:\d+$")
        self.assertEqual(ends[0]["client_version"], "")

    def test_journal_stamps_the_lines(self):
        def journal(st):
            return dict(os.environ, JOURNAL_STREAM=f"{st.st_dev}:{st.st_ino}")
        lines = self.run_sessions(env=journal)
        # journald stamps each line: no time of ours, the priority as a syslog prefix.
        self.assertTrue(all(re.match(r"^<[3-7]>level=(debug|info|warning|error) event=", line) for line in lines), lines)
        self.assertTrue(any(line.startswith("<6>level=info event=session_end ") for line in lines))
        # JSON keeps its "ts"; a JOURNAL_STREAM that is some other file changes nothing.
        lines = self.run_sessions(["--log-format", "json"], env=journal)
        self.assertTrue(all(line.startswith("<") and "ts" in json.loads(line[3:]) for line in lines), lines)
        lines = self.run_sessions(env=lambda st: dict(os.environ, JOURNAL_STREAM=f"{st.st_dev}:{st.st_ino + 1}"))
        self.assertTrue(all(re.match(r"^\d{4}-\d\d-\d\dT\S+Z level=", line) for line in lines), lines)

    def test_start_failure_as_json(self):
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            state = temp_dir(prefix="imapscope-logs-")
            result = subprocess.run([imapscope_binary(), "--log-format", "json", "--listen", f"127.0.0.1:{port}",
                                     "--upstream", "127.0.0.1:1", "--admin", "none", "--state-dir", state],
                                    capture_output=True, text=True, timeout=30)
        self.assertEqual(result.returncode, 1)
        failure = json.loads(result.stderr.splitlines()[-1])
        self.assertEqual((failure["level"], failure["event"]), ("error", "start_failed"))
        self.assertIn(f"127.0.0.1:{port} is already in use", failure["error"])

    def test_bad_format_is_refused(self):
        result = subprocess.run([imapscope_binary(), "--log-format", "xml", "--listen", "127.0.0.1:1",
                                 "--upstream", "127.0.0.1:1"], capture_output=True, text=True, timeout=30)
        self.assertEqual(result.returncode, 2)
        self.assertIn('flag --log-format: must be one of json, keyvalue (not "xml")', result.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
