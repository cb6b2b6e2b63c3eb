"""Real mail clients from Debian 12 through imapscope to a real Dovecot: each logs in
over TLS (STARTTLS or implicit, the fixture's test CA; Evolution in plaintext, see its
class), does its ordinary sync of a seeded INBOX, and leaves; the proxy must name it
right in its session_end lines (the table EXPECTED below) and find nothing to report
about it (an ordinary session is no finding). Terminal clients run in tmux (keys sent,
the screen read back), the graphical ones under an Xvfb of their own, the GNOME ones
also in a D-Bus session with a keyring of their own. One class per client: its
setUpClass runs the client twice (a user checking mail again) against a proxy of its
own with the default diagnostics thresholds; its tests read the proxy's log.
"""
import base64
import ctypes
import glob
import imaplib
import json
import os
import re
import sqlite3
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "support"))
from imap_fixtures import temp_dir, Dovecot, Imapscope, free_port, stop_process, wait_until  # noqa: E402

# client -> (family, method) the proxy must log for every session of that client. A
# client in MAY_BE_UNKNOWN may also come out `unknown` (never another family): its
# opening is shared with another family's, so a session can be too short to tell.
EXPECTED = {
    "mutt": ("mutt", "heuristic"),            # no ID; tags a0000, a0001...
    "neomutt": ("mutt", "heuristic"),         # mutt's IMAP code: the same tags and opening
    "alpine": ("alpine", "id"),               # ID ("name" "alpine" "version" "2.26") after login
    "offlineimap": ("offlineimap", "id"),     # ID ("name" "OfflineIMAP" "version" "8.0.0")
    "imapfilter": ("imapfilter", "heuristic"),  # no ID; hex tags from 1000
    "getmail": ("python_imaplib", "heuristic"),  # no ID; Python's imaplib on the wire
    "claws_mail": ("claws_mail", "heuristic"),  # no ID; decimal tags from 1
    "thunderbird": ("thunderbird", "id"),     # ID ("name" "Thunderbird" "version" ...)
    "geary": ("geary", "heuristic"),          # no ID; tags a001, a002...; lower-case login
    "evolution": ("evolution", "heuristic"),  # no ID; tags A00000, A00001...; NOTIFY SET
}
MAY_BE_UNKNOWN = {"claws_mail"}  # numeric tags from 1 and no ID, as mbsync and SOGo's NGImap4

MESSAGES = 5
DOVECOT = None


def seeded_message(user, i):
    return (f"From: sender{i}@example.org\r\nTo: {user}@example.org\r\nSubject: seeded {i}\r\n"
            f"Message-ID: <seed{i}.{user}@example.org>\r\n\r\nbody {i} of {user}\r\n").encode()


def setUpModule():
    global DOVECOT
    users = {client: client + "-secret" for client in EXPECTED}
    DOVECOT = Dovecot(users=users)
    try:
        DOVECOT.start()
        for user in users:
            seed = imaplib.IMAP4("127.0.0.1", DOVECOT.port)
            seed.login(user, DOVECOT.users[user])
            for i in range(MESSAGES):
                seed.append("INBOX", None, None, seeded_message(user, i))
            seed.logout()
    except BaseException:
        DOVECOT.stop()
        raise


def tearDownModule():
    if DOVECOT:
        DOVECOT.stop()


def normalized(message):
    return message.replace(b"\r\n", b"\n").rstrip(b"\n")


def installed(*programs):
    missing = [p for p in programs if shutil.which(p) is None]
    return f"not installed: {', '.join(missing)} (scripts/deps)" if missing else None


class Tmux:
    """A tmux server of our own (its socket in the test's folder) running one program
    in a 120x40 window: keys sent, the screen read back, waits bounded."""

    def __init__(self, workdir, command, env):
        self.socket = os.path.join(workdir, "tmux.sock")
        self.env = env
        subprocess.run(["tmux", "-S", self.socket, "new-session", "-d", "-s", "client", "-x", "120", "-y", "40",
                        command], env=env, check=True, timeout=30)
        self.pid = int(self.tmux("display-message", "-p", "#{pid}").strip())

    def tmux(self, *args):
        return subprocess.run(["tmux", "-S", self.socket, *args], env=self.env, capture_output=True, text=True,
                              timeout=30).stdout

    def screen(self):
        return self.tmux("capture-pane", "-p", "-t", "client")

    def wait_for(self, *texts, timeout=30):
        """The first of texts that shows on the screen (AssertionError with the screen if none does)."""
        deadline = time.monotonic() + timeout
        screen = ""
        while time.monotonic() < deadline:
            screen = self.screen()
            for text in texts:
                if text in screen:
                    return text
            time.sleep(0.2)
        raise AssertionError(f"none of {texts} on the screen after {timeout}s:\n{screen}")

    def send(self, *keys):
        self.tmux("send-keys", "-t", "client", *keys)

    def wait_gone(self, timeout=20):
        """The program quit: its session, and with it the tmux server, ends."""
        wait_until("the client to quit", lambda: subprocess.run(
            ["tmux", "-S", self.socket, "has-session"], env=self.env, capture_output=True).returncode != 0,
            timeout=timeout, interval=0.2)

    def stop(self):
        self.tmux("kill-server")
        try:  # still our tmux server (not a reused pid)? Then it didn't hear kill-server.
            with open(f"/proc/{self.pid}/cmdline", "rb") as f:
                if b"tmux" in f.read():
                    os.kill(self.pid, signal.SIGKILL)
        except (FileNotFoundError, ProcessLookupError):
            pass


