"""What `cmake --install` and the Debian package put where.

Destdir: `cmake --install BUILD --prefix /usr` into a DESTDIR lands exactly the
expected files (binary in sbin, imapscope(8), the config in /etc, the unit in
/lib/systemd/system, rules, dashboards, docs); the config passes --check-config
(with a test certificate and an existing user in place of the package's), the man
page renders without warnings and names every flag of --help, and
`systemd-analyze verify` passes on the unit of an install under a prefix of its own.

DebianPackage: the package built from a copy of the tree (dpkg-buildpackage, no
tests), installed with apt-get, checked (system user, state folder 0700, conffile,
certificate readable by the service only, --check-config as root and as the
service user, systemd-analyze verify, nothing enabled or started), removed (config
and state stay), purged (nothing stays: files, folders, user, group). Needs root;
changes the system while it runs and puts it back, also when it fails.
"""
import glob
import grp
import json
import os
import pwd
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
from imap_fixtures import temp_dir, imapscope_binary  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.environ.get("IMAPSCOPE_SOURCE_DIR") or os.path.abspath(os.path.join(HERE, "..", ".."))
BUILD_DIR = os.environ.get("IMAPSCOPE_BUILD_DIR") or os.path.join(SOURCE_DIR, "build", "test")

# The unit's hardening that docs/operations.md promises.
HARDENING = ["Type=notify", "User=imapscope", "Group=imapscope", "AmbientCapabilities=CAP_NET_BIND_SERVICE",
             "CapabilityBoundingSet=CAP_NET_BIND_SERVICE", "NoNewPrivileges=yes", "ProtectSystem=strict",
             "ProtectHome=yes", "PrivateTmp=yes", "PrivateDevices=yes", "StateDirectory=imapscope",
             "StateDirectoryMode=0700", "LogsDirectory=imapscope", "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
             "SystemCallFilter=@system-service", "LimitNOFILE=65536", "LimitCORE=0", "LockPersonality=yes",
             "MemoryDenyWriteExecute=yes", "ProtectKernelTunables=yes", "ProtectKernelModules=yes",
             "ProtectKernelLogs=yes", "ProtectControlGroups=yes", "ExecReload=/bin/kill -HUP $MAINPID"]


def run(args, timeout=120, **kwargs):
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, **kwargs)


def source_files(*folders):
    """The tracked files under folders of the source tree, relative to it."""
    out = []
    for folder in folders:
        for root, _, files in os.walk(os.path.join(SOURCE_DIR, folder)):
            for name in files:
                if name.endswith(".pyc") or "__pycache__" in root:
                    continue
                out.append(os.path.relpath(os.path.join(root, name), SOURCE_DIR))
    return out


def expected_share_files():
    files = {"/usr/share/imapscope/rules/clients.json", "/usr/share/imapscope/rules/README.md",
             "/usr/share/imapscope/dashboards/README.md"}
    for path in source_files("rules/quirks", "rules/schema", "dashboards/grafana", "dashboards/prometheus"):
        files.add("/usr/share/imapscope/" + path)
    return files


def listed(root):
    out = set()
    for folder, _, files in os.walk(root):
        for name in files:
            out.add("/" + os.path.relpath(os.path.join(folder, name), root))
    return out


def self_signed(directory):
    cert, key = os.path.join(directory, "cert.pem"), os.path.join(directory, "key.pem")
    result = run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                  "-days", "2", "-subj", "/CN=localhost", "-keyout", key, "-out", cert])
    assert result.returncode == 0, result.stderr
    os.chmod(key, 0o600)
    return cert, key


def help_flags():
    text = run([imapscope_binary(), "--help"]).stdout
    return sorted(set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]+", text)))


