"""The byte-exactness soak (tests/load/soak.py) in CI: 5 GB through imapscope with TLS
on both legs, half of it through a proxy running the shipped rules, messages of 1 byte
to 25 MB in every literal kind, pipelined; every message compared by SHA-256 as
Dovecot stored it (client to server) and as the client got it back (server to client).
"""
import argparse
import os
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "load"))
import soak  # noqa: E402


class Soak(unittest.TestCase):
    def test_five_gigabytes_byte_exact_both_ways(self):
        args = argparse.Namespace(gigabytes=5.0, workers=4, seconds=1200, seed=1, imapscope=None, json=None)
        r = soak.run(args, log=lambda line: print(line, file=sys.stderr))
        self.assertEqual(r["errors"], [])
        self.assertEqual(r["mismatches"], [])
        self.assertGreaterEqual(r["gigabytes_relayed"], 5.0)
        self.assertTrue(r["proxies_alive"])
        self.assertGreater(r["largest"], 20_000_000)
        for kind, count in r["kinds"].items():
            self.assertGreater(count, 10, kind)
        # Both proxies (without and with rules) carried their share.
        self.assertEqual(len({w["port"] for w in r["workers"]}), 2)


if __name__ == "__main__":
    unittest.main(verbosity=2)
