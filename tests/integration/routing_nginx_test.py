"""imapscope's auth_http requests compared with nginx's own, for the same logins.

Debian's nginx with its mail module (libnginx-mod-mail) and imapscope in routing
mode ask the same recording auth_http service (tests/support/auth_http_service.py),
which sends both to the same Dovecot. Each scenario (LOGIN, AUTHENTICATE PLAIN with
and without SASL-IR, AUTHENTICATE LOGIN, a password that needs escaping, a second
attempt after a refusal, a TLS client leg, a client behind a PROXY header) is played
against nginx, then against imapscope; the requests must carry the same headers,
names and values. A site moving from nginx keeps its auth service only if they do.

What may differ, and why:
- Host: nginx sends the auth_http address's host without its port; a port there (as
  HTTP/1.1 asks for a non-default port) names the same service. Compared without it.
- The order of the headers: not significant in HTTP; shown, not asserted.
- Auth-SSL-Protocol / Auth-SSL-Cipher: the TLS version and cipher the client agreed
  with each server (nginx 1.22's defaults stop at TLS 1.2): the names are compared,
  the values only for their shape.

Every difference is printed as a table (scenario, header, nginx's value, imapscope's).
"""
import base64
import json
import os
import socket
import ssl
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "support"))
from imap_fixtures import USERS, Dovecot, Imapscope, RawClient, free_port, make_certs, temp_dir  # noqa: E402
from auth_http_service import INVALID_LOGIN, AuthHttpService, error, ok  # noqa: E402
import nginx_mail  # noqa: E402

PASSWORDS = dict(USERS, erin="erin pass%word\u00e9")
DOVECOT = SERVICE = NGINX = PROXY = CERTS = None
PROXY_PORTS = {}


def setUpModule():
    global DOVECOT, SERVICE, NGINX, PROXY, CERTS
    if nginx_mail.missing():
        return
    CERTS = make_certs(temp_dir(prefix="imapscope-nginx-certs-"))
    try:
        DOVECOT = Dovecot(certs=CERTS, users=PASSWORDS, extra_config="auth_failure_delay = 0\n").start()
        SERVICE = AuthHttpService(passwords=PASSWORDS).start()
        # nginx closes the connection after a refusal without Auth-Wait: with one, the
        # session goes on to a second attempt in both.
        SERVICE.invalid = error(INVALID_LOGIN, wait=1)
        for user in PASSWORDS:
            SERVICE.route(user, ok("127.0.0.1", DOVECOT.port))
        NGINX = nginx_mail.NginxMail(SERVICE.url, certs=CERTS, proxy_from="127.0.0.0/8").start()
        work = temp_dir(prefix="imapscope-nginx-compare-")
        PROXY_PORTS.update(plain=free_port(), tls=free_port(), proxy=free_port())
        config = {"login_penalty": {"enabled": False},
                  "routing": {"http": SERVICE.url, "cache_hit_s": 0, "cache_miss_s": 0},
                  "listeners": [
                      {"name": "plain", "listen": f"127.0.0.1:{PROXY_PORTS['plain']}"},
                      {"name": "imaps", "listen": f"127.0.0.1:{PROXY_PORTS['tls']}", "tls": "implicit",
                       "cert": CERTS["cert"], "key": CERTS["key"]},
                      {"name": "balanced", "listen": f"127.0.0.1:{PROXY_PORTS['proxy']}",
                       "proxy_protocol": {"trusted": ["127.0.0.0/8"]}}]}
        path = os.path.join(work, "imapscope.json")
        with open(path, "w") as f:
            json.dump(config, f)
        PROXY = Imapscope(["--config", path], log_dir=work).start(list(PROXY_PORTS.values()))
    except BaseException:
        tearDownModule()
        raise


def tearDownModule():
    for stop in (PROXY and PROXY.stop, NGINX and NGINX.stop, SERVICE and SERVICE.stop, DOVECOT and DOVECOT.stop):
        if stop:
            stop()


def b64(text):
    return base64.b64encode(text.encode()).decode()


def outcome(answer):
    """OK, NO or BAD: the status of an answer's tagged line."""
    return answer.splitlines()[-1].split(b" ")[1].decode()


# Scenarios: each gets (kind, connect) where connect() opens a RawClient to the
# server under test, and returns what the client saw (for the sanity checks).

def login(connect):
    c = connect()
    answer = c.command("a1", f"LOGIN alice {USERS['alice']}")
    c.close()
    return [answer]


def login_escaped(connect):
    c = connect()
    answer = c.command("a1", f'LOGIN erin "{PASSWORDS["erin"]}"')  # sent as UTF-8
    c.close()
    return [answer]


def plain_sasl_ir(connect):
    c = connect()
    answer = c.command("a1", "AUTHENTICATE PLAIN " + b64(f"\0bob\0{USERS['bob']}"))
    c.close()
    return [answer]


def plain_no_ir(connect):
    c = connect()
    c.send(b"a1 AUTHENTICATE PLAIN\r\n")
    c.read_line()
    c.send(b64(f"\0alice\0{USERS['alice']}").encode() + b"\r\n")
    answer = c.until_tagged("a1")
    c.close()
    return [answer]


