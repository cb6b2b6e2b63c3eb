"""Transcripts end to end: imapscope with transcripts on, in front of a real Dovecot,
with real logins of every kind. No secret reaches the transcripts, the log or the
metrics (the whole output is searched); selection by user and by client family;
`imapscope inspect` reads the result back. Everything on 127.0.0.1."""
import base64
import glob
import imaplib
import json
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import time
import unittest
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "support"))
from imap_fixtures import temp_dir, USERS, Dovecot, Imapscope, RawClient, free_port, imapscope_binary  # noqa: E402

DOVECOT = None


def setUpModule():
    global DOVECOT
    DOVECOT = Dovecot().start()


def tearDownModule():
    DOVECOT.stop()


def b64(text):
    return base64.b64encode(text.encode()).decode()


class Proxy:
    def __init__(self, test, extra_config=None, prepare=None):
        """prepare(folder): called on the transcripts folder before imapscope starts."""
        self.dir = temp_dir(prefix="imapscope-transcripts-")
        test.addCleanup(shutil.rmtree, self.dir, True)
        self.out = os.path.join(self.dir, "transcripts")
        self.port = free_port()
        extra = dict(extra_config or {})
        config = {"listeners": [{"listen": f"127.0.0.1:{self.port}",
                                 "upstream": {"addresses": [f"127.0.0.1:{DOVECOT.port}"]}}]}
        if "user_names" in extra:  # the policy of the whole admin side, not only transcripts
            config["user_names"] = extra.pop("user_names")
        config["transcripts"] = dict({"dir": self.out}, **extra)
        path = os.path.join(self.dir, "config.json")
        with open(path, "w") as f:
            json.dump(config, f)
        if prepare:
            os.makedirs(self.out)
            prepare(self.out)
        self.proxy = Imapscope(["--config", path]).start([self.port])
        test.addCleanup(self.proxy.stop)

    def stop(self):
        self.proxy.stop()

    def files(self):
        return sorted(glob.glob(os.path.join(self.out, "*.jsonl")))

    def events(self):
        out = []
        for path in self.files():
            with open(path) as f:
                out += [json.loads(line) for line in f]
        return out


