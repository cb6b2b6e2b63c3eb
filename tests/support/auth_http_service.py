"""An nginx auth_http service for the routing tests: Python's http.server on
127.0.0.1 (a free port) in a thread of the test, started and stopped by it.

It does what a site's auth service does for nginx's mail proxy: checks the user's
password (Auth-Pass, URL-escaped by the client as nginx does) against a table, and
answers per user from a table the test sets: OK with Auth-Server/Auth-Port (and
Auth-User/Auth-Pass to log in as someone else), an error text with or without
Auth-Wait, WAIT (ask again after Auth-Wait seconds), or a JSON body with Dovecot's
passdb field names (host, port, ssl, starttls, destuser, pass, proxy_timeout).

It records every request (request line and headers, in the order and spelling they
came) so that the tests can count lookups and compare what imapscope sends with what
nginx sends. It can be made slow (it sleeps before answering, interruptibly, so stop()
is quick), made to answer garbage, or stopped (then nothing listens on its port:
"down").

    service = AuthHttpService(passwords=USERS).start()
    service.route("alice", ok("127.0.0.1", dovecot_a.port))
    service.route("bob", error("Mailbox moved", wait=1))
    ... service.url ... service.requests_for("alice") ...
    service.stop()

Credentials appear in the recorded requests (the tests need them) and nowhere else:
nothing here logs.
"""
import json
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# What the service answers when the password is wrong, as nginx's documented example
# service does (without its Auth-Wait: 3, so that tests don't wait for it).
INVALID_LOGIN = "Invalid login or password"


class Answer:
    """One answer: the headers (in order) and an optional body of a 200 response."""

    def __init__(self, headers, body=b"", content_type=None):
        self.headers = list(headers)
        self.body = body
        self.content_type = content_type

    def __repr__(self):
        return f"Answer({self.headers!r}, {self.body!r})"


def ok(server, port, user=None, password=None, extra=()):
    """Auth-Status: OK and where to go; user/password: log in there as this user with this secret."""
    headers = [("Auth-Status", "OK"), ("Auth-Server", server), ("Auth-Port", str(port))]
    if user is not None:
        headers.append(("Auth-User", user))
    if password is not None:
        headers.append(("Auth-Pass", password))
    return Answer(headers + list(extra))


def error(text, wait=None):
    """A refusal: text is the client's NO; wait: Auth-Wait seconds before it is sent."""
    headers = [("Auth-Status", text)]
    if wait is not None:
        headers.append(("Auth-Wait", str(wait)))
    return Answer(headers)


def wait(seconds):
    """Auth-Status: WAIT: ask again after seconds (nginx re-sends the request)."""
    return Answer([("Auth-Status", "WAIT"), ("Auth-Wait", str(seconds))])


def dovecot_json(**fields):
    """A JSON body with Dovecot's passdb field names, e.g. host=..., port=..., destuser=..."""
    return Answer([], json.dumps(fields).encode(), "application/json")


class Garbage:
    """What a broken service sends instead of an HTTP answer (raw bytes), then it closes."""

    def __init__(self, raw):
        self.raw = raw


# Ways a service answers nonsense; each must give the client NO [UNAVAILABLE].
GARBAGE = {
    "not_http": Garbage(b"\x00\xff\xfe this is not HTTP at all\r\n\r\n"),
    "status_500": Garbage(b"HTTP/1.0 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n"),
    # (Auth-Server and Auth-Port without Auth-Status is no garbage: nginx takes it as OK.)
    "empty_200": Garbage(b"HTTP/1.0 200 OK\r\n\r\n"),
    "ok_without_server": Garbage(b"HTTP/1.0 200 OK\r\nAuth-Status: OK\r\n\r\n"),
    # nginx takes Auth-Server as an IP address only (it resolves nothing there).
    "server_not_an_address": Garbage(b"HTTP/1.0 200 OK\r\nAuth-Status: OK\r\nAuth-Server: mail.example.org\r\n"
                                     b"Auth-Port: 143\r\n\r\n"),
    "bad_port": Garbage(b"HTTP/1.0 200 OK\r\nAuth-Status: OK\r\nAuth-Server: 127.0.0.1\r\n"
                        b"Auth-Port: 99999999\r\n\r\n"),
    "truncated": Garbage(b"HTTP/1.0 200 OK\r\nAuth-Sta"),
}


