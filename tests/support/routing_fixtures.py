"""Routing mode's test fixtures: three Dovecot backends that know every user (only
the route decides where a login lands), imapscope in routing mode (Routing), and the
backends' own logs read for where each login went (Marks). Used by routing_test.py
and routing_http_test.py; every process is stopped by its pid and every folder
removed (imap_fixtures).
"""
import base64
import imaplib
import json
import os
import re
import time
import urllib.request

from imap_fixtures import USERS, Dovecot, Imapscope, RawClient, free_port, make_certs, temp_dir, wait_until

# Every backend knows every user (as a cluster's shared passdb would): only the route
# decides where a login lands. erin's password needs escaping in Auth-Pass;
# carol.archive shares carol's password (the map's user= option logs carol in as it).
EXTRA_USERS = {"carol": "carol-secret", "carol.archive": "carol-secret", "dave": "dave-secret",
               "erin": "erin pass%word", "frank@example.org": "frank-secret", "grace@example.org": "grace-secret"}
ALL_USERS = dict(USERS, **EXTRA_USERS)

# Dovecot logs the ID it was sent (imap_id_log); its own delay after a failed login and
# its own penalty are off, so that the times measured are the proxy's.
DOVECOT_EXTRA = """imap_id_log = *
auth_failure_delay = 0
service anvil {
  unix_listener anvil-auth-penalty {
    mode = 0
  }
}
"""

# Dovecot's master user on every backend (a master passdb): imapscope logs in as it
# for routes that ask for a master login (routing.master_user).
MASTER = ("master", "master-secret")
BACKENDS = []  # A, B and C once start_backends() ran
CERTS = {}     # their certificate's files: "ca", "cert", "key"
# The answer Dovecot gives a wrong password: the client must get exactly this line.
DOVECOT_NO = b"NO [AUTHENTICATIONFAILED] Authentication failed.\r\n"
PRELOGIN_CAPABILITY_OK = b"OK Pre-login capabilities listed, post-login capabilities have more.\r\n"
# docs/routing.md: what a client hears when no backend takes its login.
NO_LOGIN_SERVICE = b"NO [UNAVAILABLE] The login service is not available.\r\n"
NO_MAIL_SERVER = b"NO [UNAVAILABLE] The mail server is not available.\r\n"


def start_backends(count=3):
    """count Dovecots sharing one certificate; BACKENDS, filled."""
    shared = temp_dir(prefix="imapscope-routing-shared-")
    CERTS.update(make_certs(shared))
    CERTS["master_users"] = os.path.join(shared, "master-users")
    with open(CERTS["master_users"], "w") as f:
        f.write(f"{MASTER[0]}:{{PLAIN}}{MASTER[1]}\n")
    os.chmod(shared, 0o755)  # Dovecot's auth reads it as the mail user, as it does its users file
    try:
        for _ in range(count):
            BACKENDS.append(new_backend())
    except BaseException:
        stop_backends()
        raise
    return BACKENDS


def new_backend():
    """One more Dovecot like the others (started; the caller stops it)."""
    master = f"""auth_master_user_separator = *
passdb {{
  driver = passwd-file
  master = yes
  args = scheme=PLAIN {CERTS["master_users"]}
}}
"""
    return Dovecot(certs=CERTS, extra_config=DOVECOT_EXTRA + master, users=EXTRA_USERS).start()


def stop_backends():
    for backend in BACKENDS:
        backend.stop()


def name(backend):
    """A backend's identity in the API and the metrics: host:port."""
    return f"127.0.0.1:{backend.port}"


def b64(data):
    return base64.b64encode(data.encode() if isinstance(data, str) else data).decode()


LOGIN_LINE = re.compile(r"imap-login: Info: Login: user=<([^>]*)>.*session=<([^>]*)>")