class Redaction(unittest.TestCase):
    def test_no_secret_anywhere(self):
        proxy = Proxy(self, {"user_names": "hashed", "body_cap_kb": 4})
        alice, bob = USERS["alice"], USERS["bob"]
        secrets = [alice, bob]
        # LOGIN with quoted strings (imaplib), then with synchronising literals.
        c = imaplib.IMAP4("127.0.0.1", proxy.port)
        c.login("alice", alice)
        c.select("INBOX")
        marker = "Body-Marker-%d" % os.getpid()
        c.append("INBOX", None, None, f"Subject: t\r\n\r\n{marker}\r\n".encode())
        c.logout()
        r = RawClient(proxy.port)
        r.send(b"a1 LOGIN {5}\r\n")
        self.assertTrue(r.read_line().startswith(b"+"))
        r.send(b"alice {%d}\r\n" % len(alice))
        self.assertTrue(r.read_line().startswith(b"+"))
        r.send(alice.encode() + b"\r\n")
        self.assertIn(b"a1 OK", r.until_tagged("a1"))
        r.close()
        # AUTHENTICATE PLAIN without SASL-IR (imaplib), with it, LOGIN mechanism, XOAUTH2.
        c = imaplib.IMAP4("127.0.0.1", proxy.port)
        c.authenticate("PLAIN", lambda _: f"\0bob\0{bob}".encode())
        c.logout()
        plain_ir = b64(f"\0alice\0{alice}")
        secrets.append(plain_ir)
        r = RawClient(proxy.port)
        r.send(f"a1 AUTHENTICATE PLAIN {plain_ir}\r\n".encode())
        self.assertIn(b"a1 OK", r.until_tagged("a1"))
        r.close()
        r = RawClient(proxy.port)
        r.send(b"a1 AUTHENTICATE LOGIN\r\n")
        self.assertTrue(r.read_line().startswith(b"+"))
        r.send(b64("bob").encode() + b"\r\n")
        self.assertTrue(r.read_line().startswith(b"+"))
        login_password = b64(bob)
        secrets.append(login_password)
        r.send(login_password.encode() + b"\r\n")
        self.assertIn(b"a1 OK", r.until_tagged("a1"))
        r.close()
        token = "ya29.Secret-Oauth-Token-For-Alice"
        xoauth = b64(f"user=alice\x01auth=Bearer {token}\x01\x01")
        secrets += [token, xoauth]
        r = RawClient(proxy.port)
        r.send(f"a1 AUTHENTICATE XOAUTH2 {xoauth}\r\n".encode())
        answer = r.until_tagged("a1")  # Dovecot here has no OAuth2: NO or BAD, the token went through all the same
        self.assertNotIn(b"a1 OK", answer)
        r.close()
        admin = f"http://127.0.0.1:{proxy.proxy.admin_port}"
        metrics = urllib.request.urlopen(admin + "/metrics").read().decode()
        # The live view holds the same events: as clean as the files.
        live = proxy.proxy.admin_get("/api/sessions")
        self.assertGreaterEqual(len(live["recent"]), 6)
        for session in live["recent"]:
            metrics += json.dumps(proxy.proxy.admin_get(f"/api/sessions/{session['id']}/events"))
        proxy.stop()

        everything = metrics + proxy.proxy.log()
        for path in proxy.files():
            with open(path) as f:
                everything += f.read()
        self.assertTrue(proxy.files())
        for secret in secrets:
            self.assertNotIn(secret, everything)
        # Hashed user names: the same user always the same label, never the name itself.
        users = {e["user"] for e in proxy.events() if e.get("event") == "user"}
        self.assertEqual(len(users), 2, users)
        self.assertTrue(all(re.fullmatch(r"u:[0-9a-f]{16}", u) for u in users), users)
        logins = [e["text"] for e in proxy.events() if e.get("command") in ("LOGIN", "AUTHENTICATE")]
        self.assertGreaterEqual(len(logins), 6)
        for text in logins:
            self.assertRegex(text, r"^\S+ (LOGIN u:[0-9a-f]{16} \*\*\*|AUTHENTICATE [A-Z0-9-]+( \*\*\*)?)$")
        sasl = [e["text"] for e in proxy.events() if e.get("kind") == "sasl"]
        self.assertEqual(len(sasl), 3)  # imaplib's PLAIN answer, LOGIN's user and password
        self.assertTrue(all(text.startswith("*** (SASL response") for text in sasl), sasl)

        # The reader.
        out = subprocess.run([imapscope_binary(), "inspect", "--json", *proxy.files()], capture_output=True,
                             text=True, timeout=60)
        self.assertEqual(out.returncode, 0, out.stderr)
        summaries = json.loads(out.stdout)
        with_select = [s for s in summaries if "SELECT" in s.get("commands", {})]
        self.assertEqual(len(with_select), 1)
        self.assertEqual(with_select[0]["client"]["family"], "python_imaplib")
        self.assertIn("SELECT", with_select[0]["latency"])
        self.assertEqual([e["command"] for e in summaries[-1]["errors"]], ["AUTHENTICATE"])
        text = subprocess.run([imapscope_binary(), "inspect", "--command", "select", *proxy.files()],
                              capture_output=True, text=True, timeout=60).stdout
        self.assertRegex(text, r"C: \S+ SELECT INBOX")
        self.assertRegex(text, r"S: \S+ OK \[READ-WRITE\].*\[[0-9.]+ ms\]")
        self.assertNotRegex(text, r"C: \S+ LOGIN")  # only SELECT and its answers in the conversation

        # Wireshark's dissector reads the export as IMAP; no secret in anything it shows.
        pcap = os.path.join(proxy.dir, "sessions.pcapng")
        out = subprocess.run([imapscope_binary(), "inspect", "--pcap", pcap, *proxy.files()], capture_output=True,
                             text=True, timeout=60)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertEqual(os.stat(pcap).st_mode & 0o777, 0o600)  # it holds what the transcripts hold
        fields = subprocess.run(["tshark", "-r", pcap, "-Y", "imap", "-T", "fields", "-e", "imap.request.command",
                                 "-e", "imap.response.status"], capture_output=True, text=True, timeout=120)
        self.assertEqual(fields.returncode, 0, fields.stderr)
        commands = {line.split("\t")[0] for line in fields.stdout.splitlines()} - {""}
        self.assertTrue({"LOGIN", "AUTHENTICATE", "SELECT", "LOGOUT"} <= commands, commands)
        self.assertIn("OK", fields.stdout)
        expert = subprocess.run(["tshark", "-r", pcap, "-q", "-z", "expert,warn"], capture_output=True, text=True,
                                timeout=120)
        self.assertNotIn("Warnings", expert.stdout)  # a clean TCP stream: no gaps, no retransmissions
        verbose = subprocess.run(["tshark", "-r", pcap, "-V"], capture_output=True, text=True, timeout=120).stdout
        for secret in secrets:
            self.assertNotIn(secret, verbose)
        # Bodies were captured (body_cap_kb): the APPENDed message is in the export.
        with open(pcap, "rb") as f:
            self.assertIn(marker.encode(), f.read())