class Destdir(unittest.TestCase):
    def setUp(self):
        self.dir = temp_dir(prefix="imapscope-install-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        manifest = os.path.join(BUILD_DIR, "install_manifest.txt")
        if not os.path.exists(manifest):
            self.addCleanup(lambda: os.path.exists(manifest) and os.remove(manifest))

    def install(self, prefix, destdir=None):
        env = dict(os.environ)
        env.pop("DESTDIR", None)
        if destdir:
            env["DESTDIR"] = destdir
        result = run(["cmake", "--install", BUILD_DIR, "--prefix", prefix], env=env)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)

    def test_files_land_where_debian_puts_them(self):
        root = os.path.join(self.dir, "root")
        self.install("/usr", root)
        expected = {"/usr/sbin/imapscope", "/usr/share/man/man8/imapscope.8", "/etc/imapscope/imapscope.json",
                    "/lib/systemd/system/imapscope.service", "/usr/share/doc/imapscope/README.md"}
        expected |= {"/usr/share/doc/imapscope/" + os.path.basename(page) for page in source_files("docs")
                     if page.endswith(".md")}
        self.assertIn("/usr/share/doc/imapscope/configuration.md", expected)
        expected |= expected_share_files()
        self.assertEqual(listed(root), expected)
        self.assertTrue(os.stat(root + "/usr/sbin/imapscope").st_mode & stat.S_IXOTH)
        self.assertEqual(stat.S_IMODE(os.stat(root + "/etc/imapscope/imapscope.json").st_mode), 0o644)
        with open(root + "/lib/systemd/system/imapscope.service") as f:
            unit = f.read().splitlines()
        self.assertIn("ExecStart=/usr/sbin/imapscope --config /etc/imapscope/imapscope.json", unit)
        for line in HARDENING:
            self.assertIn(line, unit)

    def test_default_config_passes_check_config(self):
        root = os.path.join(self.dir, "root")
        self.install("/usr", root)
        with open(root + "/etc/imapscope/imapscope.json") as f:
            config = json.load(f)
        self.assertEqual(config["user"], "imapscope")
        self.assertEqual(config["state_dir"], "/var/lib/imapscope")
        self.assertEqual(sorted(l["listen"] for l in config["listeners"]), ["0.0.0.0:143", "0.0.0.0:993"])
        # The package makes the user and the certificate; here, stand-ins.
        cert, key = self_signed(self.dir)
        for listener in config["listeners"]:
            self.assertTrue(listener["cert"].startswith("/etc/imapscope/tls/"))
            listener["cert"], listener["key"] = cert, key
        config["user"] = "nobody"
        copy = os.path.join(self.dir, "imapscope.json")
        with open(copy, "w") as f:
            json.dump(config, f)
        result = run([root + "/usr/sbin/imapscope", "--check-config", copy])
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertIn("config OK", result.stdout)
        self.assertIn("listener imaps: 0.0.0.0:993 tls=implicit", result.stdout)
        self.assertIn("plaintext_login=refuse", result.stdout)

    def test_man_page_renders_and_names_every_flag(self):
        page = os.path.join(SOURCE_DIR, "dist", "man", "imapscope.8")
        result = run(["groff", "-man", "-Tutf8", "-ww", "-z", page], env=dict(os.environ, LC_ALL="C.UTF-8"))
        self.assertEqual((result.returncode, result.stderr), (0, ""))
        with open(page) as f:
            text = f.read().replace("\\-", "-")
        flags = help_flags()
        self.assertIn("--check-config", flags)
        missing = [flag for flag in flags if flag not in text]
        self.assertEqual(missing, [], "flags of --help missing from dist/man/imapscope.8")

    def test_systemd_analyze_verify(self):
        prefix = os.path.join(self.dir, "prefix")
        self.install(prefix)
        unit = prefix + "/lib/systemd/system/imapscope.service"
        with open(unit) as f:
            self.assertIn(f"ExecStart={prefix}/sbin/imapscope --config {prefix}/etc/imapscope/imapscope.json", f.read())
        # verify also runs `man imapscope(8)` for Documentation=: the installed page.
        result = run(["systemd-analyze", "verify", unit], env=dict(os.environ, MANPATH=prefix + "/share/man"))
        self.assertEqual((result.returncode, result.stdout + result.stderr), (0, ""))


def executable(pid):
    try:
        return os.readlink(f"/proc/{pid}/exe")
    except OSError:  # gone, or a kernel thread
        return None


def installed_version(package):
    result = run(["dpkg-query", "-W", "-f=${Status}", package])
    return result.returncode == 0 and "installed" in result.stdout and "not-installed" not in result.stdout


def user_exists(name):
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


def group_exists(name):
    try:
        grp.getgrnam(name)
        return True
    except KeyError:
        return False


