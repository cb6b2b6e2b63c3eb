"""nginx's mail proxy (Debian's nginx with libnginx-mod-mail) as a reference for
routing mode: an IMAP listener on loopback asking an auth_http service where each
user goes, started in a temp dir of its own (prefix, config, pid and logs there,
never the system's) and stopped by its pid.

nginx runs in the foreground (daemon off) with one worker, as root with `user` set
to the tests' unprivileged mail user: the worker needs to read nothing of ours.
"""
import os
import shutil
import subprocess

from imap_fixtures import MAIL_USER, ensure_mail_user, free_port, start_process, stop_process, temp_dir, \
    wait_for_port

NGINX = "/usr/sbin/nginx"
MAIL_MODULE = "/usr/lib/nginx/modules/ngx_mail_module.so"


def missing():
    """Why nginx's mail proxy can't run here (None when it can): for skipIf."""
    for path in (NGINX, MAIL_MODULE):
        if not os.path.exists(path):
            return f"not installed: {path} (scripts/deps: nginx libnginx-mod-mail)"
    return None


class NginxMail:
    """nginx's IMAP proxy asking auth_url (host:port/path, as nginx's directive takes
    it) where each user goes: a plain listener (port); with certs also an
    implicit-TLS one (tls_port); with proxy_from (CIDR) also one that takes a PROXY
    header from there (proxy_port), the client's address from it (set_real_ip_from)."""

    def __init__(self, auth_url, imap_auth="plain login", certs=None, proxy_from=None):
        ensure_mail_user()
        self.dir = temp_dir(prefix="imapscope-nginx-")
        self.port = free_port()
        self.tls_port = free_port() if certs else None
        self.proxy_port = free_port() if proxy_from else None
        self.pid_path = os.path.join(self.dir, "nginx.pid")
        self.error_log = os.path.join(self.dir, "error.log")
        self.config = os.path.join(self.dir, "nginx.conf")
        target = auth_url.split("://", 1)[-1]
        servers = [f"listen 127.0.0.1:{self.port};"]
        if certs:
            servers.append(f"listen 127.0.0.1:{self.tls_port} ssl;\n"
                           f"    ssl_certificate {certs['cert']};\n    ssl_certificate_key {certs['key']};")
        if proxy_from:
            servers.append(f"listen 127.0.0.1:{self.proxy_port} proxy_protocol;\n"
                           f"    set_real_ip_from {proxy_from};")
        blocks = "".join(f"""  server {{
    {listen}
    protocol imap;
    imap_auth {imap_auth};
  }}
""" for listen in servers)
        with open(self.config, "w") as f:
            f.write(f"""load_module {MAIL_MODULE};
user {MAIL_USER};
worker_processes 1;
daemon off;
pid {self.pid_path};
error_log {self.error_log} info;
events {{
  worker_connections 64;
}}
mail {{
  auth_http {target};
  auth_http_timeout 5s;
{blocks}}}
""")
        self.proc = None

    def start(self):
        # -e: the error log before the config is read (else /var/log/nginx/error.log).
        self.proc = start_process([NGINX, "-p", self.dir, "-c", self.config, "-e", self.error_log],
                                  os.path.join(self.dir, "stderr.log"), stdout=subprocess.DEVNULL)
        for port in (self.port, self.tls_port, self.proxy_port):
            if port:
                wait_for_port(port, proc=self.proc)
        return self

    def stop(self):
        # SIGTERM: nginx's fast shutdown, the master stops its worker.
        stop_process(self.proc)
        shutil.rmtree(self.dir, ignore_errors=True)

    def log(self):
        try:
            with open(self.error_log) as f:
                return f.read()
        except OSError:
            return ""