class FrozenThread:
    """One thread of a process stopped where it stands, as a write to a hung NFS mount
    stops it, while the process's other threads go on: ptrace (PTRACE_SEIZE, then
    PTRACE_INTERRUPT) on that thread alone. Given back by release(), or when this
    process ends."""

    PTRACE_DETACH, PTRACE_SEIZE, PTRACE_INTERRUPT, WALL = 17, 0x4206, 0x4207, 0x40000000

    def __init__(self, pid, name):
        import ctypes
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
        tids = [int(t) for t in os.listdir(f"/proc/{pid}/task")
                if open(f"/proc/{pid}/task/{t}/comm").read().strip() == name]
        if len(tids) != 1:
            raise AssertionError(f"one thread named {name!r} in {pid}, found {tids}")
        self.tid = tids[0]
        for request in (self.PTRACE_SEIZE, self.PTRACE_INTERRUPT):
            if self.libc.ptrace(request, self.tid, None, None) != 0:
                raise OSError(ctypes.get_errno(), f"ptrace {request:#x} on thread {self.tid}")
        os.waitpid(self.tid, self.WALL)  # stopped now

    def waiting(self, pid):
        """Stopped in a condition variable's wait (futex, FUTEX_WAIT_BITSET): holding no lock."""
        fields = open(f"/proc/{pid}/task/{self.tid}/syscall").read().split()
        return len(fields) > 2 and fields[0] == "202" and int(fields[2], 16) & 0x7f == 9

    @classmethod
    def freeze_idle(cls, pid, name):
        for _ in range(200):
            frozen = cls(pid, name)
            if frozen.waiting(pid):
                return frozen
            frozen.release()
            time.sleep(0.05)
        raise AssertionError(f"thread {name!r} of {pid} never caught waiting for work")

    def release(self):
        if self.tid is not None:
            self.libc.ptrace(self.PTRACE_DETACH, self.tid, None, None)
            self.tid = None


class Stalled(unittest.TestCase):
    """A disk that stops answering: the transcript writer blocks for good, its queue
    fills, lines are dropped and counted, and the traffic goes on at its pace. The
    stall is real: the writer thread (named "transcripts") is stopped while it waits
    for lines, as a hung NFS mount would stop it in a write (a FIFO at its next file
    name no longer stalls it: the writer never opens a name that exists)."""

    BODY = ("Subject: stalled disk\r\n\r\n" + "0123456789abcdef" * 3000 + "\r\n").encode()  # ~48 KB

    def fetch_loop(self, port, rounds):
        c = imaplib.IMAP4("127.0.0.1", port)
        c.login("bob", USERS["bob"])
        c.select("Stalled")
        start = time.monotonic()
        for _ in range(rounds):
            typ, data = c.fetch("1", "(BODY.PEEK[])")
            self.assertEqual(typ, "OK")
            self.assertEqual(data[0][1], self.BODY)
        elapsed = time.monotonic() - start
        c.logout()
        return elapsed

    def test_stalled_disk_never_slows_the_relay(self):
        c = imaplib.IMAP4("127.0.0.1", DOVECOT.port)
        c.login("bob", USERS["bob"])
        c.create("Stalled")
        c.append("Stalled", None, None, self.BODY)
        c.logout()
        rounds = 150
        settings = {"body_cap_kb": 64, "max_file_mb": 1, "max_queued_mb": 1}
        baseline = Proxy(self, settings)  # the same transcripts on a disk that answers
        baseline_seconds = self.fetch_loop(baseline.port, rounds)
        baseline.stop()

        proxy = Proxy(self, settings)
        frozen = FrozenThread.freeze_idle(proxy.proxy.proc.pid, "transcripts")
        self.addCleanup(frozen.release)
        before = urllib.request.urlopen(f"http://127.0.0.1:{proxy.proxy.admin_port}/metrics").read().decode()
        written_before = re.search(r'imapscope_transcript_lines_total\{result="written"\} (\S+)', before).group(1)
        stalled_seconds = self.fetch_loop(proxy.port, rounds)
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{proxy.proxy.admin_port}/metrics").read().decode()
        dropped = re.search(r'imapscope_transcript_lines_total\{result="dropped"\} (\S+)', metrics)
        written = re.search(r'imapscope_transcript_lines_total\{result="written"\} (\S+)', metrics)
        print(f"\n{rounds} FETCH of {len(self.BODY)} bytes: {baseline_seconds:.2f} s writing transcripts, "
              f"{stalled_seconds:.2f} s with a stalled transcript disk; lines written {written.group(1)}, "
              f"dropped {dropped.group(1)}", file=sys.stderr)
        self.assertGreater(float(dropped.group(1)), 0, "the queue filled: lines were dropped")
        self.assertEqual(written.group(1), written_before, "the writer wrote nothing while stopped")
        # Generous: the point is that nothing waits on the disk (a blocked writer would
        # stop the loop entirely), not a benchmark (tests/bench has those).
        self.assertLess(stalled_seconds, 3 * baseline_seconds + 5)

        # The "disk" answers again: what was queued is written, and the proxy stops.
        frozen.release()
        self.assertEqual(proxy.proxy.stop(), 0)
        self.assertRegex(proxy.proxy.log(), r"event=transcripts_closed written=[1-9]\d* dropped=[1-9]")


