"""The load proof (tests/load/load_run.py) with small numbers, in CI: 400 idle TLS
sessions held beside an active workload, mail delivered to every idle user twice,
then connection churn with and without TLS session resumption. Nothing may be lost:
no session, no notification, no command. The 10,000-session run and its figures are
in BENCHMARKS.md.
"""
import argparse
import os
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "load"))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
import load_run  # noqa: E402
from imap_fixtures import release_binary  # noqa: E402


class Load(unittest.TestCase):
    def test_idle_sessions_beside_active_ones_then_churn(self):
        args = argparse.Namespace(idle=400, idle_users=20, active=8, rate=5, hold=40, baseline=10, deliver_every=15,
                                  concurrency=64, churn_seconds=5, threads=2, proxies=0, imapscope=None, json=None)
        r = load_run.run(args, log=lambda line: print(line, file=sys.stderr))
        print(load_run.summary(r), file=sys.stderr)
        idle = r["idle_result"]
        self.assertEqual(idle["opened"], 400, idle["open_failures"])
        self.assertEqual(idle["lost"], 0, idle["lost_reasons"])
        self.assertEqual(idle["close_failures"], [])
        # Every idle session saw every delivery round's message.
        self.assertGreaterEqual(r["delivery_rounds"], 2)
        self.assertEqual(idle["notified_min"], r["delivery_rounds"])
        for phase in ("active_alone", "active_beside_idle"):
            self.assertEqual(r[phase]["error_count"], 0, r[phase]["errors"])
            self.assertGreater(r[phase]["commands"], 50)
            self.assertIn("IDLE notification", r[phase]["by_kind_us"])
        plain, resumed = r["churn"]
        self.assertEqual(plain["failures"], 0)
        self.assertEqual(resumed["failures"], 0)
        self.assertEqual(plain["resumed"], 0)
        # After the first connection of each client process, every one resumes.
        self.assertGreaterEqual(resumed["resumed"], resumed["sessions"] - 2)
        self.assertGreaterEqual(resumed["proxy_handshakes"]["client_resumed"], resumed["sessions"] - 2)
        # Towards Dovecot the proxy resumes too, with or without the client doing so:
        # about half the time, because each of Dovecot's two imap-login processes has
        # ticket keys of its own and accepts only the tickets it issued.
        for churn in (plain, resumed):
            upstream = churn["proxy_handshakes"]
            self.assertGreater(upstream["upstream_resumed"], 0.25 * churn["sessions"], upstream)
        self.assertTrue(r["proxy_alive"])
        # The sessions' descriptors are all given back.
        for before, after in zip(r["fds"]["before"], r["fds"]["after"]):
            self.assertLessEqual(after, before + 2)
        if release_binary():
            # HAProxy measured the same way: ≈ 37 KiB (BENCHMARKS.md); generous for a small sample.
            self.assertLess(r["kib_per_idle_session"], 46)


if __name__ == "__main__":
    unittest.main(verbosity=2)