class Marks:
    """Where each backend's log ended when made: what came after is this test's."""

    def __init__(self):
        self.offsets = {id(b): len(b.log()) for b in BACKENDS}

    def new_log(self, backend):
        return backend.log()[self.offsets[id(backend)]:]

    def logins(self, backend):
        """The users logged in on backend since the mark, in order."""
        return [m.group(1) for m in LOGIN_LINE.finditer(self.new_log(backend))]

    def where(self, user):
        """The backends (A, B, C by letter) user logged in on since the mark."""
        return {letter for letter, b in zip("ABC", BACKENDS) if user in self.logins(b)}

    def assert_landed(self, test, user, backend, count=None):
        """user's login(s) reached backend, and no other backend heard of user."""
        letter = "ABC"[BACKENDS.index(backend)]
        wait_until(f"{user}'s login in backend {letter}'s log", lambda: user in self.logins(backend), timeout=10)
        test.assertEqual(self.where(user), {letter},
                         f"{user} should be on {letter} only; the logs since the mark:\n" +
                         "\n".join(f"--- {l}\n{self.new_log(b)}" for l, b in zip("ABC", BACKENDS)))
        if count is not None:
            test.assertEqual(self.logins(backend).count(user), count)


def map_text(entries):
    """A map file from (pattern, backend or "-", options...) tuples; a backend is a
    Dovecot (its plain port), a port number or a string."""
    lines = ["# written by routing_test.py"]
    for pattern, target, *options in entries:
        if isinstance(target, Dovecot):
            target = name(target)
        elif isinstance(target, int):
            target = f"127.0.0.1:{target}"
        lines.append(" ".join([pattern, target] + list(options)))
    return "\n".join(lines) + "\n"