class Xvfb:
    """An X server of our own on a free display (Xvfb picks it: -displayfd)."""

    def __init__(self):
        read, write = os.pipe()
        self.proc = subprocess.Popen(["Xvfb", "-displayfd", str(write), "-screen", "0", "1280x1024x24",
                                      "-nolisten", "tcp", "-ac"], pass_fds=(write,),
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(write)
        with os.fdopen(read) as f:
            self.display = ":" + f.readline().strip()
        if self.display == ":":
            raise RuntimeError("Xvfb did not start")

    def stop(self):
        stop_process(self.proc)


def stop_group(proc, sig=signal.SIGTERM, timeout=20):
    """Stops a program started with start_new_session and what it started (a browser's
    content processes): sig to the program, then SIGKILL to its own process group."""
    stop_process(proc, sig, timeout)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # gone before its folder is removed
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            return
        time.sleep(0.1)


class RealClient:
    """One client's runs through a proxy of its own; the tests read what it logged.
    Subclasses set `client` and define drive(), which runs the client to the end (run
    1, then run 2 with what run 1 left) and keeps what it downloaded."""
    client = None
    run_number = 0
    plaintext_login = None  # "allow" where a client can't be given the test CA (says why)

    @classmethod
    def setUpClass(cls):
        cls.user = cls.client
        cls.password = DOVECOT.users[cls.user]
        cls.ca = DOVECOT.certs["ca"]
        cls.work = temp_dir(prefix=f"imapscope-{cls.client}-")
        os.chmod(cls.work, 0o755)  # getmail delivers as nobody
        cls.addClassCleanup(shutil.rmtree, cls.work, ignore_errors=True)
        cls.plain_port, cls.tls_port = free_port(), free_port()
        # Default diagnostics thresholds: what an administrator would be shown.
        cls.proxy = Imapscope(["--listen", f"127.0.0.1:{cls.plain_port}", "--listen-tls", f"127.0.0.1:{cls.tls_port}",
                               "--tls-cert", DOVECOT.certs["cert"], "--tls-key", DOVECOT.certs["key"],
                               "--upstream", f"127.0.0.1:{DOVECOT.port}",
                               "--transcripts", os.path.join(cls.work, "transcripts")] +
                              (["--plaintext-login", cls.plaintext_login] if cls.plaintext_login else []))
        cls.addClassCleanup(shutil.rmtree, cls.proxy.log_dir, ignore_errors=True)
        cls.addClassCleanup(cls.proxy.stop)
        cls.proxy.start([cls.plain_port, cls.tls_port])
        try:
            # Twice, as a user checks mail again a little later: the second run is as ordinary
            # as the first (and finds its own state from the first: caches, seen flags).
            for cls.run_number in (1, 2):
                cls.drive()
        finally:
            cls.proxy.stop()
        cls.log = cls.proxy.log()

    @classmethod
    def env(cls, **more):
        home = os.path.join(cls.work, "home")
        os.makedirs(home, exist_ok=True)
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": home, "LANG": "C.UTF-8",
               "TERM": "xterm-256color", "XDG_RUNTIME_DIR": home, "XDG_CONFIG_HOME": os.path.join(home, ".config"),
               "XDG_CACHE_HOME": os.path.join(home, ".cache"),
               # No D-Bus session unless a test makes one (Geary): with dbus-x11 installed, a GTK
               # program would otherwise autolaunch a bus (and an accessibility bus) that outlives it.
               "DBUS_SESSION_BUS_ADDRESS": f"unix:path={home}/no-session-bus", "NO_AT_BRIDGE": "1"}
        env.update(more)
        return env

    @classmethod
    def run_program(cls, args, timeout=60, **kwargs):
        result = subprocess.run(args, capture_output=True, text=True, timeout=timeout, **kwargs)
        if result.returncode != 0:
            raise AssertionError(f"{args[0]} exited with {result.returncode}: {result.stdout}{result.stderr}")
        return result

    @classmethod
    def client_lines(cls):
        """What the client sent, from the proxy's transcripts (credentials redacted there)."""
        lines = []
        for path in sorted(glob.glob(os.path.join(cls.work, "transcripts", "*.jsonl"))):
            with open(path, errors="replace") as f:
                for line in f:
                    try:
                        event = json.loads(line)
                    except ValueError:
                        continue  # a line still being written
                    if event.get("dir") == "C":
                        lines.append(f"{event['s']} {event.get('text', '')[:200]}")
        return lines

    def session_ends(self):
        """session_end lines of the sessions that sent something (not the fixture's port probes)."""
        return [line for line in self.log.splitlines()
                if "event=session_end" in line and "commands=" in line and "bytes_from_client=0 " not in line]

    def test_named(self):
        family, method = EXPECTED[self.client]
        ends = self.session_ends()
        self.assertGreaterEqual(len(ends), 2, self.log)  # a session (or more) per run
        for line in ends:
            named = re.search(r"client_family=(\S+) .*client_id=(\S+)", line)
            if self.client in MAY_BE_UNKNOWN and named.groups() == ("unknown", "unknown"):
                continue
            self.assertEqual((named.group(1), named.group(2)), (family, method), line)

    def test_quiet(self):
        findings = [line for line in self.log.splitlines() if "event=finding" in line]
        self.assertEqual(findings, [])


