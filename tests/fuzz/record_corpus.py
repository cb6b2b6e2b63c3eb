#!/usr/bin/env python3
"""Records real IMAP sessions as seeds for the fuzz corpus (tests/fuzz/corpus).

    python3 tests/fuzz/record_corpus.py [--out tests/fuzz/corpus]

A private Dovecot on loopback, a recording relay in front of it (plain TCP, every
byte kept per direction), and real clients through the relay: Python's imaplib (a
mail client's day: LIST, SELECT, FETCH of headers and bodies, STORE, SEARCH, APPEND
with synchronising and LITERAL+ literals, IDLE with mail delivered during it, a
failed LOGIN, EXPUNGE, LOGOUT) and isync's mbsync (a full pull). Each connection
becomes one seed in fuzz_session's format: two bytes of decoder limits (0: the
defaults), a byte saying where the client bytes end, the client's bytes, the
server's. The decoder targets read the same files as one stream. Messages are kept
small so that seeds stay a few KB (libFuzzer mutates them by the thousand).
"""
import argparse
import hashlib
import imaplib
import os
import socket
import sys
import threading

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "support"))
from imap_fixtures import temp_dir, USERS, Dovecot, mbsync_pull  # noqa: E402


class RecordingRelay:
    """Plain TCP relay on 127.0.0.1 that keeps what each connection carried."""

    def __init__(self, upstream_port):
        self.upstream_port = upstream_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.sessions = []  # [client bytes, server bytes] per connection
        self.lock = threading.Lock()
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.upstream_port))
            record = [bytearray(), bytearray()]
            with self.lock:
                self.sessions.append(record)
            for src, dst, buf in ((client, server, record[0]), (server, client, record[1])):
                threading.Thread(target=self.pump, args=(src, dst, buf), daemon=True).start()

    @staticmethod
    def pump(src, dst, buf):
        try:
            while chunk := src.recv(65536):
                buf += chunk
                dst.sendall(chunk)
        except OSError:
            pass
        for s in (dst, src):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self):
        self.listener.close()


def small_message(n):
    return (b"From: corpus@example.org\r\nTo: bob@example.org\r\nSubject: seed %d\r\n"
            b"Content-Type: text/plain; charset=utf-8\r\n\r\nHello %d,\r\nsmall body.\r\n" % (n, n))


def mail_client_day(port, deliver_port):
    c = imaplib.IMAP4("127.0.0.1", port, timeout=30)
    c.capability()
    imaplib.Commands["ID"] = ("NONAUTH", "AUTH", "SELECTED")  # imaplib doesn't know RFC 2971
    c._simple_command("ID", '("name" "corpus-recorder" "version" "1")')
    try:
        imaplib.IMAP4("127.0.0.1", port, timeout=30).login("bob", "wrong-password")
    except imaplib.IMAP4.error:
        pass
    c.login("bob", USERS["bob"])
    c.list()
    c.create("Corpus")
    for n in range(3):
        c.append("INBOX", r"(\Seen)", None, small_message(n))
    c.select("INBOX")
    c.fetch("1:*", "(UID FLAGS RFC822.SIZE BODY.PEEK[HEADER.FIELDS (FROM SUBJECT DATE)])")
    c.uid("FETCH", "1", "(BODY.PEEK[])")
    c.fetch("2", "(BODYSTRUCTURE ENVELOPE INTERNALDATE)")
    c.store("1", "+FLAGS", r"(\Flagged)")
    c.search(None, "UNSEEN")
    c.uid("SEARCH", None, 'SUBJECT "seed"')
    c.copy("1", "Corpus")
    c.status("Corpus", "(MESSAGES UIDNEXT UNSEEN)")
    # IDLE, with a message delivered straight to Dovecot meanwhile.
    tag = c._new_tag()
    c.send(tag + b" IDLE\r\n")
    c.readline()
    d = imaplib.IMAP4("127.0.0.1", deliver_port, timeout=30)
    d.login("bob", USERS["bob"])
    d.append("INBOX", None, None, small_message(99))
    d.logout()
    while b"EXISTS" not in c.readline():
        pass
    c.send(b"DONE\r\n")
    while not c.readline().startswith(tag):
        pass
    c.store("3", "+FLAGS", r"(\Deleted)")
    c.expunge()
    c.close()
    c.logout()


def seed(client, server):
    rest = len(client) + len(server)
    cut = round(255 * len(client) / rest) if rest else 0  # fuzz_session cuts at cut * rest / 255
    return bytes([0, 0, cut]) + bytes(client) + bytes(server)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(HERE, "corpus"))
    args = ap.parse_args()
    dovecot = Dovecot().start()
    relay = RecordingRelay(dovecot.port)
    try:
        mail_client_day(relay.port, dovecot.port)
        mbsync_pull(relay.port, "None", dovecot.certs["ca"], temp_dir(prefix="corpus-mbsync-"), "*")
    finally:
        relay.close()
        dovecot.stop()
    written = 0
    for client, server in relay.sessions:
        if not client and not server:
            continue
        data = seed(client, server)
        name = "session-" + hashlib.sha256(data).hexdigest()[:16]
        with open(os.path.join(args.out, name), "wb") as f:
            f.write(data)
        written += 1
        print(f"{name}: {len(client)} client bytes, {len(server)} server bytes")
    print(f"{written} seeds in {args.out}")


if __name__ == "__main__":
    main()
