"""Real components for integration tests and the demo: test certificates, a Dovecot
started on loopback with its own config and temp dir, and imapscope itself.

Everything listens on 127.0.0.1 only; every process started here is stopped by its
pid. Dovecot runs as root with an unprivileged mail user of our own (see
first_valid_uid), so the temp dir's parents must be traversable by that user.

Clean-up, also when a test fails or never reaches its tearDown: every folder made
with temp_dir() is removed, and every process started with start_process() stopped,
when the test process exits (atexit), if nothing did it earlier.
"""
import atexit
import glob
import hashlib
import grp
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

MAIL_USER = "imapscope-mail"
USERS = {"alice": "alice-secret", "bob": "bob-secret"}


_TEMP_DIRS = []
_PROCESSES = []


def temp_dir(prefix="imapscope-"):
    """A new folder under the temp dir, removed at exit at the latest."""
    path = tempfile.mkdtemp(prefix=prefix)
    _TEMP_DIRS.append(path)
    return path


def start_process(args, log_path=None, **popen_args):
    """subprocess.Popen(args), stderr to log_path (if given); stopped at exit at the latest."""
    if log_path is not None:
        with open(log_path, "w") as log:  # the child has its own copy of the descriptor
            proc = subprocess.Popen(args, stderr=log, **popen_args)
    else:
        proc = subprocess.Popen(args, **popen_args)
    _PROCESSES.append(proc)
    return proc