def tls_sessions_only(testcase):
    for line in testcase.session_ends():
        testcase.assertRegex(line, r"client_tls=TLSv1\.[23] ")


# ---------------------------------------------------------------- terminal clients

class MuttLike(RealClient):
    program = None

    @classmethod
    def drive(cls):
        rc = os.path.join(cls.work, "muttrc")
        with open(rc, "w") as f:
            f.write(f'set folder="imap://{cls.user}@localhost:{cls.plain_port}/"\n'
                    f'set spoolfile="+INBOX"\nset imap_pass="{cls.password}"\n'
                    f'set ssl_starttls=yes\nset ssl_force_tls=yes\nset certificate_file="{cls.ca}"\n'
                    'set quit=yes\nset move=no\nset record=""\nset postponed=""\nset header_cache=""\n'
                    'set message_cachedir=""\nset mail_check=60\nset timeout=60\nset sort=date\n')
        os.chmod(rc, 0o600)
        tmux = Tmux(cls.work, f"{cls.program} -n -F {rc}", cls.env())
        try:
            tmux.wait_for(f"seeded {MESSAGES - 1}")    # the index, from the headers it fetched
            tmux.send("Enter")                         # opens the current (first, then first new) message
            tmux.wait_for(f"of {cls.user}")            # its body ("body N of user"), from Dovecot
            tmux.send("q")
            tmux.wait_for(f"seeded {MESSAGES - 1}")
            tmux.send("q")                             # quit (quit=yes: no question)
            tmux.wait_gone()
        finally:
            tmux.stop()


@unittest.skipIf(installed("mutt", "tmux"), installed("mutt", "tmux"))
class Mutt(MuttLike, unittest.TestCase):
    client = "mutt"
    program = "mutt"

    def test_starttls(self):
        tls_sessions_only(self)


@unittest.skipIf(installed("neomutt", "tmux"), installed("neomutt", "tmux"))
class NeoMutt(MuttLike, unittest.TestCase):
    client = "neomutt"
    program = "neomutt"


@unittest.skipIf(installed("alpine", "tmux"), installed("alpine", "tmux"))
class Alpine(RealClient, unittest.TestCase):
    client = "alpine"

    @classmethod
    def drive(cls):
        pinerc = os.path.join(cls.work, "pinerc")
        with open(pinerc, "w") as f:
            f.write(f"personal-name=Test\nuser-domain=example.org\n"
                    f"inbox-path={{localhost:{cls.tls_port}/ssl/user={cls.user}}}INBOX\n"
                    "folder-collections=\ndefault-fcc=\npostponed-folder=\n"
                    "feature-list=quit-without-confirm,skip-welcome-screen\n")
        # c-client checks the certificate against OpenSSL's default store: SSL_CERT_FILE names the
        # test CA; the host name must be a DNS name of the certificate (localhost, not 127.0.0.1).
        tmux = Tmux(cls.work, f"alpine -p {pinerc} -i", cls.env(SSL_CERT_FILE=cls.ca))
        try:
            # A first run shows a greeting; the password can't be in pinerc: typed as a user would.
            for _ in range(6):
                seen = tmux.wait_for("Exit this greeting", "ENTER PASSWORD", "Preserve password",
                                     f"seeded {MESSAGES - 1}")
                if seen == "Exit this greeting":
                    tmux.send("E")
                elif seen == "ENTER PASSWORD":
                    tmux.send(cls.password, "Enter")
                elif seen == "Preserve password":
                    tmux.send("N")
                else:
                    break
                time.sleep(0.5)  # the screen still shows what was answered for a moment
            tmux.wait_for(f"seeded {MESSAGES - 1}")
            tmux.send("Enter")                          # views the current (first unseen) message
            tmux.wait_for(f"of {cls.user}")             # its body, from Dovecot
            tmux.send("q")                              # quit-without-confirm
            tmux.wait_gone()
        finally:
            tmux.stop()


# ---------------------------------------------------------------- batch clients

def maildir_messages(path):
    messages = []
    for name in glob.glob(os.path.join(path, "**", "new", "*"), recursive=True) + \
            glob.glob(os.path.join(path, "**", "cur", "*"), recursive=True):
        with open(name, "rb") as f:
            messages.append(normalized(f.read()))
    return sorted(messages)


@unittest.skipIf(installed("offlineimap"), installed("offlineimap"))
class OfflineImap(RealClient, unittest.TestCase):
    client = "offlineimap"

    @classmethod
    def drive(cls):
        rc = os.path.join(cls.work, "offlineimaprc")
        cls.local = os.path.join(cls.work, "mail")
        with open(rc, "w") as f:
            f.write(f"[general]\naccounts = test\nmetadata = {cls.work}/metadata\n"
                    "[Account test]\nlocalrepository = local\nremoterepository = remote\n"
                    f"[Repository local]\ntype = Maildir\nlocalfolders = {cls.local}\n"
                    f"[Repository remote]\ntype = IMAP\nremotehost = localhost\nremoteport = {cls.tls_port}\n"
                    f"remoteuser = {cls.user}\nremotepass = {cls.password}\nssl = yes\nsslcacertfile = {cls.ca}\n"
                    "readonly = True\nfolderfilter = lambda name: name == 'INBOX'\n")
        os.chmod(rc, 0o600)
        cls.run_program(["offlineimap", "-c", rc, "-o", "-u", "basic"], env=cls.env())

    def test_downloaded_what_dovecot_holds(self):
        self.assertEqual(maildir_messages(self.local),
                         sorted(normalized(seeded_message(self.user, i)) for i in range(MESSAGES)))


