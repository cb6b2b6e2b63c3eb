"""The client leg's TLS against the real binary, a real Dovecot and openssl s_client.

Sni: several certificates on one listener, chosen by the name the client asks for
and, for one name, RSA or ECDSA by what the client supports. Policy: the default
refuses static-RSA and CBC/SHA-1 suites; the settings change it. Reload: SIGHUP puts
a renewed certificate in force for new handshakes while an IDLE session opened
before goes on; a broken one is refused and the renewed one stays. KeyPermissions: a
private key every user can read is refused unless allowed. CheckConfig:
--check-config loads what start-up loads. Everything on 127.0.0.1.
"""
import imaplib
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
from imap_fixtures import (temp_dir, USERS, Dovecot, Imapscope, free_port, imapscope_binary,  # noqa: E402
                           metric_sum, wait_until)

DOVECOT = None


def setUpModule():
    global DOVECOT
    DOVECOT = Dovecot().start()


def tearDownModule():
    if DOVECOT:
        DOVECOT.stop()


def run(*args):
    return subprocess.run(args, check=True, capture_output=True, timeout=60)


class Certificates:
    """A small CA of its own and leaf certificates signed by it, in a temp folder."""

    def __init__(self):
        self.dir = temp_dir(prefix="imapscope-tls-")
        self.ca_key, self.ca = f"{self.dir}/ca.key", f"{self.dir}/ca.pem"
        run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", self.ca_key, "-out", self.ca,
            "-days", "2", "-subj", "/CN=imapscope TLS test CA")

    def leaf(self, stem, names, key_type="rsa", serial=1000):
        """(cert, key) for names (SAN DNS entries, the first also the CN); key 0600."""
        key, csr, cert, ext = (f"{self.dir}/{stem}.{suffix}" for suffix in ("key", "csr", "pem", "ext"))
        if key_type == "rsa":
            run("openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", key)
        else:
            run("openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", key)
        os.chmod(key, 0o600)
        run("openssl", "req", "-new", "-key", key, "-subj", f"/CN={names[0]}", "-out", csr)
        with open(ext, "w") as f:
            f.write("subjectAltName=" + ",".join(f"DNS:{n}" for n in names) + "\n")
        run("openssl", "x509", "-req", "-in", csr, "-CA", self.ca, "-CAkey", self.ca_key, "-set_serial", str(serial),
            "-out", cert, "-days", "2", "-extfile", ext)
        return cert, key

    def remove(self):
        shutil.rmtree(self.dir, ignore_errors=True)


def handshake(port, *args, ca=None):
    """openssl s_client's handshake with args; (ok, the server certificate's text or
    s_client's output when it failed)."""
    command = ["openssl", "s_client", "-connect", f"127.0.0.1:{port}"] + list(args)
    if ca:
        command += ["-CAfile", ca, "-verify_return_error"]
    result = subprocess.run(command, input=b"", capture_output=True, timeout=30)
    out = result.stdout.decode(errors="replace")
    if result.returncode != 0 or "-----BEGIN CERTIFICATE-----" not in out:
        return False, out + result.stderr.decode(errors="replace")
    pem = out[out.index("-----BEGIN CERTIFICATE-----"):out.index("-----END CERTIFICATE-----") + 25]
    text = subprocess.run(["openssl", "x509", "-noout", "-subject", "-serial", "-text"], input=pem.encode(),
                          capture_output=True, timeout=30, check=True).stdout.decode()
    return True, text


def close_quietly(client):
    try:
        client.shutdown()
    except OSError:
        pass


def key_kind(certificate_text):
    return "ecdsa" if "id-ecPublicKey" in certificate_text else "rsa" if "rsaEncryption" in certificate_text else "?"


def serial_of(certificate_text):
    line = next(line for line in certificate_text.splitlines() if line.startswith("serial="))
    return int(line.split("=", 1)[1], 16)