class Routing:
    """imapscope in routing mode: a plain listener (and with tls=True a STARTTLS and an
    implicit-TLS one; with balanced=True one taking PROXY headers from loopback)
    routing by a map (entries, see map_text) and/or an auth_http service (its URL).
    routing: more keys of the "routing" object; config: more top-level keys; master:
    the backends' master user configured. The login penalty is off unless config
    turns it on."""

    def __init__(self, test, entries=None, http=None, routing=None, config=None, tls=False, wait_up=True,
                 master=False, balanced=False):
        self.test = test
        self.dir = temp_dir(prefix="imapscope-routing-")
        os.chmod(self.dir, 0o755)
        self.port = free_port()
        self.starttls_port = free_port() if tls else None
        self.tls_port = free_port() if tls else None
        self.balanced_port = free_port() if balanced else None
        self.transcripts = os.path.join(self.dir, "transcripts")
        self.map_path = os.path.join(self.dir, "routes.map")
        settings = {"http_timeout_ms": 1000, "cache_hit_s": 0, "cache_miss_s": 0,
                    "health": {"interval_ms": 500, "timeout_ms": 1000, "fall": 1, "rise": 1}}
        if entries is not None:
            self.write_map(entries)
            settings["map"] = self.map_path
        if http:
            settings["http"] = http
        if master:  # the backends' master user, its password in an owner-only file
            secret = os.path.join(self.dir, "master-password")
            fd = os.open(secret, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(MASTER[1] + "\n")
            settings.update(master_user=MASTER[0], master_password_file=secret)
        settings.update(routing or {})
        listeners = [{"name": "plain", "listen": f"127.0.0.1:{self.port}"}]
        if tls:
            listeners += [{"name": "starttls", "listen": f"127.0.0.1:{self.starttls_port}", "tls": "starttls",
                           "cert": CERTS["cert"], "key": CERTS["key"]},
                          {"name": "imaps", "listen": f"127.0.0.1:{self.tls_port}", "tls": "implicit",
                           "cert": CERTS["cert"], "key": CERTS["key"]}]
        if balanced:
            listeners.append({"name": "balanced", "listen": f"127.0.0.1:{self.balanced_port}",
                              "proxy_protocol": {"trusted": ["127.0.0.0/8"]}})
        settings_all = {"user_names": "clear", "login_penalty": {"enabled": False},
                        "transcripts": {"dir": self.transcripts},
                        "timeouts": {"server_response_ms": 10000},
                        "routing": settings, "listeners": listeners}
        settings_all.update(config or {})
        self.config_path = os.path.join(self.dir, "imapscope.json")
        with open(self.config_path, "w") as f:
            json.dump(settings_all, f, indent=1)
        self.proc = Imapscope(["--config", self.config_path, "--threads", "2"], log_dir=self.dir)
        self.clients = []
        test.addCleanup(self.stop)
        # (a PROXY-header listener refuses the start-up's probe: not waited for)
        self.proc.start([p for p in (self.port, self.starttls_port, self.tls_port) if p])
        if balanced:
            wait_until("the balanced listener", lambda: "listener=balanced" in self.log())
        if wait_up:
            self.wait_backends_up()

    def write_map(self, entries):
        text = entries if isinstance(entries, str) else map_text(entries)
        with open(self.map_path + ".new", "w") as f:
            f.write(text)
        os.replace(self.map_path + ".new", self.map_path)  # a reload never reads half a file

    def stop(self):
        for c in self.clients:
            try:
                c.sock.close()
            except OSError:
                pass
        self.proc.stop()

    def log(self):
        return self.proc.log()

    def metric(self, name, labels=""):
        """The sum of the series of name that carry every label of labels ('a="x",b="y"',
        in any order: the exposition's order is not the test's business)."""
        wanted = re.findall(r'\w+="[^"]*"', labels)
        total = 0.0
        for line in self.metrics_text().splitlines():
            series, _, value = line.rpartition(" ")
            if series == name or series.startswith(name + "{"):
                if all(w in re.findall(r'\w+="[^"]*"', series) for w in wanted):
                    total += float(value)
        return total

    def metrics_text(self):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.proc.admin_port}/metrics", timeout=10) as r:
            return r.read().decode()

    def backends(self):
        """GET /api/backends: name -> its entry."""
        return {b["name"]: b for b in self.proc.admin_get("/api/backends")["backends"]}

    def wait_backends_up(self, timeout=15):
        """Every backend the API lists that is one of our running Dovecots is up (the
        health checks have seen its greeting: the pre-login capabilities are known)."""
        running = {name(b) for b in BACKENDS}
        status, _ = self.proc.admin("GET", "/api/backends")
        if status != 200:
            return  # no backends API: Operations says so; the other tests go on

        def all_up():  # (none listed: no backend is known before a lookup names one)
            listed = self.backends()
            return all(b["state"] == "up" for n, b in listed.items() if n in running)
        wait_until("the backends up in /api/backends", all_up, timeout=timeout, interval=0.1)

    def raw(self, port=None):
        client = RawClient(port or self.port)
        self.clients.append(client)
        return client

    def imap(self):
        client = imaplib.IMAP4("127.0.0.1", self.port, timeout=20)
        self.test.addCleanup(lambda: client.shutdown() if client.state != "LOGOUT" else None)
        return client


def timed(function, *args):
    start = time.monotonic()
    value = function(*args)
    return time.monotonic() - start, value


def last_line(answer):
    return answer.splitlines(keepends=True)[-1]


def login_answer(proxy, user, password=None, tag="l1"):
    """A raw client's LOGIN through proxy: (client, every byte of the answer)."""
    client = proxy.raw()
    answer = client.command(tag, f'LOGIN "{user}" "{password or ALL_USERS[user]}"')
    return client, answer


def unavailable(test, answer, tag, why):
    """answer ends with tag's NO [UNAVAILABLE] (why: NO_LOGIN_SERVICE or NO_MAIL_SERVER)."""
    test.assertEqual(last_line(answer), tag.encode() + b" " + why, answer)


def closed(test, client, timeout=5):
    """The proxy closes client's connection (after what it sent last) within timeout."""
    client.sock.settimeout(timeout)
    try:
        rest = client.buffer + client.sock.recv(4096)
    except OSError as e:
        test.fail(f"not closed within {timeout}s: {e!r}")
    test.assertEqual(rest, b"", "the connection should end after the refusal")
