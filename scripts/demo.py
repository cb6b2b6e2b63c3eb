#!/usr/bin/env python3
"""The embedded demo: a private Dovecot on loopback with demo users and a seeded
mailbox, a self-signed certificate, and imapscope in front of it. Ctrl-C stops
everything that was started here.

With --routing: two Dovecots, and imapscope in routing mode with a map that sends
alice to the first and bob to the second (docs/routing.md)."""
import imaplib
import os
import signal
import socket
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "support"))
from imap_fixtures import USERS, Dovecot, Imapscope, free_port  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


def port_or_free(preferred):
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", preferred))
            return preferred
        except OSError:
            return free_port()


def seed(dovecot):
    c = imaplib.IMAP4("127.0.0.1", dovecot.port)
    c.login("alice", USERS["alice"])
    for i in range(1, 6):
        c.append("INBOX", None, None,
                 (f"From: bob@example.org\r\nTo: alice@example.org\r\nSubject: demo message {i}\r\n\r\n"
                  f"Hello Alice, this is message {i}.\r\n").encode())
    c.create("Archive")
    c.logout()


def main():
    routing = "--routing" in sys.argv[1:]
    dovecot = Dovecot().start()
    seed(dovecot)
    second = Dovecot(certs=dovecot.certs).start() if routing else None
    if routing:
        route_map = os.path.join(dovecot.dir, "routes.map")
        with open(route_map, "w") as f:
            f.write(f"# user   backend\nalice    127.0.0.1:{dovecot.port}\nbob      127.0.0.1:{second.port}\n")
        upstream = ["--route-map", route_map]
    else:
        upstream = ["--upstream", f"127.0.0.1:{dovecot.port}"]
    plain, tls = port_or_free(1143), port_or_free(1993)
    proxy = Imapscope(["--listen", f"127.0.0.1:{plain}", "--listen-tls", f"127.0.0.1:{tls}",
                       "--tls-cert", dovecot.certs["cert"], "--tls-key", dovecot.certs["key"],
                       *upstream,
                       "--rules", os.path.join(ROOT, "rules", "quirks"),
                       "--transcripts", os.path.join(dovecot.dir, "transcripts"),
                       "--admin", f"127.0.0.1:{port_or_free(9143)}"]).start([plain, tls])
    admin = proxy.args[proxy.args.index("--admin") + 1]
    token = proxy.admin_token()  # made owner-only in the state folder at first start
    token_file = os.path.join(proxy.state_dir, "admin-token")
    ca = dovecot.certs["ca"]
    if routing:
        where = (f"in routing mode: alice goes to the Dovecot on 127.0.0.1:{dovecot.port}, bob to the one on\n"
                 f"127.0.0.1:{second.port} (map: {route_map}; kill -HUP {proxy.proc.pid} reloads it;\n"
                 f"backends: curl -H \"Authorization: Bearer $(cat {os.path.join(proxy.state_dir, 'admin-token')})\" "
                 f"http://{proxy.args[proxy.args.index('--admin') + 1]}/api/backends)")
    else:
        where = f"in front of a private Dovecot (127.0.0.1:{dovecot.port})"
    print(f"""
imapscope is running {where}.

  plain + STARTTLS : 127.0.0.1:{plain}   (LOGIN in clear is refused: STARTTLS first)
  implicit TLS     : 127.0.0.1:{tls}      (test CA: {ca})
  users            : alice / {USERS['alice']}   bob / {USERS['bob']}   (alice has 5 messages)
  imapscope log    : {proxy.log_path}
  rules            : rules/quirks (kill -HUP {proxy.proc.pid} reloads them)
  live sessions    : open once http://{admin}/?token={token}
                     (the browser keeps an HttpOnly cookie and goes on at http://{admin}/)
  admin token      : {token_file} (owner-only; scripts send it as a bearer token)
                     curl -H "Authorization: Bearer $(cat {token_file})" http://{admin}/api/sessions
  metrics          : http://{admin}/metrics   (open on loopback, as /healthz and /readyz)
  transcripts      : {dovecot.dir}/transcripts
                     (read them: {os.environ.get("IMAPSCOPE_BIN", "imapscope")} inspect {dovecot.dir}/transcripts/*.jsonl)

Try:
  openssl s_client -quiet -connect 127.0.0.1:{tls} -CAfile {ca}
      a1 LOGIN alice {USERS['alice']}
      a2 SELECT INBOX
      a3 FETCH 1:* (FLAGS BODY[HEADER.FIELDS (SUBJECT)])
      a4 XLIST "" "*"        (answered by the xlist-to-list-special-use rule)
      a5 LOGOUT
  python3 -c "import imaplib,ssl; c=imaplib.IMAP4('127.0.0.1',{plain}); c.starttls(ssl.create_default_context(cafile='{ca}')); c.login('alice','{USERS['alice']}'); print(c.select('INBOX')); c.logout()"

Ctrl-C stops imapscope and Dovecot.
""", flush=True)
    stop = []
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    try:
        while not stop and proxy.proc.poll() is None:
            time.sleep(0.2)
    finally:
        proxy.stop()
        dovecot.stop()
        if second:
            second.stop()
        print("stopped imapscope and Dovecot")


if __name__ == "__main__":
    main()