def start_proxy(test, certificates, *flags, listen_flag="--listen-tls"):
    port = free_port()
    args = [listen_flag, f"127.0.0.1:{port}", "--upstream", f"127.0.0.1:{DOVECOT.port}", "--threads", "2"]
    for cert, key in certificates:
        args += ["--tls-cert", cert, "--tls-key", key]
    proxy = Imapscope(args + list(flags))
    test.addCleanup(shutil.rmtree, proxy.log_dir, True)
    test.addCleanup(proxy.stop)
    proxy.start([port])
    return proxy, port


class Sni(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.certs = Certificates()
        cls.a_rsa = cls.certs.leaf("a-rsa", ["a.example", "*.a.example"], "rsa", 11)
        cls.a_ecdsa = cls.certs.leaf("a-ecdsa", ["a.example", "*.a.example"], "ecdsa", 12)
        cls.b_rsa = cls.certs.leaf("b-rsa", ["b.example"], "rsa", 21)

    @classmethod
    def tearDownClass(cls):
        cls.certs.remove()

    def setUp(self):
        self.proxy, self.port = start_proxy(self, [self.a_rsa, self.a_ecdsa, self.b_rsa])

    def see(self, *args):
        ok, text = handshake(self.port, *args, ca=self.certs.ca)
        self.assertTrue(ok, text)
        return text

    def test_each_name_gets_its_certificate(self):
        self.assertIn("CN = a.example", self.see("-servername", "a.example", "-verify_hostname", "a.example"))
        self.assertIn("CN = b.example", self.see("-servername", "b.example", "-verify_hostname", "b.example"))
        # A wildcard name, matched one label deep.
        self.assertIn("CN = a.example", self.see("-servername", "imap.a.example", "-verify_hostname", "imap.a.example"))

    def test_no_or_unknown_name_gets_the_default(self):
        self.assertIn("CN = a.example", self.see())
        self.assertIn("CN = a.example", self.see("-servername", "unknown.example"))

    def test_rsa_and_ecdsa_for_the_same_name_by_what_the_client_supports(self):
        ecdsa13 = self.see("-servername", "a.example", "-tls1_3", "-sigalgs", "ecdsa_secp256r1_sha256")
        rsa13 = self.see("-servername", "a.example", "-tls1_3", "-sigalgs", "rsa_pss_rsae_sha256")
        ecdsa12 = self.see("-servername", "a.example", "-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256")
        rsa12 = self.see("-servername", "a.example", "-tls1_2", "-cipher", "ECDHE-RSA-AES128-GCM-SHA256")
        self.assertEqual([key_kind(t) for t in (ecdsa13, rsa13, ecdsa12, rsa12)], ["ecdsa", "rsa", "ecdsa", "rsa"])
        self.assertEqual([serial_of(t) for t in (ecdsa13, rsa13)], [12, 11])
        # b.example has RSA only: an RSA client gets it, an ECDSA-only one gets nothing.
        self.assertEqual(key_kind(self.see("-servername", "b.example", "-sigalgs", "rsa_pss_rsae_sha256")), "rsa")
        ok, _ = handshake(self.port, "-servername", "b.example", "-sigalgs", "ecdsa_secp256r1_sha256")
        self.assertFalse(ok)

    def test_an_imap_session_through_the_chosen_certificate(self):
        context = ssl.create_default_context(cafile=self.certs.ca)
        with _imap_ssl_to(self.port, "b.example", context) as c:
            self.assertEqual(c.login("alice", USERS["alice"])[0], "OK")
            self.assertEqual(c.select("INBOX")[0], "OK")
            self.assertEqual(c.sock.getpeercert()["subject"], ((("commonName", "b.example"),),))


def _imap_ssl_to(port, server_name, context):
    """IMAP4_SSL to 127.0.0.1:port asking for server_name (SNI and the name checked)."""
    class Client(imaplib.IMAP4_SSL):
        def _create_socket(self, timeout):
            sock = imaplib.IMAP4._create_socket(self, timeout)
            return self.ssl_context.wrap_socket(sock, server_hostname=server_name)
    return Client("127.0.0.1", port, ssl_context=context, timeout=30)


class Policy(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.certs = Certificates()
        cls.pair = cls.certs.leaf("server", ["localhost"], "rsa")

    @classmethod
    def tearDownClass(cls):
        cls.certs.remove()

    def test_default_refuses_static_rsa_and_cbc_sha1(self):
        _, port = start_proxy(self, [self.pair])
        for weak in ("AES128-SHA", "AES256-GCM-SHA384", "ECDHE-RSA-AES128-SHA", "ECDHE-RSA-AES256-SHA384"):
            ok, out = handshake(port, "-tls1_2", "-cipher", weak)
            self.assertFalse(ok, f"{weak} was accepted")
            self.assertIn("handshake failure", out)
        for good in ("ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-RSA-CHACHA20-POLY1305"):
            ok, out = handshake(port, "-tls1_2", "-cipher", good, ca=self.certs.ca)
            self.assertTrue(ok, out)
        ok, out = handshake(port, "-tls1_3", ca=self.certs.ca)
        self.assertTrue(ok, out)

    def test_starttls_follows_the_policy_too(self):
        _, port = start_proxy(self, [self.pair], listen_flag="--listen")
        ok, _ = handshake(port, "-starttls", "imap", "-tls1_2", "-cipher", "AES128-SHA")
        self.assertFalse(ok)
        ok, out = handshake(port, "-starttls", "imap", "-tls1_2", "-cipher", "ECDHE-RSA-AES256-GCM-SHA384",
                            ca=self.certs.ca)
        self.assertTrue(ok, out)

    def test_minimum_version_tls13_refuses_tls12(self):
        _, port = start_proxy(self, [self.pair], "--tls-min-version", "TLSv1.3")
        ok, _ = handshake(port, "-tls1_2")
        self.assertFalse(ok)
        ok, out = handshake(port, "-tls1_3", ca=self.certs.ca)
        self.assertTrue(ok, out)

    def test_ciphers_and_suites_settings_take_effect(self):
        _, port = start_proxy(self, [self.pair], "--tls-ciphers", "ECDHE-RSA-AES128-SHA",
                              "--tls-ciphersuites", "TLS_CHACHA20_POLY1305_SHA256")
        ok, out = handshake(port, "-tls1_2", "-cipher", "ECDHE-RSA-AES128-SHA", ca=self.certs.ca)
        self.assertTrue(ok, out)
        ok, _ = handshake(port, "-tls1_2", "-cipher", "ECDHE-RSA-AES128-GCM-SHA256")
        self.assertFalse(ok)
        ok, _ = handshake(port, "-tls1_3", "-ciphersuites", "TLS_AES_128_GCM_SHA256")
        self.assertFalse(ok)
        ok, out = handshake(port, "-tls1_3", "-ciphersuites", "TLS_CHACHA20_POLY1305_SHA256", ca=self.certs.ca)
        self.assertTrue(ok, out)

    def test_bad_cipher_settings_stop_startup(self):
        for flag, value, reason in (("--tls-ciphers", "NO-SUCH-CIPHER", "flag --tls-ciphers: OpenSSL knows no TLS 1.2"),
                                    ("--tls-ciphersuites", "TLS_AES_128_GCM_SHA256:TLS_NOPE",
                                     'flag --tls-ciphersuites: "TLS_NOPE" is not a TLS 1.3 suite')):
            result = subprocess.run([imapscope_binary(), "--listen-tls", f"127.0.0.1:{free_port()}", "--tls-cert",
                                     self.pair[0], "--tls-key", self.pair[1], "--upstream", "127.0.0.1:143", flag,
                                     value, "--admin", "none"], capture_output=True, text=True, timeout=30)
            self.assertEqual(result.returncode, 2, result.stderr)
            self.assertIn(reason, result.stderr)


class Reload(unittest.TestCase):
    def setUp(self):
        self.certs = Certificates()
        self.addCleanup(self.certs.remove)
        self.cert, self.key = f"{self.certs.dir}/live.pem", f"{self.certs.dir}/live.key"
        self.install(self.certs.leaf("v1", ["localhost"], "rsa", serial=1001))
        self.proxy, self.port = start_proxy(self, [(self.cert, self.key)])

    def install(self, pair):
        """Puts pair at the listener's paths, each file renamed into place (as certbot's deploy would)."""
        for source, target in zip(pair, (self.cert, self.key)):
            shutil.copyfile(source, target + ".new")
            os.chmod(target + ".new", 0o600)
            os.replace(target + ".new", target)

    def reloaded(self, count, result):
        def seen():
            lines = [line for line in self.proxy.log().splitlines() if "event=tls_reload" in line]
            return lines[count - 1] if len(lines) >= count else None
        line = wait_until(f"reload {count}", seen, timeout=20)
        self.assertIn(f"result={result}", line)
        return line

    def metrics(self):
        port = self.proxy.admin_port
        return (metric_sum(port, "imapscope_tls_reloads_total", 'result="ok"'),
                metric_sum(port, "imapscope_tls_reloads_total", 'result="failed"'),
                metric_sum(port, "imapscope_tls_certificate_expiry_timestamp_seconds", 'listener="imaps-0"'))

    def not_after(self, cert):
        out = run("openssl", "x509", "-noout", "-enddate", "-in", cert).stdout.decode()
        return ssl.cert_time_to_seconds(out.strip().split("=", 1)[1])

    def serial_now(self):
        ok, text = handshake(self.port, "-servername", "localhost", ca=self.certs.ca)
        self.assertTrue(ok, text)
        return serial_of(text)

    def test_renewal_reaches_new_handshakes_and_an_idle_session_goes_on(self):
        self.assertEqual(self.serial_now(), 1001)
        self.assertEqual(self.metrics(), (0, 0, self.not_after(self.cert)))
        context = ssl.create_default_context(cafile=self.certs.ca)
        c = imaplib.IMAP4_SSL("localhost", self.port, ssl_context=context, timeout=60)
        self.addCleanup(close_quietly, c)
        self.assertEqual(c.login("alice", USERS["alice"])[0], "OK")
        box = f"reload-{os.getpid()}-{time.monotonic_ns()}"
        self.assertEqual(c.create(box)[0], "OK")
        self.assertEqual(c.select(box)[0], "OK")
        tag = c._new_tag()
        c.send(tag + b" IDLE\r\n")
        self.assertTrue(c.readline().startswith(b"+"))

        time.sleep(1.1)  # the renewed certificate's notAfter is a second later at least
        self.install(self.certs.leaf("v2", ["localhost"], "rsa", serial=1002))
        renewed_expiry = self.not_after(self.cert)
        self.proxy.proc.send_signal(signal.SIGHUP)
        self.reloaded(1, "ok")
        self.assertEqual(self.serial_now(), 1002)
        self.assertEqual(self.metrics(), (1, 0, renewed_expiry))

        # The session opened before: still there, still told about new mail.
        deliverer = imaplib.IMAP4("127.0.0.1", DOVECOT.port, timeout=30)
        deliverer.login("alice", USERS["alice"])
        deliverer.append(box, None, None, b"Subject: after the reload\r\n\r\nhello\r\n")
        deliverer.logout()
        deadline = time.monotonic() + 45  # Dovecot may poll every 30 s without inotify
        seen_exists = False
        while time.monotonic() < deadline and not seen_exists:
            seen_exists = c.readline().endswith(b"EXISTS\r\n")
        self.assertTrue(seen_exists, "no EXISTS during IDLE after the reload")
        c.send(b"DONE\r\n")
        while True:
            line = c.readline()
            if line.startswith(tag):
                self.assertIn(b"OK", line)
                break
        self.assertEqual(c.sock.getpeercert()["serialNumber"], "03E9")  # 1001: the one it started with
        self.assertEqual(c.logout()[0], "BYE")

        # A broken certificate: refused with the file and OpenSSL's reason; the renewed one stays.
        with open(self.cert, "w") as f:
            f.write("-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n")
        self.proxy.proc.send_signal(signal.SIGHUP)
        line = self.reloaded(2, "failed")
        self.assertIn("level=error", line)
        self.assertIn(self.cert, line)
        self.assertEqual(self.serial_now(), 1002)

        # A key that is not the certificate's: the same.
        self.install((self.certs.leaf("v3", ["localhost"], "rsa", serial=1003)[0],
                      self.certs.leaf("other", ["localhost"], "rsa", serial=1004)[1]))
        self.proxy.proc.send_signal(signal.SIGHUP)
        line = self.reloaded(3, "failed")
        self.assertIn("does not match certificate", line)
        self.assertEqual(self.serial_now(), 1002)
        self.assertEqual(self.metrics(), (1, 2, renewed_expiry))
        self.assertIsNone(self.proxy.proc.poll())


    def test_reloads_while_handshakes_run(self):
        # Every event loop takes the context while SIGHUPs swap it: no handshake fails
        # and each sees one of the two certificates whole (the sanitizer build would
        # report a context freed under a handshake).
        pairs = [self.certs.leaf("x", ["localhost"], "rsa", serial=2001),
                 self.certs.leaf("y", ["localhost"], "ecdsa", serial=2002)]
        context = ssl.create_default_context(cafile=self.certs.ca)
        serials, failures = [], []

        def handshakes():
            for _ in range(25):
                try:
                    with socket.create_connection(("127.0.0.1", self.port), timeout=20) as raw:
                        with context.wrap_socket(raw, server_hostname="localhost") as tls:
                            serials.append(int(tls.getpeercert()["serialNumber"], 16))
                            tls.recv(100)  # the greeting: the session went through
                except (OSError, ssl.SSLError) as e:
                    failures.append(repr(e))

        threads = [threading.Thread(target=handshakes) for _ in range(4)]
        for t in threads:
            t.start()
        for i in range(8):
            self.install(pairs[i % 2])
            self.proxy.proc.send_signal(signal.SIGHUP)
            self.reloaded(i + 1, "ok")
        for t in threads:
            t.join(timeout=120)
        self.assertEqual(failures, [])
        self.assertEqual(len(serials), 100)
        self.assertTrue(set(serials) <= {1001, 2001, 2002}, serials)
        self.assertIsNone(self.proxy.proc.poll())


class KeyPermissions(unittest.TestCase):
    def setUp(self):
        self.certs = Certificates()
        self.addCleanup(self.certs.remove)
        self.cert, self.key = self.certs.leaf("server", ["localhost"], "rsa")

    def start(self, *flags):
        return subprocess.run([imapscope_binary(), "--listen-tls", f"127.0.0.1:{free_port()}", "--tls-cert", self.cert,
                               "--tls-key", self.key, "--upstream", f"127.0.0.1:{DOVECOT.port}", "--admin", "none",
                               *flags], capture_output=True, text=True, timeout=30)

    def test_world_readable_key_is_refused_with_the_file_named(self):
        os.chmod(self.key, 0o644)
        result = self.start()
        self.assertNotEqual(result.returncode, 0)
        self.assertIn(f"private key {self.key} is readable by every user (mode 0644)", result.stderr)
        check = subprocess.run([imapscope_binary(), "--check-config", self.write_config({})],
                               capture_output=True, text=True, timeout=30)
        self.assertNotEqual(check.returncode, 0)
        self.assertIn(self.key, check.stderr)

    def test_the_setting_allows_it(self):
        os.chmod(self.key, 0o644)
        _, port = start_proxy(self, [(self.cert, self.key)], "--allow-world-readable-keys")
        ok, out = handshake(port, ca=self.certs.ca)
        self.assertTrue(ok, out)
        check = subprocess.run([imapscope_binary(), "--check-config",
                                self.write_config({"allow_world_readable_keys": True})],
                               capture_output=True, text=True, timeout=30)
        self.assertEqual(check.returncode, 0, check.stderr)

    def test_group_readable_is_accepted_and_a_reload_checks_again(self):
        os.chmod(self.key, 0o640)
        proxy, port = start_proxy(self, [(self.cert, self.key)])
        ok, out = handshake(port, ca=self.certs.ca)
        self.assertTrue(ok, out)
        os.chmod(self.key, 0o644)
        proxy.proc.send_signal(signal.SIGHUP)
        line = wait_until("the reload", lambda: next((line for line in proxy.log().splitlines()
                                                       if "event=tls_reload" in line), None))
        self.assertIn("result=failed", line)
        self.assertIn("is readable by every user", line)

    def write_config(self, top):
        config = dict(top, listeners=[{"listen": f"127.0.0.1:{free_port()}", "tls": "implicit", "cert": self.cert,
                                       "key": self.key, "upstream": {"addresses": [f"127.0.0.1:{DOVECOT.port}"]}}])
        path = os.path.join(self.certs.dir, "config.json")
        with open(path, "w") as f:
            json.dump(config, f)
        return path


class CheckConfig(unittest.TestCase):
    def setUp(self):
        self.certs = Certificates()
        self.addCleanup(self.certs.remove)
        self.cert, self.key = self.certs.leaf("server", ["localhost"], "rsa")

    def config(self, listener=None, **top):
        base = {"listen": f"127.0.0.1:{free_port()}", "tls": "implicit", "cert": self.cert, "key": self.key,
                "upstream": {"addresses": [f"localhost:{DOVECOT.tls_port}"], "tls": "implicit",
                             "ca_file": DOVECOT.certs["ca"]}}
        base.update(listener or {})
        path = os.path.join(self.certs.dir, f"config-{time.monotonic_ns()}.json")
        with open(path, "w") as f:
            json.dump(dict(top, listeners=[base], admin="none"), f)
        return path

    def check(self, path):
        return subprocess.run([imapscope_binary(), "--check-config", path], capture_output=True, text=True, timeout=30)

    def refused(self, path, *expected):
        result = self.check(path)
        self.assertNotEqual(result.returncode, 0, result.stdout)
        for text in expected:
            self.assertIn(text, result.stderr)
        self.assertNotIn("config OK", result.stdout)

    def test_missing_certificate_key_or_ca_file(self):
        self.refused(self.config({"cert": "/nonexistent/cert.pem"}), "/nonexistent/cert.pem", "No such file")
        self.refused(self.config({"key": "/nonexistent/key.pem"}), "/nonexistent/key.pem", "No such file")
        upstream = {"addresses": [f"localhost:{DOVECOT.tls_port}"], "tls": "implicit",
                    "ca_file": "/nonexistent/ca.pem"}
        self.refused(self.config({"upstream": upstream}), "CA file /nonexistent/ca.pem", "No such file")

    def test_host_name_as_listen_address(self):
        path = self.config({"listen": "localhost:1143"})
        self.refused(path, f"{path}: /listeners/0/listen: \"localhost\" is not an IP address")

    def test_bad_policy_names_the_key(self):
        path = self.config(tls_policy={"ciphers": "NO-SUCH-CIPHER"})
        self.refused(path, f"{path}: /tls_policy/ciphers: OpenSSL knows no TLS 1.2 cipher")
        path = self.config({"tls_policy": {"min_version": "TLSv1.1"}})
        self.refused(path, f"{path}: /listeners/0/tls_policy/min_version")

    def test_a_good_config_is_ok_and_starts(self):
        port = free_port()
        path = self.config({"listen": f"127.0.0.1:{port}",
                            "certificates": [{"cert": self.cert, "key": self.key}]},
                           tls_policy={"min_version": "TLSv1.3"})
        result = self.check(path)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn("config OK", result.stdout)
        self.assertIn("certificates=2 min_version=TLSv1.3", result.stdout)
        proxy = Imapscope(["--config", path])
        self.addCleanup(shutil.rmtree, proxy.log_dir, True)
        self.addCleanup(proxy.stop)
        proxy.start([port])
        with _imap_ssl_to(port, "localhost", ssl.create_default_context(cafile=self.certs.ca)) as c:
            self.assertEqual(c.login("bob", USERS["bob"])[0], "OK")
            self.assertEqual(c.sock.version(), "TLSv1.3")


if __name__ == "__main__":
    unittest.main(verbosity=2)
