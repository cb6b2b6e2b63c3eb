"""docs/configuration.md against the code that defines the settings, both ways.

ConfigurationReference:
- every key the config loader reads (the key names in the JsonReader calls of
  proxy/app/config*.cpp) has a row in "Every key", and every row names a key the
  loader reads;
- every flag of `imapscope --help` and every flag the parser takes (parse_flags and
  main's --check-config) has a row in "Every flag", and every row names one of them;
- the documented examples (configuration.md's config file, with inspector.md's
  transcripts and diagnostics.md's diagnostics blocks put in, and the README's quick
  start) pass `imapscope --check-config`: the loader refuses unknown keys at every
  level, so a documented key in the wrong place, or one it doesn't know, fails here.

Why the source and not a list the binary prints: the loader reads a key only on the
path that needs it (transcripts only when given, the old login_disabled_until_tls
instead of plaintext_login), so no single run of it sees them all; the key names
passed to the reader's calls are all in the source, where a reviewer sees them.
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "support"))
from imap_fixtures import imapscope_binary  # noqa: E402

SOURCE_DIR = os.path.abspath(os.path.join(HERE, "..", ".."))
DOCS = os.path.join(SOURCE_DIR, "docs")


def read(path):
    with open(path) as f:
        return f.read()


def code_of(path):
    """A C++ file without its comments and raw strings (usage()'s text): what is left
    are the calls."""
    text = re.sub(r'R"\((.|\n)*?\)"', '""', read(path))
    text = re.sub(r"^\s*//.*$", "", text, flags=re.M)
    return re.sub(r"\s//\s.*$", "", text, flags=re.M)


def loader_keys():
    """The key names the config loader asks its JsonReader for: the first string
    argument of a call (r.string("key", ...), count("key", ...)), or the second after
    a reader (millis(r, "key", ...), read_networks(r, "key"))."""
    keys = set()
    sources = sorted(f for f in os.listdir(os.path.join(SOURCE_DIR, "proxy", "app"))
                     if f.startswith("config") and f.endswith(".cpp"))
    for name in sources:
        code = code_of(os.path.join(SOURCE_DIR, "proxy", "app", name))
        keys |= set(re.findall(r'\w+\((?:\s*\w+\s*,)?\s*"([a-z][a-z0-9_]*)"', code))
    return keys


def parser_flags():
    flags = set()
    for name in ("config.cpp", "main.cpp"):
        code = code_of(os.path.join(SOURCE_DIR, "proxy", "app", name))
        flags |= set(re.findall(r'==\s*"(--?[a-z][a-z0-9-]*)"', code))
    return flags


def help_flags():
    result = subprocess.run([imapscope_binary(), "--help"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    return set(re.findall(r"(?<![\w-])(--?[a-z][a-z0-9-]*)", result.stdout.split("\nFlags", 1)[1]))


def section(text, heading):
    """The text under "## heading" up to the next "## " heading."""
    start = text.index("\n## " + heading + "\n")
    end = text.find("\n## ", start + 1)
    return text[start:end if end >= 0 else len(text)]


def first_cells(text):
    return re.findall(r"^\| (`[^|]*`) \|", text, re.M)


def documented_keys():
    """Key names of the "Every key" tables: `listeners[].upstream.tls` -> tls."""
    names = set()
    for cell in first_cells(section(read(os.path.join(DOCS, "configuration.md")), "Every key")):
        path = cell.strip("`")
        names.add(path.split(".")[-1].replace("[]", ""))
    return names


def documented_flags():
    flags = set()
    for cell in first_cells(section(read(os.path.join(DOCS, "configuration.md")), "Every flag")):
        flags |= set(re.findall(r"`(--?[a-z][a-z0-9-]*)", cell))
    return flags


def json_block(text, containing):
    for block in re.findall(r"```json\n(.*?)```", text, re.S):
        if containing in block:
            return block
    raise AssertionError(f"no ```json block with {containing}")


class ConfigurationReference(unittest.TestCase):
    def test_every_key_the_loader_reads_is_documented_and_no_other(self):
        code, docs = loader_keys(), documented_keys()
        # The extraction itself must see the loader: a pattern gone blind passes nothing.
        self.assertGreater(len(code), 90)
        for key in ("listeners", "forward_client", "shutdown_grace_ms", "resync_min_messages", "trusted", "sample"):
            self.assertIn(key, code)
        self.assertEqual(sorted(code - docs), [], "read by proxy/app/config*.cpp, missing from docs/configuration.md")
        self.assertEqual(sorted(docs - code), [], "in docs/configuration.md, never read by the loader")

    def test_every_flag_is_documented_and_no_other(self):
        parsed, helped, docs = parser_flags(), help_flags(), documented_flags()
        self.assertGreater(len(parsed), 35)
        self.assertIn("--check-config", parsed)
        self.assertIn("--max-prelogin-per-address", helped)
        self.assertEqual(sorted(helped - docs), [], "in imapscope --help, missing from docs/configuration.md")
        self.assertEqual(sorted(parsed - docs), [], "taken by the parser, missing from docs/configuration.md")
        self.assertEqual(sorted(docs - parsed - helped), [], "in docs/configuration.md, unknown to imapscope")

    def test_documented_examples_pass_check_config(self):
        config = json.loads(json_block(read(os.path.join(DOCS, "configuration.md")), '"listeners"'))
        config.update(json.loads("{" + json_block(read(os.path.join(DOCS, "inspector.md")), '"transcripts":') + "}"))
        config.update(json.loads(json_block(read(os.path.join(DOCS, "diagnostics.md")), '"diagnostics":')))
        # Routing excludes the listeners' upstreams: its example (docs/routing.md) is checked on its own.
        routing = json.loads(json_block(read(os.path.join(DOCS, "routing.md")), '"routing"'))
        self.check_config(routing)
        config["routing"] = routing["routing"]
        # Every top-level key of the reference is in the examples, so each is checked.
        rows = first_cells(section(read(os.path.join(DOCS, "configuration.md")), "Every key"))
        top_level = {c.strip("`") for c in rows if "." not in c and "[" not in c}
        self.assertGreater(len(top_level), 20)
        self.assertEqual(sorted(top_level - set(config)), [], "top-level keys without an example")

        del config["routing"]
        self.check_config(config)

    def test_readme_quick_start_passes_check_config(self):
        config = json.loads(json_block(read(os.path.join(SOURCE_DIR, "README.md")), '"listeners"'))
        self.assertEqual(config["listeners"][0]["upstream"]["addresses"], ["mail.example.org:993"])
        self.check_config(config)

    def check_config(self, config):
        """`imapscope --check-config` on config, its files (the package's paths) replaced
        by this test's: certificates, token, state, users, rules."""
        work = tempfile.mkdtemp(prefix="imapscope-docs-")
        self.addCleanup(shutil.rmtree, work, True)
        os.chmod(work, 0o700)
        files = {}
        for kind, args in (("rsa", ["-newkey", "rsa:2048"]),
                           ("ecdsa", ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"])):
            cert, key = os.path.join(work, kind + ".pem"), os.path.join(work, kind + ".key")
            result = subprocess.run(["openssl", "req", "-x509", *args, "-nodes", "-days", "2", "-subj", "/CN=localhost",
                                     "-keyout", key, "-out", cert], capture_output=True, text=True, timeout=60)
            self.assertEqual(result.returncode, 0, result.stderr)
            os.chmod(key, 0o600)
            files[kind] = (cert, key)
        config = json.loads(json.dumps(config))
        if "user" in config:
            config["user"] = "nobody"
        if "group" in config:
            config["group"] = "nogroup"
        config["state_dir"] = os.path.join(work, "state")
        if "admin_token_file" in config:
            config["admin_token_file"] = os.path.join(work, "admin-token")
            with open(os.open(config["admin_token_file"], os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
                f.write("0123456789abcdef0123456789abcdef\n")
        if "clients" in config:
            config["clients"] = os.path.join(SOURCE_DIR, "rules", "clients.json")
        if "rules" in config:
            config["rules"] = os.path.join(SOURCE_DIR, "rules", "quirks")
        if "transcripts" in config:
            config["transcripts"]["dir"] = os.path.join(work, "transcripts")
            os.makedirs(config["transcripts"]["dir"], mode=0o700)
        if "state_file" in config.get("diagnostics", {}):
            config["diagnostics"]["state_file"] = os.path.join(work, "diagnostics-state")
        if "map" in config.get("routing", {}):
            config["routing"]["map"] = os.path.join(work, "routes.map")
            with open(config["routing"]["map"], "w") as f:
                f.write("alice@example.com 10.0.0.11:143\n@example.org 10.0.0.13:993 tls\n* 10.0.0.11:143\n")
        if "upstream_ca" in config.get("routing", {}):
            config["routing"]["upstream_ca"] = files["rsa"][0]
        for listener in config["listeners"]:
            if "cert" in listener:
                listener["cert"], listener["key"] = files["rsa"]
            for pair in listener.get("certificates", []):
                pair["cert"], pair["key"] = files["ecdsa"]
        path = os.path.join(work, "imapscope.json")
        with open(path, "w") as f:
            json.dump(config, f)
        result = subprocess.run([imapscope_binary(), "--check-config", path],
                                capture_output=True, text=True, timeout=60)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertIn("config OK", result.stdout)

if __name__ == "__main__":
    unittest.main()