class Closes(unittest.TestCase):
    def test_close_carries_its_cause(self):
        proxy = Proxy(self, {"user_names": "clear"})

        def authenticated_ends():  # not the fixture's check that the port is open
            return re.findall(r"event=session_end .*state=authenticated.*", proxy.proxy.log())
        for vanish in ("reset", "close"):
            r = RawClient(proxy.port)
            r.send(f"a1 LOGIN alice {USERS['alice']}\r\n".encode())
            self.assertIn(b"a1 OK", r.until_tagged("a1"))
            r.send(b"a2 APPEND INBOX {5000}\r\n")
            self.assertTrue(r.read_line().startswith(b"+"))
            r.send(b"x" * 1000)  # and then the client is gone, inside the literal
            if vanish == "reset":
                r.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            r.sock.close()  # not r.close(): its LOGOUT would be literal bytes
            deadline = time.monotonic() + 15
            while len(authenticated_ends()) < (1 if vanish == "reset" else 2):
                self.assertLess(time.monotonic(), deadline, proxy.proxy.log())
                time.sleep(0.1)
        proxy.stop()
        logged_in = {e["s"] for e in proxy.events() if e.get("event") == "user"}
        closes = [e for e in proxy.events() if e.get("event") == "close" and e["s"] in logged_in]
        self.assertEqual([(e["reason"], e.get("cause"), e.get("cause_detail")) for e in closes],
                         [("client_error", "reset", "Connection reset by peer"),
                          ("client_closed", "eof_mid_message", None)])
        ends = authenticated_ends()
        self.assertIn('reason=client_error cause=reset cause_detail="Connection reset by peer" ', ends[0])
        self.assertIn("reason=client_closed cause=eof_mid_message ", ends[1])
        text = subprocess.run([imapscope_binary(), "inspect", *proxy.files()], capture_output=True, text=True,
                              timeout=60).stdout
        self.assertIn("closed: client_error (reset: Connection reset by peer)", text)
        self.assertIn("closed: client_closed (eof_mid_message)", text)


class Selection(unittest.TestCase):
    def test_by_user(self):
        proxy = Proxy(self, {"user_names": "clear", "select": {"users": ["bob"]}})
        for user in ("alice", "bob", "alice"):
            c = imaplib.IMAP4("127.0.0.1", proxy.port)
            c.login(user, USERS[user])
            c.select("INBOX")
            c.logout()
        proxy.stop()
        users = [e["user"] for e in proxy.events() if e.get("event") == "user"]
        self.assertEqual(users, ["bob"])
        self.assertEqual(len({e["s"] for e in proxy.events()}), 1)

    def test_by_client_family(self):
        proxy = Proxy(self, {"select": {"clients": ["thunderbird"]}})
        for name in ("Thunderbird", "K-9 Mail"):
            r = RawClient(proxy.port)
            r.send(f'a1 ID ("name" "{name}" "version" "128.0")\r\n'.encode())
            r.until_tagged("a1")
            r.send(b"a2 NOOP\r\n")
            r.until_tagged("a2")
            r.close()
        proxy.stop()
        families = {e["family"] for e in proxy.events() if e.get("event") == "client"}
        self.assertEqual(families, {"thunderbird"})


if __name__ == "__main__":
    unittest.main()