@atexit.register
def _clean_up_at_exit():
    for proc in _PROCESSES:
        stop_process(proc, timeout=10)
    for path in _TEMP_DIRS:
        shutil.rmtree(path, ignore_errors=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port, timeout=20.0, proc=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def stop_process(proc, sig=signal.SIGTERM, timeout=15):
    """Stops a process we started: sig, then SIGKILL after timeout seconds."""
    if proc and proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_until(what, predicate, timeout=20, interval=0.1):
    """predicate()'s first true value, polled until timeout seconds; AssertionError
    naming what when it never comes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}")


def metric_sum(admin_port, name, label=""):
    """The sum of the series of a metric on an imapscope's /metrics that carry label
    (e.g. 'command="append"'; "" for all of them)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/metrics", timeout=10) as r:
        text = r.read().decode()
    return sum(float(line.split()[-1]) for line in text.splitlines()
               if line.startswith(name + "{") and label in line.split("}")[0])


def ensure_mail_user():
    try:
        pwd.getpwnam(MAIL_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", MAIL_USER],
                       check=True)
    entry = pwd.getpwnam(MAIL_USER)
    return entry.pw_uid, entry.pw_gid


def make_certs(directory):
    """A test CA and a server certificate for localhost / 127.0.0.1 signed by it."""
    def run(*args):
        subprocess.run(args, check=True, capture_output=True)
    ca_key, ca_cert = f"{directory}/ca.key", f"{directory}/ca.pem"
    key, csr, cert = f"{directory}/server.key", f"{directory}/server.csr", f"{directory}/server.pem"
    run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca_key, "-out", ca_cert,
        "-days", "2", "-subj", "/CN=imapscope test CA")
    run("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr, "-subj", "/CN=localhost")
    ext = f"{directory}/san.ext"
    with open(ext, "w") as f:
        f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    run("openssl", "x509", "-req", "-in", csr, "-CA", ca_cert, "-CAkey", ca_key, "-CAcreateserial",
        "-out", cert, "-days", "2", "-extfile", ext)
    for path in (cert, ca_cert):
        os.chmod(path, 0o644)
    # Group-readable as Debian's ssl-cert convention: imapscope refuses keys every user can read.
    os.chmod(key, 0o640)
    return {"ca": ca_cert, "cert": cert, "key": key}


class Dovecot:
    """A private Dovecot: IMAP on a plain port (STARTTLS offered) and an implicit-TLS port.

    With trusted set (CIDR blocks, e.g. "127.0.0.0/8"), it also takes client addresses
    from those networks: Dovecot's ID forwarding (login_trusted_networks) on every port,
    and PROXY protocol headers on haproxy_port (haproxy_trusted_networks)."""

    def __init__(self, certs=None, extra_config="", trusted=None, users=None):
        self.uid, self.gid = ensure_mail_user()
        self.users = dict(USERS, **(users or {}))
        self.dir = temp_dir(prefix="imapscope-dovecot-")
        os.chmod(self.dir, 0o755)  # the mail user must reach its maildirs
        self.certs = certs or make_certs(self.dir)
        self.port = free_port()
        self.tls_port = free_port()
        self.haproxy_port = free_port() if trusted else None
        self.proc = None
        if trusted:
            extra_config = f"""
login_trusted_networks = {trusted}
haproxy_trusted_networks = {trusted}
service imap-login {{
  inet_listener imap_haproxy {{
    address = 127.0.0.1
    port = {self.haproxy_port}
    haproxy = yes
  }}
}}
""" + extra_config
        self._write_config(extra_config)

    def _write_config(self, extra):
        d = self.dir
        for sub in ("run", "state", "mail", "home"):
            os.makedirs(f"{d}/{sub}", exist_ok=True)
        for sub in ("mail", "home"):
            os.chown(f"{d}/{sub}", self.uid, self.gid)
        with open(f"{d}/users", "w") as f:
            for user, password in self.users.items():
                f.write(f"{user}:{{PLAIN}}{password}\n")
        group = grp.getgrgid(self.gid).gr_name
        config = f"""
base_dir = {d}/run
state_dir = {d}/state
log_path = {d}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = yes
ssl_cert = <{self.certs['cert']}
ssl_key = <{self.certs['key']}
ssl_min_protocol = TLSv1.2
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:{d}/mail/%u
first_valid_uid = {self.uid}
default_internal_user = {MAIL_USER}
default_internal_group = {group}
default_login_user = {MAIL_USER}
mail_max_userip_connections = 10000
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {d}/users
}}
userdb {{
  driver = static
  args = uid={self.uid} gid={self.gid} home={d}/home/%u
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {self.port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {self.tls_port}
    ssl = yes
  }}
}}
service stats {{
  unix_listener stats-reader {{
    mode = 0666
  }}
  unix_listener stats-writer {{
    mode = 0666
  }}
}}
{extra}
"""
        self.config = f"{d}/dovecot.conf"
        with open(self.config, "w") as f:
            f.write(config)

    def start(self):
        self.proc = start_process(["dovecot", "-F", "-c", self.config], f"{self.dir}/stderr.log",
                                  stdout=subprocess.DEVNULL)
        wait_for_port(self.port, proc=self.proc)
        wait_for_port(self.tls_port, proc=self.proc)
        return self

    def stop(self, remove=True):
        """remove=False keeps its folder, so that start() brings the same server back."""
        stop_process(self.proc)
        if remove:
            shutil.rmtree(self.dir, ignore_errors=True)

    def log(self):
        try:
            with open(f"{self.dir}/dovecot.log") as f:
                return f.read()
        except OSError:
            return ""

    def seed_maildir(self, user, folder, count, flags="S"):
        """count messages put straight into a user's maildir folder ("INBOX" or a
        name), as a delivery would: a large mailbox in seconds, not APPENDed one by
        one. Each is a reply in a thread with the headers clients show (about 700
        bytes); Dovecot indexes them at the first SELECT."""
        root = f"{self.dir}/mail/{user}"
        path = root if folder == "INBOX" else f"{root}/.{folder}"
        for d in (root, path, f"{path}/cur", f"{path}/new", f"{path}/tmp"):
            os.makedirs(d, exist_ok=True)
            os.chown(d, self.uid, self.gid)
        stamp = int(time.time()) - count
        for i in range(count):
            body = (f"Return-Path: <list-{i % 7}@example.org>\r\n"
                    f"From: Sender {i % 13} <sender{i % 13}@example.org>\r\n"
                    f"To: {user}@example.org\r\nCc: team@example.org\r\n"
                    f"Subject: Re: [team] weekly report, part {i}\r\n"
                    f"Date: Mon, 30 Nov 2026 10:{i % 60:02d}:00 +0000\r\n"
                    f"Message-ID: <{i}.{stamp}@mail.example.org>\r\n"
                    f"In-Reply-To: <{max(i - 1, 0)}.{stamp}@mail.example.org>\r\n"
                    f"References: <0.{stamp}@mail.example.org> <{max(i - 2, 0)}.{stamp}@mail.example.org> "
                    f"<{max(i - 1, 0)}.{stamp}@mail.example.org>\r\n"
                    "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
                    "List-Post: <mailto:team@example.org>\r\n\r\n"
                    f"Message {i} of the thread.\r\n").encode()
            name = f"{stamp + i}.M{i}P{os.getpid()}.imapscope-test,S={len(body)}:2,{flags}"
            with open(f"{path}/cur/{name}", "wb") as f:
                f.write(body)
            os.chown(f"{path}/cur/{name}", self.uid, self.gid)

    def imap_pids(self, user):
        """The pids of the user's imap processes (one per logged-in session), from doveadm who."""
        out = subprocess.run(["doveadm", "-c", self.config, "who", "-1", user], capture_output=True, text=True,
                             timeout=30).stdout
        return [int(fields[2]) for fields in (line.split() for line in out.splitlines()[1:])
                if len(fields) >= 3 and fields[0] == user and fields[2].isdigit()]


def load_limits(sessions, clients_per_imap=200):
    """Dovecot settings for `sessions` concurrent sessions (on top of the usual ones).

    imap-login in high-performance mode (a few long-lived processes that also carry
    the implicit-TLS port's TLS), and imap processes serving clients_per_imap clients
    each: 10,000 forked imap processes would cost gigabytes and the run's time, and
    each imap process takes one inotify instance of the mail user's 128 (beyond them
    Dovecot polls for IDLE every 30 s)."""
    logins = max(2, sessions // 5000 + 1)
    return f"""
default_process_limit = {sessions + 1000}
default_client_limit = {2 * sessions + 2000}
default_vsz_limit = 2G
mail_max_userip_connections = {sessions + 1000}
service imap-login {{
  service_count = 0
  process_min_avail = {logins}
  process_limit = {logins}
  client_limit = {2 * sessions // logins + 1000}
}}
service imap {{
  service_count = 0
  client_limit = {clients_per_imap}
  process_limit = {sessions // clients_per_imap + 50}
}}
service auth {{
  client_limit = {2 * sessions + 2000}
}}
service anvil {{
  client_limit = {2 * sessions + 2000}
}}
"""


def imapscope_binary():
    here = os.path.dirname(os.path.abspath(__file__))
    candidates = [os.environ.get("IMAPSCOPE_BIN", ""),
                  os.path.join(here, "..", "..", "build", "test", "proxy", "app", "imapscope"),
                  os.path.join(here, "..", "..", "build", "release", "proxy", "app", "imapscope")]
    for c in candidates:
        if c and os.path.exists(c):
            return os.path.abspath(c)
    raise RuntimeError("imapscope binary not found; set IMAPSCOPE_BIN")


def release_binary():
    """An imapscope built without sanitizers (scripts/test builds build/release), for
    tests that exhaust descriptors or hold thousands of sessions; None if missing."""
    here = os.path.dirname(os.path.abspath(__file__))
    for c in (os.environ.get("IMAPSCOPE_RELEASE_BIN", ""),
              os.path.join(here, "..", "..", "build", "release", "proxy", "app", "imapscope")):
        if c and os.path.exists(c):
            return os.path.abspath(c)
    return None


class Imapscope:
    """imapscope started with flags; its log goes to a file we can read."""

    def __init__(self, args, log_dir=None, binary=None):
        self.binary = binary or imapscope_binary()
        # Each instance serves its metrics on a port of its own (tests run several at once).
        if "--admin" not in args:
            self.admin_port = free_port()
            args = args + ["--admin", f"127.0.0.1:{self.admin_port}"]
        else:
            admin = args[args.index("--admin") + 1]
            self.admin_port = None if admin == "none" else int(admin.rsplit(":", 1)[1])
        # A folder of its own is removed when the test process exits (the log is read after stop()).
        self.log_dir = log_dir or temp_dir(prefix="imapscope-log-")
        # Its secrets and state in a folder of its own, not the system's /var/lib/imapscope.
        if "--state-dir" not in args:
            args = args + ["--state-dir", os.path.join(self.log_dir, "state")]
        self.state_dir = args[args.index("--state-dir") + 1]
        self.token = None  # a configured token (admin_token_file) the caller knows; else the made one
        self.args = args
        self.log_path = f"{self.log_dir}/imapscope.log"
        self.proc = None

    def start(self, wait_ports=(), preexec_fn=None, env=None):
        self.proc = start_process([self.binary] + self.args, self.log_path, stdout=subprocess.DEVNULL,
                                  preexec_fn=preexec_fn, env=env)
        for port in wait_ports:
            wait_for_port(port, proc=self.proc)
        return self

    def stop(self, sig=signal.SIGTERM, timeout=30):
        stop_process(self.proc, sig, timeout)
        return self.proc.returncode if self.proc else None

    def log(self):
        with open(self.log_path) as f:
            return f.read()

    def admin_token(self):
        """The admin token: the one the test configured, or the one imapscope made
        owner-only in its state folder at start (docs/security.md, "Admin address")."""
        if self.token:
            return self.token
        path = os.path.join(self.state_dir, "admin-token")
        wait_until("the admin token file", lambda: os.path.exists(path), 20, 0.05)
        with open(path) as f:
            return f.readline().strip()

    def admin(self, method, path, body=None, token=True, headers=None):
        """A request to the admin address with the token as bearer credential (token:
        True, False for none, or a string); JSON bodies. (status, parsed JSON or text)."""
        headers = dict(headers or {})
        if token:
            headers["Authorization"] = "Bearer " + (token if isinstance(token, str) else self.admin_token())
        data = None
        if body is not None:
            data = json.dumps(body).encode()
        if method in ("POST", "DELETE"):
            headers.setdefault("Content-Type", "application/json")
        req = urllib.request.Request(f"http://127.0.0.1:{self.admin_port}{path}", data=data, method=method,
                                     headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=20) as r:
                status, text = r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            status, text = e.code, e.read().decode()
        try:
            return status, json.loads(text) if text else None
        except ValueError:
            return status, text

    def admin_get(self, path):
        """GET with the token; the parsed JSON (or text), which must come with 200."""
        status, body = self.admin("GET", path)
        if status != 200:
            raise AssertionError(f"GET {path}: {status} {body}")
        return body


class RawClient:
    """A raw IMAP client on loopback: sends exact lines, returns exact bytes (CRLF
    included). port, or a connected (possibly TLS) socket."""

    def __init__(self, port_or_socket):
        if isinstance(port_or_socket, int):
            port_or_socket = socket.create_connection(("127.0.0.1", port_or_socket), timeout=20)
        self.sock = port_or_socket
        self.buffer = b""
        self.greeting = self.read_line()

    def read_line(self):
        while b"\r\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed: " + self.buffer.decode(errors="replace"))
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\r\n", 1)
        return line + b"\r\n"

    def command(self, tag, line):
        """Sends 'tag line' and returns every byte up to and including the tagged answer."""
        self.sock.sendall(f"{tag} {line}\r\n".encode())
        return self.until_tagged(tag)

    def until_tagged(self, tag):
        out = b""
        while True:
            line = self.read_line()
            out += line
            if line.startswith(tag.encode() + b" "):
                return out

    def read_for(self, seconds):
        """Everything the server sends within `seconds`."""
        end = time.monotonic() + seconds
        out = self.buffer
        self.buffer = b""
        while time.monotonic() < end:
            self.sock.settimeout(max(0.05, end - time.monotonic()))
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                break
            if not chunk:
                break
            out += chunk
        self.sock.settimeout(20)
        return out

    def send(self, data):
        self.sock.sendall(data)

    def close(self):
        try:
            self.command("zz", "LOGOUT")
        except (OSError, ConnectionError):
            pass
        self.sock.close()


def maildir_digests(path):
    """(folder, flags, SHA-256) of every message under a maildir tree, sorted. mbsync
    adds an "X-TUID:" header of its own with a random value: it is left out."""
    digests = []
    for f in glob.glob(os.path.join(path, "**", "cur", "*"), recursive=True) + \
            glob.glob(os.path.join(path, "**", "new", "*"), recursive=True):
        with open(f, "rb") as fh:
            lines = [line for line in fh.read().split(b"\n") if not line.startswith(b"X-TUID: ")]
        folder = os.path.relpath(os.path.dirname(os.path.dirname(f)), path)
        flags = f.rsplit(":2,", 1)[1] if ":2," in f else ""
        digests.append((folder, flags, hashlib.sha256(b"\n".join(lines)).hexdigest()))
    return sorted(digests)


def mbsync_pull(port, ssl_type, ca, workdir, patterns, user="bob", password=None):
    """Pulls the folders matching patterns with mbsync (isync) into a maildir under
    workdir; returns maildir_digests of it. mbsync failing is a test failure."""
    local = os.path.join(workdir, "local")
    os.makedirs(local, exist_ok=True)
    config = os.path.join(workdir, "mbsyncrc")
    with open(config, "w") as f:
        f.write(f"""IMAPAccount remote
Host localhost
Port {port}
User {user}
Pass {password or USERS[user]}
SSLType {ssl_type}
CertificateFile {ca}

IMAPStore remote
Account remote

MaildirStore local
Path {local}/
Inbox {local}/INBOX
SubFolders Verbatim

Channel sync
Far :remote:
Near :local:
Patterns {patterns}
Create Near
Sync Pull
SyncState *
""")
    result = subprocess.run(["mbsync", "-c", config, "-a"], capture_output=True, text=True, timeout=300)
    if result.returncode != 0:
        raise AssertionError(f"mbsync exited with {result.returncode}: {result.stdout}{result.stderr}")
    return maildir_digests(local)