LEFTOVERS = ["/usr/sbin/imapscope", "/etc/imapscope", "/var/lib/imapscope", "/var/log/imapscope",
             "/lib/systemd/system/imapscope.service", "/usr/share/imapscope", "/usr/share/doc/imapscope",
             "/usr/share/man/man8/imapscope.8.gz"]


def tree_copy(destination):
    """The tree as git sees it (tracked and new files, no build output)."""
    listing = run(["git", "-C", SOURCE_DIR, "ls-files", "-co", "--exclude-standard", "-z"])
    if listing.returncode == 0:
        names = [n for n in listing.stdout.split("\0") if n and not n.startswith("build/")]
        for name in names:
            source = os.path.join(SOURCE_DIR, name)
            if not os.path.isfile(source):
                continue  # deleted but not yet committed
            os.makedirs(os.path.dirname(os.path.join(destination, name)), exist_ok=True)
            shutil.copy2(source, os.path.join(destination, name))
    else:
        shutil.copytree(SOURCE_DIR, destination, symlinks=True,
                        ignore=shutil.ignore_patterns("build", ".git", "obj-*", "__pycache__"))


class DebianPackage(unittest.TestCase):
    def setUp(self):
        if os.geteuid() != 0:
            self.fail("needs root: it installs and purges the package")
        # Never touch an administrator's own installation or account.
        self.assertFalse(installed_version("imapscope"), "a package imapscope is installed: not touching it")
        self.assertFalse(user_exists("imapscope"), "a user imapscope exists already: its purge would delete it")
        # Files of an installation by hand, or state a proxy made with the default
        # state_dir, are moved aside while the package owns these paths, and put back.
        for path in LEFTOVERS:
            if os.path.lexists(path):
                aside = f"{path}.before-package-test-{os.getpid()}"
                os.rename(path, aside)
                self.addCleanup(self.put_back, aside, path)
        # A fixed folder in the build tree (not /tmp, not the source tree's files), so
        # ccache finds the previous run's objects: its paths are in the compile flags.
        self.work = os.path.join(BUILD_DIR, "package-test")
        shutil.rmtree(self.work, ignore_errors=True)
        self.addCleanup(shutil.rmtree, self.work, True)
        self.addCleanup(self.purge_if_installed)

    @staticmethod
    def put_back(aside, path):
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        elif os.path.lexists(path):
            os.remove(path)
        os.rename(aside, path)

    def purge_if_installed(self):
        if installed_version("imapscope") or run(["dpkg-query", "-W", "imapscope"]).returncode == 0:
            run(["dpkg", "--purge", "imapscope"], timeout=300)

    def build(self):
        source = os.path.join(self.work, "imapscope")
        tree_copy(source)
        env = dict(os.environ, DEB_BUILD_OPTIONS="nocheck noddebs parallel=2",
                   DEB_CXXFLAGS_STRIP="-g")  # the symbols would be stripped anyway: not compiled at all
        if shutil.which("ccache"):
            # debhelper gives the build an empty HOME: ccache's own folder and settings by name.
            cache_dir = run(["ccache", "-k", "cache_dir"]).stdout.strip()
            env.update(CMAKE_CXX_COMPILER_LAUNCHER="ccache", CCACHE_DIR=cache_dir)
            config = os.path.expanduser("~/.config/ccache/ccache.conf")
            if os.path.exists(config):
                env["CCACHE_CONFIGPATH"] = config
        started = time.monotonic()
        result = run(["dpkg-buildpackage", "-b", "-us", "-uc"], cwd=source, env=env, timeout=1200)
        self.assertEqual(result.returncode, 0, result.stdout[-4000:] + result.stderr[-4000:])
        print(f"package built in {time.monotonic() - started:.0f} s", file=sys.stderr)
        packages = glob.glob(os.path.join(self.work, "imapscope_*.deb"))
        self.assertEqual(len(packages), 1, os.listdir(self.work))
        return packages[0]

    def apt(self, *args):
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        result = run(["apt-get", "-y", "-q", "--no-install-recommends"] + list(args), env=env, timeout=600)
        self.assertEqual(result.returncode, 0, result.stdout[-4000:] + result.stderr[-4000:])

    def test_build_install_check_remove_purge(self):
        deb = self.build()
        self.apt("install", deb)
        self.assertTrue(installed_version("imapscope"))

        # The service user: system, no shell, no login.
        user = pwd.getpwnam("imapscope")
        self.assertLess(user.pw_uid, 1000)
        self.assertEqual(user.pw_shell, "/usr/sbin/nologin")
        self.assertEqual(grp.getgrgid(user.pw_gid).gr_name, "imapscope")
        state = os.stat("/var/lib/imapscope")
        self.assertEqual((state.st_uid, state.st_gid, stat.S_IMODE(state.st_mode)), (user.pw_uid, user.pw_gid, 0o700))

        for path in ["/usr/sbin/imapscope", "/etc/imapscope/imapscope.json", "/lib/systemd/system/imapscope.service",
                     "/usr/share/man/man8/imapscope.8.gz", "/usr/share/doc/imapscope/operations.md.gz",
                     "/usr/share/doc/imapscope/copyright"] + sorted(expected_share_files()):
            self.assertTrue(os.path.isfile(path), path)
        conffiles = run(["dpkg-query", "-W", "-f=${Conffiles}", "imapscope"]).stdout
        self.assertIn("/etc/imapscope/imapscope.json", conffiles)

        # The certificate made for the default config: the key for root and the service only.
        key = os.stat("/etc/imapscope/tls/imapscope.key")
        self.assertEqual((key.st_uid, key.st_gid, stat.S_IMODE(key.st_mode)), (0, user.pw_gid, 0o640))
        self.assertTrue(os.path.isfile("/etc/imapscope/tls/imapscope.pem"))

        check = run(["/usr/sbin/imapscope", "--check-config", "/etc/imapscope/imapscope.json"])
        self.assertEqual(check.returncode, 0, check.stdout + check.stderr)
        self.assertIn("config OK", check.stdout)
        self.assertIn("runs as: user imapscope", check.stdout)
        # As the unit starts it: the service user reads its key.
        as_user = run(["setpriv", "--reuid=imapscope", "--regid=imapscope", "--init-groups", "/usr/sbin/imapscope",
                       "--check-config", "/etc/imapscope/imapscope.json"])
        self.assertEqual(as_user.returncode, 0, as_user.stdout + as_user.stderr)

        verify = run(["systemd-analyze", "verify", "/lib/systemd/system/imapscope.service"])
        self.assertEqual((verify.returncode, verify.stdout + verify.stderr), (0, ""))
        self.assertEqual(run(["man", "-w", "imapscope"]).stdout.strip(), "/usr/share/man/man8/imapscope.8.gz")

        # Nothing enabled, nothing started.
        self.assertEqual(glob.glob("/etc/systemd/system/*.wants/imapscope.service"), [])
        self.assertEqual([pid for pid in os.listdir("/proc") if pid.isdigit() and executable(pid) == "/usr/sbin/imapscope"],
                         [])

        # What a running service would have made, for the purge to remove.
        with open("/var/lib/imapscope/admin-token", "w") as f:
            f.write("x" * 32 + "\n")
        os.makedirs("/var/log/imapscope", exist_ok=True)
        with open("/var/log/imapscope/transcript.jsonl", "w") as f:
            f.write("{}\n")

        self.apt("remove", "imapscope")
        self.assertFalse(os.path.exists("/usr/sbin/imapscope"))
        self.assertTrue(os.path.isfile("/etc/imapscope/imapscope.json"), "remove keeps the config")
        self.assertTrue(os.path.isfile("/var/lib/imapscope/admin-token"), "remove keeps the state")
        self.assertTrue(user_exists("imapscope"), "remove keeps the user")

        self.apt("purge", "imapscope")
        self.assertFalse(installed_version("imapscope"))
        self.assertNotEqual(run(["dpkg-query", "-W", "imapscope"]).returncode, 0, "dpkg forgets it")
        self.assertEqual([p for p in LEFTOVERS if os.path.lexists(p)], [])
        self.assertFalse(user_exists("imapscope"))
        self.assertFalse(group_exists("imapscope"))
        helper_state = glob.glob("/var/lib/systemd/deb-systemd-helper-*/**/imapscope*", recursive=True)
        self.assertEqual(helper_state, [])


if __name__ == "__main__":
    unittest.main(verbosity=2)