def auth_login(connect):
    c = connect()
    c.send(b"a1 AUTHENTICATE LOGIN\r\n")
    c.read_line()
    c.send(b64("bob").encode() + b"\r\n")
    c.read_line()
    c.send(b64(USERS["bob"]).encode() + b"\r\n")
    answer = c.until_tagged("a1")
    c.close()
    return [answer]


def second_attempt(connect):
    c = connect()
    first = c.command("a1", "LOGIN alice not-the-password")
    second = c.command("a2", f"LOGIN alice {USERS['alice']}")
    c.close()
    return [first, second]


SCENARIOS = [("LOGIN", login), ("LOGIN, password to escape", login_escaped),
             ("AUTHENTICATE PLAIN, SASL-IR", plain_sasl_ir), ("AUTHENTICATE PLAIN", plain_no_ir),
             ("AUTHENTICATE LOGIN", auth_login), ("second attempt", second_attempt)]


def plain_to(port):
    return lambda: RawClient(port)


def tls_to(port):
    context = ssl.create_default_context(cafile=CERTS["ca"])
    return lambda: RawClient(context.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=20),
                                                 server_hostname="localhost"))


def behind_balancer(port):
    def connect():
        s = socket.create_connection(("127.0.0.1", port), timeout=20)
        s.sendall(b"PROXY TCP4 192.0.2.7 127.0.0.1 40000 143\r\n")
        return RawClient(s)
    return connect


def compared(headers):
    """The headers as compared: (name in lower case, value), sorted; Host without its port."""
    out = []
    for name, value in headers:
        key = name.lower()
        if key == "host":
            value = value.rsplit(":", 1)[0] if value.count(":") == 1 else value
        if key in ("auth-ssl-protocol", "auth-ssl-cipher"):
            value = "<" + ("TLS version" if value.startswith("TLSv") else "a cipher name" if value else "empty") + ">"
        out.append((key, value))
    return sorted(out)


def table(rows):
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(r, widths)) for r in rows)


@unittest.skipIf(nginx_mail.missing(), nginx_mail.missing())
class SameRequests(unittest.TestCase):
    """One test per client leg; each plays every scenario through both."""

    def play(self, connect_nginx, connect_proxy, scenarios=SCENARIOS):
        differences = [("scenario", "request", "header", "nginx", "imapscope")]
        orders = []
        for title, scenario in scenarios:
            SERVICE.clear()
            seen_nginx = scenario(connect_nginx)
            by_nginx = SERVICE.requests
            SERVICE.clear()
            seen_proxy = scenario(connect_proxy)
            by_proxy = SERVICE.requests
            # Both logged in (or were refused) alike: the comparison is of like with like.
            self.assertEqual([outcome(a) for a in seen_nginx], [outcome(a) for a in seen_proxy],
                             f"{title}: nginx saw {seen_nginx!r}, imapscope {seen_proxy!r}")
            if len(by_nginx) != len(by_proxy):
                differences.append((title, "count", "", len(by_nginx), len(by_proxy)))
            for i, (n, p) in enumerate(zip(by_nginx, by_proxy)):
                line_n, line_p = f"{n.method} {n.path} {n.version}", f"{p.method} {p.path} {p.version}"
                if line_n != line_p:
                    differences.append((title, i + 1, "(request line)", line_n, line_p))
                cn, cp = dict(compared(n.headers)), dict(compared(p.headers))
                for key in sorted(set(cn) | set(cp)):
                    if cn.get(key) != cp.get(key):
                        shown = ("<secret>" if key == "auth-pass" and v is not None else v
                                 for v in (cn.get(key), cp.get(key)))
                        differences.append((title, i + 1, key, *shown))
                order_n = [h for h, _ in n.headers]
                order_p = [h for h, _ in p.headers]
                if order_n != order_p:
                    orders.append(f"{title}: nginx {order_n}\n{' ' * len(title)}  imapscope {order_p}")
        if orders:
            print("\nheader order (not asserted):\n" + "\n".join(orders), file=sys.stderr)
        if len(differences) > 1:
            report = table(differences)
            print("\nauth_http requests, nginx vs imapscope:\n" + report, file=sys.stderr)
            self.fail("imapscope's auth_http requests differ from nginx's:\n" + report)

    def test_plain_client_leg(self):
        self.play(plain_to(NGINX.port), plain_to(PROXY_PORTS["plain"]))

    def test_tls_client_leg(self):
        self.play(tls_to(NGINX.tls_port), tls_to(PROXY_PORTS["tls"]), SCENARIOS[:1])

    def test_behind_a_proxy_header(self):
        self.play(behind_balancer(NGINX.proxy_port), behind_balancer(PROXY_PORTS["proxy"]), SCENARIOS[:1])

    def test_refusal_texts_alike(self):
        """The service's refusal reaches the client the same way through both."""
        answers = []
        for port in (NGINX.port, PROXY_PORTS["plain"]):
            c = RawClient(port)
            answers.append(c.command("r1", "LOGIN alice wrong-password"))
            c.close()
        self.assertEqual(answers[0], f"r1 NO {INVALID_LOGIN}\r\n".encode())
        self.assertEqual(answers[1], answers[0])


if __name__ == "__main__":
    unittest.main()