class Request:
    """One request as it came: method, path, HTTP version, headers (name, value) in order."""

    def __init__(self, method, path, version, headers):
        self.method, self.path, self.version = method, path, version
        self.headers = headers
        self.at = time.monotonic()  # when it came (time.monotonic())

    def header(self, name):
        """The first value of a header (names case-insensitive), None if absent."""
        for n, v in self.headers:
            if n.lower() == name.lower():
                return v
        return None

    def unescaped(self, name):
        """A header's value URL-unescaped, as UTF-8 (nginx escapes space, % and control
        characters and sends other bytes as they came; http.server hands them over as
        Latin-1)."""
        value = self.header(name)
        if value is None:
            return None
        return urllib.parse.unquote_to_bytes(value.encode("latin-1")).decode("utf-8", "replace")

    @property
    def user(self):
        return self.unescaped("Auth-User")

    @property
    def password(self):
        return self.unescaped("Auth-Pass")

    def __repr__(self):
        shown = [(n, "<secret>" if n.lower() == "auth-pass" else v) for n, v in self.headers]
        return f"Request({self.method} {self.path} {self.version} {shown!r})"


class AuthHttpService:
    """The service. passwords: user -> password it checks (None: accepts any password);
    the answers: route(user, answer or [answers...]) (a list is used in turn, the
    last one repeats), default for users without one."""

    def __init__(self, passwords=None, default=None, path="/auth"):
        self.passwords = dict(passwords) if passwords is not None else None
        self.default = default or error("No such user")
        self.invalid = error(INVALID_LOGIN)  # the answer to a wrong password (nginx closes after
                                             # it unless it has an Auth-Wait)
        self.path = path
        self._answers = {}
        self._lock = threading.Lock()
        self._requests = []
        self._wake = threading.Event()  # set on stop: a slow answer gives up its sleep
        self.delay = 0.0                # seconds every answer is held back ("slow")
        self.garbage = None             # a Garbage every request gets instead of an answer
        self.server = None
        self.thread = None
        self.port = None

    # -------------------------------------------------------------- life cycle

    def start(self, port=0):
        """Listens on 127.0.0.1:port (0: a free one; a given port to come back up where it was)."""
        self._wake.clear()
        self.server = ThreadingHTTPServer(("127.0.0.1", port), self._handler_class())
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       name=f"auth-http-{self.port}", daemon=True)
        self.thread.start()
        return self

    def stop(self):
        """Stops listening (the port then refuses connections); idempotent."""
        if self.server is None:
            return
        self._wake.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)
        self.server = None

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}{self.path}"

    # -------------------------------------------------------------- the table

    def route(self, user, answers):
        with self._lock:
            self._answers[user] = list(answers) if isinstance(answers, list) else [answers]

    def slow(self, seconds):
        """Every answer is held back this long (0: answers at once again)."""
        self.delay = seconds

    def answer_garbage(self, garbage):
        """Every request gets garbage (a Garbage, or a key of GARBAGE); None: answers again."""
        self.garbage = GARBAGE[garbage] if isinstance(garbage, str) else garbage

    # -------------------------------------------------------------- what came

    @property
    def requests(self):
        with self._lock:
            return list(self._requests)

    def requests_for(self, user):
        return [r for r in self.requests if r.user == user]

    def clear(self):
        with self._lock:
            self._requests.clear()

    # -------------------------------------------------------------- answering

    def _answer_for(self, request):
        """The answer to one request: the password checked first, as a real service does."""
        user, password = request.user, request.password
        if user is None or password is None:
            return error("Auth-User and Auth-Pass are required")
        if self.passwords is not None and self.passwords.get(user) != password:
            return self.invalid
        with self._lock:
            answers = self._answers.get(user)
            if not answers:
                return self.default
            return answers.pop(0) if len(answers) > 1 else answers[0]

    def _handler_class(self):
        service = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"  # one request per connection, as nginx asks

            def do_GET(self):
                request = Request(self.command, self.path, self.request_version, list(self.headers.items()))
                with service._lock:
                    service._requests.append(request)
                if service.delay and service._wake.wait(service.delay):
                    return  # stopped while sleeping: the connection just closes
                if service.garbage is not None:
                    self.wfile.write(service.garbage.raw)
                    self.close_connection = True
                    return
                if self.path.split("?")[0] != service.path:
                    self.send_error(404)
                    return
                answer = service._answer_for(request)
                self.send_response(200)
                for name, value in answer.headers:
                    self.send_header(name, value)
                if answer.content_type:
                    self.send_header("Content-Type", answer.content_type)
                self.send_header("Content-Length", str(len(answer.body)))
                self.end_headers()
                self.wfile.write(answer.body)

            def log_message(self, *args):  # quiet: the test's output stays readable
                pass

        return Handler