@unittest.skipIf(installed("imapfilter"), installed("imapfilter"))
class ImapFilter(RealClient, unittest.TestCase):
    client = "imapfilter"

    @classmethod
    def drive(cls):
        config = os.path.join(cls.work, "config.lua")
        cls.fetched = os.path.join(cls.work, "fetched")
        # No `ssl` key on the plain port: imapfilter does STARTTLS by itself when offered.
        with open(config, "w") as f:
            f.write("options.timeout = 30\noptions.subscribe = false\n"
                    f"account = IMAP {{ server = 'localhost', port = {cls.plain_port}, username = '{cls.user}', "
                    f"password = '{cls.password}' }}\n"
                    f"local out = io.open('{cls.fetched}', 'wb')\n"
                    "for _, m in ipairs(account.INBOX:select_all()) do\n"
                    "  local mailbox, uid = table.unpack(m)\n"
                    "  out:write(mailbox[uid]:fetch_message(), '\\n=====END=====\\n')\n"
                    "end\nout:close()\n")
        os.chmod(config, 0o600)
        cls.run_program(["imapfilter", "-c", config, "-t", cls.ca], env=cls.env())
        with open(cls.fetched, "rb") as f:
            cls.output = f.read()

    def test_downloaded_what_dovecot_holds(self):
        got = [normalized(m) for m in self.output.split(b"\n=====END=====\n") if m.strip()]
        self.assertEqual(sorted(got), sorted(normalized(seeded_message(self.user, i)) for i in range(MESSAGES)))

    def test_starttls(self):
        tls_sessions_only(self)


@unittest.skipIf(installed("getmail"), installed("getmail"))
class Getmail(RealClient, unittest.TestCase):
    client = "getmail"

    @classmethod
    def drive(cls):
        cls.local = os.path.join(cls.work, "maildir")
        # getmail refuses to deliver as root: `user` makes it deliver as nobody.
        as_root = os.geteuid() == 0
        for sub in ("cur", "new", "tmp", ""):
            os.makedirs(os.path.join(cls.local, sub), exist_ok=True)
            if as_root:
                shutil.chown(os.path.join(cls.local, sub), "nobody")
        with open(os.path.join(cls.work, "getmailrc"), "w") as f:
            f.write(f"[retriever]\ntype = SimpleIMAPSSLRetriever\nserver = localhost\nport = {cls.tls_port}\n"
                    f"username = {cls.user}\npassword = {cls.password}\nca_certs = {cls.ca}\n"
                    'mailboxes = ("INBOX",)\n'
                    f"[destination]\ntype = Maildir\npath = {cls.local}/\n" + ("user = nobody\n" if as_root else "") +
                    "[options]\nread_all = false\ndelete = false\nreceived = false\ndelivered_to = false\n")
        os.chmod(os.path.join(cls.work, "getmailrc"), 0o600)
        cls.run_program(["getmail", "--getmaildir", cls.work, "--rcfile", "getmailrc"], env=cls.env())

    def test_downloaded_what_dovecot_holds(self):
        # getmail adds Return-Path and X-getmail-retrieved-from-mailbox: left out.
        added = (b"Return-Path:", b"X-getmail-")
        got = [b"\n".join(line for line in m.split(b"\n") if not line.startswith(added))
               for m in maildir_messages(self.local)]
        self.assertEqual(sorted(got), sorted(normalized(seeded_message(self.user, i)) for i in range(MESSAGES)))


# ---------------------------------------------------------------- graphical clients

@unittest.skipIf(installed("claws-mail", "Xvfb"), installed("claws-mail", "Xvfb"))
class ClawsMail(RealClient, unittest.TestCase):
    """A prepared config folder: the account (implicit TLS, "accept valid certificates"
    so no dialog asks), its password in passwordstorerc (a value without Claws' {AES}
    prefix is read as plain text), a local mailbox (else the setup wizard opens); the
    test CA through SSL_CERT_FILE. --receive-all fetches the INBOX's headers, --exit
    (to the running instance) logs out."""
    client = "claws_mail"

    @classmethod
    def drive(cls):
        config = os.path.join(cls.work, "claws")
        if cls.run_number == 1:
            cls.prepare(config)
        xvfb = Xvfb()
        env = cls.env(DISPLAY=xvfb.display, SSL_CERT_FILE=cls.ca)
        claws = None
        sent_before = len(cls.client_lines())
        try:
            claws = subprocess.Popen(["claws-mail", "--alternate-config-dir", config, "--receive-all"], env=env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
            # It saves what it fetched when it quits: wait for this run's sweep of the INBOX's
            # flags (after its headers on the first run), then ask it to quit.
            wait_until("Claws Mail to check the INBOX", lambda: any(
                "UID FETCH 1:* (FLAGS UID)" in line for line in cls.client_lines()[sent_before:]), timeout=60,
                interval=0.3)
            time.sleep(1)
            cls.run_program(["claws-mail", "--alternate-config-dir", config, "--exit"], env=env, timeout=30)
            claws.wait(timeout=30)
            with open(os.path.join(config, "imapcache", "localhost", cls.user, "INBOX", ".claws_cache"), "rb") as f:
                cls.cache = f.read()
        finally:
            if claws:
                stop_group(claws)
            xvfb.stop()

    @classmethod
    def prepare(cls, config):
        os.makedirs(config)
        home = cls.env()["HOME"]
        for folder in ("inbox", "outbox", "draft", "queue", "trash"):
            os.makedirs(os.path.join(home, "Mail", folder))
        with open(os.path.join(config, "accountrc"), "w") as f:
            f.write(f"[Account: 1]\naccount_name={cls.user}@localhost\nis_default=1\nname=Test\n"
                    f"address={cls.user}@example.org\nprotocol=3\nreceive_server=localhost\nsmtp_server=localhost\n"
                    f"user_id={cls.user}\nssl_imap=1\nset_imapport=1\nimap_port={cls.tls_port}\nimap_auth_method=0\n"
                    "ssl_certs_auto_accept=1\n")
        with open(os.path.join(config, "passwordstorerc"), "w") as f:
            f.write(f"[account:1]\nrecv {cls.password}\n")
        os.chmod(os.path.join(config, "passwordstorerc"), 0o600)
        with open(os.path.join(config, "folderlist.xml"), "w") as f:
            f.write('<?xml version="1.0" encoding="UTF-8"?>\n<folderlist>\n'
                    ' <folder type="mh" name="Mailbox" path="Mail" collapsed="0">\n' +
                    "".join(f'  <folderitem type="{t}" name="{t}" path="{t}" />\n'
                            for t in ("inbox", "outbox", "queue", "trash", "draft")) +
                    " </folder>\n</folderlist>\n")

    def test_downloaded_what_dovecot_holds(self):
        for i in range(MESSAGES):
            self.assertIn(f"seed{i}.{self.user}@example.org".encode(), self.cache)
            self.assertIn(f"seeded {i}".encode(), self.cache)


class NssProfile:
    """Thunderbird's profile files written the way it writes them: the CA in cert9.db
    (certutil), the password in logins.json, encrypted with the profile's key4.db by
    NSS itself (PK11SDR_Encrypt, as Thunderbird's login manager does; no primary password)."""

    class SecItem(ctypes.Structure):
        _fields_ = [("type", ctypes.c_uint), ("data", ctypes.c_void_p), ("len", ctypes.c_uint)]

    @classmethod
    def create(cls, profile, ca, origin, user, password):
        subprocess.run(["certutil", "-N", "-d", f"sql:{profile}", "--empty-password"], check=True, timeout=60)
        subprocess.run(["certutil", "-A", "-n", "imapscope test CA", "-t", "C,,", "-i", ca, "-d", f"sql:{profile}"],
                       check=True, timeout=60)
        # A child process: NSS initialised in this one would stay so (one database per process).
        script = (f"import sys; sys.path.insert(0, {HERE!r}); from real_clients_test import NssProfile; "
                  f"print(NssProfile.encrypt({profile!r}, {user!r})); "
                  f"print(NssProfile.encrypt({profile!r}, sys.stdin.read()))")
        out = subprocess.run([sys.executable, "-B", "-c", script], input=password, capture_output=True, text=True,
                             timeout=60, check=True).stdout.split()
        now = int(time.time() * 1000)
        login = {"id": 1, "hostname": origin, "httpRealm": origin, "formSubmitURL": None, "usernameField": "",
                 "passwordField": "", "encryptedUsername": out[0], "encryptedPassword": out[1],
                 "guid": "{" + str(uuid.uuid4()) + "}", "encType": 1, "timeCreated": now, "timeLastUsed": now,
                 "timePasswordChanged": now, "timesUsed": 1}
        with open(os.path.join(profile, "logins.json"), "w") as f:
            json.dump({"nextId": 2, "logins": [login], "potentiallyVulnerablePasswords": [],
                       "dismissedBreachAlertsByLoginGUID": {}, "version": 3}, f)

    @classmethod
    def encrypt(cls, profile, text):
        nss = ctypes.CDLL("libnss3.so")
        if nss.NSS_InitReadWrite(f"sql:{profile}".encode()) != 0:
            raise RuntimeError("NSS_InitReadWrite failed")
        try:
            item = cls.SecItem
            nss.PK11SDR_Encrypt.argtypes = [ctypes.POINTER(item)] * 3 + [ctypes.c_void_p]
            data = ctypes.create_string_buffer(text.encode())
            plain = item(0, ctypes.cast(data, ctypes.c_void_p), len(text.encode()))
            out = item(0, None, 0)
            # The default key (an empty key id), as Thunderbird's login manager uses.
            if nss.PK11SDR_Encrypt(ctypes.byref(item(0, None, 0)), ctypes.byref(plain), ctypes.byref(out), None) != 0:
                raise RuntimeError("PK11SDR_Encrypt failed")
            return base64.b64encode(ctypes.string_at(out.data, out.len)).decode()
        finally:
            nss.NSS_Shutdown()


@unittest.skipIf(installed("thunderbird", "Xvfb", "certutil"), installed("thunderbird", "Xvfb", "certutil"))
class Thunderbird(RealClient, unittest.TestCase):
    """Debian's Thunderbird with a prepared profile: the account in user.js (implicit
    TLS, normal password), the test CA and the stored password in the profile's NSS
    database, every first-run dialog turned off. It checks the INBOX at start, keeps
    the messages for offline use (mbox files under ImapMail/) and is stopped with SIGTERM."""
    client = "thunderbird"

    @classmethod
    def drive(cls):
        profile = os.path.join(cls.work, "profile")
        if cls.run_number == 1:
            cls.prepare(profile)
        xvfb = Xvfb()
        thunderbird = None
        store = os.path.join(profile, "ImapMail", "localhost")
        sent_before = len(cls.client_lines())

        def synced():
            """Run 1: the messages are in its offline store; run 2: it checked the INBOX again."""
            if thunderbird.poll() is not None:
                return True  # it left early: the wait ends, the check below says so
            if cls.run_number > 1:
                return any("UID fetch 1:* (FLAGS)" in line for line in cls.client_lines()[sent_before:])
            # Should its first connections still race into two INBOX stores (INBOX, INBOX-1),
            # the messages count wherever they landed.
            data = b""
            for path in glob.glob(os.path.join(store, "*")):
                if os.path.isfile(path) and not path.endswith((".msf", ".dat")):
                    with open(path, "rb") as f:
                        data += f.read()
            return all(f"body {i} of {cls.user}".encode() in data for i in range(MESSAGES)) and data

        try:
            with open(os.path.join(cls.work, "thunderbird.log"), "w") as log:
                thunderbird = subprocess.Popen(["thunderbird", "--profile", profile, "--no-remote"],
                                               env=cls.env(DISPLAY=xvfb.display, MOZ_CRASHREPORTER_DISABLE="1"),
                                               stdout=log, stderr=log, start_new_session=True)
            try:
                result = wait_until("Thunderbird to sync the INBOX", synced, timeout=40, interval=0.5)
                if thunderbird.poll() is not None:
                    raise AssertionError("Thunderbird left before it had synced")
                if cls.run_number == 1:
                    cls.mbox = result
                else:
                    time.sleep(1)  # the answers reach it
            except AssertionError as e:
                with open(os.path.join(cls.work, "thunderbird.log"), errors="replace") as log:
                    output = log.read()[-3000:]
                found = {os.path.relpath(p, profile): os.path.getsize(p)
                         for p in glob.glob(os.path.join(store, "**"), recursive=True) if os.path.isfile(p)}
                raise AssertionError(f"{e} (exit status {thunderbird.poll()}); it sent:\n" + "\n".join(
                    cls.client_lines()) + f"\nits offline store: {found}\nits output ends with:\n{output}") from None
        finally:
            if thunderbird:
                stop_group(thunderbird)
            xvfb.stop()

    @classmethod
    def prepare(cls, profile):
        os.makedirs(os.path.join(profile, "ImapMail", "localhost"))
        open(os.path.join(profile, "ImapMail", "localhost", "INBOX"), "w").close()
        NssProfile.create(profile, cls.ca, "imap://localhost", cls.user, cls.password)
        prefs = {
            "mail.account.account1.identities": "id1", "mail.account.account1.server": "server1",
            "mail.account.account2.server": "server2", "mail.accountmanager.accounts": "account1,account2",
            "mail.accountmanager.defaultaccount": "account1", "mail.accountmanager.localfoldersserver": "server2",
            "mail.identity.id1.fullName": "Test", "mail.identity.id1.useremail": f"{cls.user}@example.org",
            "mail.identity.id1.valid": True,
            "mail.server.server1.hostname": "localhost", "mail.server.server1.port": cls.tls_port,
            "mail.server.server1.socketType": 3, "mail.server.server1.type": "imap",
            "mail.server.server1.userName": cls.user, "mail.server.server1.name": f"{cls.user}@localhost",
            "mail.server.server1.authMethod": 3, "mail.server.server1.login_at_startup": True,
            "mail.server.server1.check_new_mail": True,
            # Its folder store made beforehand (with an INBOX): on an empty profile its first two
            # connections race to create the INBOX (INBOX and INBOX-1) and its offline sync may not run.
            "mail.server.server1.directory": os.path.join(profile, "ImapMail", "localhost"),
            "mail.server.server1.directory-rel": "[ProfD]ImapMail/localhost",
            "mail.server.server2.hostname": "Local Folders", "mail.server.server2.type": "none",
            "mail.server.server2.userName": "nobody", "mail.server.server2.name": "Local Folders",
            # No first-run dialog, tab or outside connection.
            "mail.shell.checkDefaultClient": False, "mailnews.start_page.enabled": False,
            "mail.provider.suppress_dialog_on_startup": True, "mail.rights.version": 1,
            "app.update.enabled": False, "app.update.auto": False, "datareporting.policy.dataSubmissionEnabled": False,
            "toolkit.telemetry.reportingpolicy.firstRun": False, "mail.spotlight.firstRunDone": True,
            "browser.shell.checkDefaultBrowser": False, "app.donation.eoy.version.viewed": 999,
            "mail.inappnotifications.enabled": False, "browser.safebrowsing.malware.enabled": False,
            "network.connectivity-service.enabled": False, "network.captive-portal-service.enabled": False,
            "extensions.update.enabled": False, "extensions.getAddons.cache.enabled": False,
        }
        with open(os.path.join(profile, "user.js"), "w") as f:
            for key, value in prefs.items():
                f.write(f"user_pref({json.dumps(key)}, {json.dumps(value)});\n")

    def test_downloaded_what_dovecot_holds(self):
        for i in range(MESSAGES):
            self.assertIn(normalized(seeded_message(self.user, i)), self.mbox.replace(b"\r\n", b"\n"))


# A GNOME client in a D-Bus session of its own: a keyring daemon unlocked with a dummy
# password, the client's password stored in it (attributes as the client looks them up),
# the client started; when the test creates the quit file, the client's quit command (it
# logs out), and everything the script started is stopped by pid.
DESKTOP_SESSION = """
set -u
printf '%s' keyring-of-the-test | gnome-keyring-daemon --foreground --unlock --components=secrets >/dev/null 2>&1 &
keyring=$!
i=0
until dbus-send --session --print-reply --dest=org.freedesktop.DBus /org/freedesktop/DBus \\
        org.freedesktop.DBus.NameHasOwner string:org.freedesktop.secrets 2>/dev/null | grep -q true; do
  i=$((i + 1)); [ $i -gt 100 ] && { echo "no keyring on the bus" >&2; kill $keyring; exit 1; }
  sleep 0.1
done
secret-tool store --label="test password" $SECRET_ATTRIBUTES < "$PASSWORD_FILE"
$PROGRAM &
program=$!
i=0
while [ ! -e "$QUIT_FILE" ] && [ $i -lt 900 ] && kill -0 $program 2>/dev/null; do i=$((i + 1)); sleep 0.1; done
$QUIT_COMMAND
i=0
while kill -0 $program 2>/dev/null && [ $i -lt 200 ]; do i=$((i + 1)); sleep 0.1; done
kill $program $keyring 2>/dev/null
wait
"""

DESKTOP_TOOLS = ("Xvfb", "dbus-run-session", "dbus-send", "gnome-keyring-daemon", "secret-tool")


class DesktopClient(RealClient):
    """Runs `program` in a desktop session (DESKTOP_SESSION) under an Xvfb until
    synced(lines sent in this run) holds, then quits it with `quit_command`."""
    program = quit_command = secret_attributes = None

    @classmethod
    def run_session(cls, synced):
        env = cls.env()
        password_file = os.path.join(cls.work, "password")
        with open(password_file, "w") as f:
            f.write(cls.password)
        os.chmod(password_file, 0o600)
        script = os.path.join(cls.work, "session.sh")
        with open(script, "w") as f:
            f.write(DESKTOP_SESSION)
        quit_file = os.path.join(cls.work, "quit")
        if os.path.exists(quit_file):
            os.unlink(quit_file)
        log_path = os.path.join(cls.work, f"{cls.client}-{cls.run_number}.log")
        xvfb = Xvfb()
        session = None
        sent_before = len(cls.client_lines())
        try:
            with open(log_path, "w") as log:
                session = subprocess.Popen(
                    ["dbus-run-session", "--", "sh", script],
                    env=dict(env, DISPLAY=xvfb.display, XDG_DATA_HOME=os.path.join(env["HOME"], ".local", "share"),
                             SECRET_ATTRIBUTES=cls.secret_attributes, PASSWORD_FILE=password_file,
                             PROGRAM=cls.program, QUIT_COMMAND=cls.quit_command, QUIT_FILE=quit_file),
                    stdout=log, stderr=log, start_new_session=True)
            try:
                wait_until(f"{cls.client} to sync the INBOX",
                           lambda: synced(cls.client_lines()[sent_before:]) or session.poll() is not None,
                           timeout=60, interval=0.3)
                if session.poll() is not None:
                    raise AssertionError(f"its session ended early ({session.returncode})")
            except AssertionError as e:
                with open(log_path, errors="replace") as log:
                    output = log.read()[-3000:]
                raise AssertionError(f"{e}; it sent:\n" + "\n".join(cls.client_lines()) +
                                     f"\nits output ends with:\n{output}") from None
            open(quit_file, "w").close()
            session.wait(timeout=40)
        finally:
            if session:
                stop_group(session)
            xvfb.stop()


@unittest.skipIf(installed("geary", *DESKTOP_TOOLS), installed("geary", *DESKTOP_TOOLS))
class Geary(DesktopClient, unittest.TestCase):
    """Geary 43 reads passwords only from the Secret Service: a gnome-keyring of the
    test's own holds it. The account is a geary.ini (implicit TLS); the proxy's
    certificate is pinned in Geary's own store (pinned-certs/localhost.pem), as Geary
    does when a user accepts it for good. It syncs the INBOX into its database."""
    client = "geary"
    program = "geary"
    quit_command = "geary --quit"
    secret_attributes = "xdg:schema org.gnome.Geary proto IMAP host localhost login geary"

    @classmethod
    def drive(cls):
        env = cls.env()
        config = os.path.join(env["XDG_CONFIG_HOME"], "geary", "account_01")
        data = os.path.join(env["HOME"], ".local", "share")
        if cls.run_number == 1:
            os.makedirs(config)
            os.makedirs(os.path.join(data, "geary", "pinned-certs"))
            shutil.copy(DOVECOT.certs["cert"], os.path.join(data, "geary", "pinned-certs", "localhost.pem"))
            with open(os.path.join(config, "geary.ini"), "w") as f:
                f.write("[Metadata]\nversion=1\nstatus=enabled\n\n"
                        f"[Account]\nordinal=1\nsender_mailboxes=Test <{cls.user}@example.org>;\n"
                        "service_provider=other\n\n[Folders]\n\n"
                        f"[Incoming]\nlogin={cls.user}\nremember_password=true\nhost=localhost\nport={cls.tls_port}\n"
                        "transport_security=transport\ncredentials=custom\n\n"
                        "[Outgoing]\nremember_password=true\nhost=localhost\nport=25\ntransport_security=none\n"
                        "credentials=none\n")
        # The INBOX selected and watched (IDLE) in this run; on run 1 its bodies fetched too.
        cls.run_session(lambda sent: any("select INBOX" in line for line in sent)
                        and any(line.endswith(" IDLE") for line in sent)
                        and (cls.run_number > 1 or any("body.peek[text]" in line for line in sent)))
        with sqlite3.connect(os.path.join(data, "geary", "account_01", "geary.db")) as db:
            cls.stored = sorted(db.execute("SELECT subject, message_id, body FROM MessageTable"))

    def test_downloaded_what_dovecot_holds(self):
        self.assertEqual([(subject, message_id) for subject, message_id, _ in self.stored],
                         [(f"seeded {i}", f"<seed{i}.{self.user}@example.org>") for i in range(MESSAGES)])
        for i, (_, _, body) in enumerate(self.stored):
            self.assertIn(f"body {i} of {self.user}", bytes(body).decode() if isinstance(body, bytes) else body)


@unittest.skipIf(installed("evolution", *DESKTOP_TOOLS), installed("evolution", *DESKTOP_TOOLS))
class Evolution(DesktopClient, unittest.TestCase):
    """Evolution 3.46 reads its account from evolution-data-server's registry (ESource
    key files: account, identity, transport), its password from the Secret Service
    (e-source-uid), and keeps the INBOX for offline use (StaySynchronized).
    In plaintext, on a listener with `--plaintext-login allow`: camel checks a server
    certificate against GnuTLS's system store only (no per-account CA, no environment
    override) and asks a person about any other one, so the test CA can't be trusted
    without changing the machine's trust store."""
    client = "evolution"
    plaintext_login = "allow"
    program = "evolution --online -c mail"
    quit_command = "evolution --quit"
    secret_attributes = "xdg:schema org.gnome.Evolution.Data.Source e-source-uid test-account"

    @classmethod
    def drive(cls):
        env = cls.env()
        sources = os.path.join(env["XDG_CONFIG_HOME"], "evolution", "sources")
        cls.cache = os.path.join(env["XDG_CACHE_HOME"], "evolution", "mail", "test-account", "folders", "INBOX")
        if cls.run_number == 1:
            os.makedirs(sources)
            for name, text in {
                "test-account": "[Data Source]\nDisplayName=Test\nEnabled=true\nParent=\n\n[Mail Account]\n"
                                "BackendName=imapx\nIdentityUid=test-identity\nNeedsInitialSetup=false\n\n"
                                f"[Authentication]\nHost=localhost\nMethod=PLAIN\nPort={cls.plain_port}\n"
                                f"RememberPassword=true\nUser={cls.user}\n\n[Security]\nMethod=none\n\n"
                                "[Offline]\nStaySynchronized=true\n",
                "test-identity": "[Data Source]\nDisplayName=Test\nEnabled=true\nParent=test-account\n\n"
                                 f"[Mail Identity]\nAddress={cls.user}@example.org\nName=Test\n\n"
                                 "[Mail Submission]\nTransportUid=test-transport\n",
                "test-transport": "[Data Source]\nDisplayName=Test\nEnabled=true\nParent=test-account\n\n"
                                  "[Mail Transport]\nBackendName=sendmail\n",
            }.items():
                with open(os.path.join(sources, name + ".source"), "w") as f:
                    f.write(text)

        def synced(sent):
            # This run watches the INBOX (IDLE); on run 1 it also has every message offline.
            return any(line.endswith(" IDLE") for line in sent) and (
                cls.run_number > 1 or all(f"body {i} of {cls.user}".encode() in cls.cached() for i in range(MESSAGES)))
        cls.run_session(synced)
        cls.messages = sorted(normalized(m) for m in cls.cached(split=True))

    @classmethod
    def cached(cls, split=False):
        messages = []
        for path in glob.glob(os.path.join(cls.cache, "cur", "**", "*"), recursive=True):
            if os.path.isfile(path):
                with open(path, "rb") as f:
                    messages.append(f.read())
        return messages if split else b"".join(messages)

    def test_downloaded_what_dovecot_holds(self):
        self.assertEqual(self.messages, sorted(normalized(seeded_message(self.user, i)) for i in range(MESSAGES)))


if __name__ == "__main__":
    unittest.main(verbosity=2)
