"""nginx's mail proxy (Debian's libnginx-mod-mail) as a path of relay_bench.

nginx answers the greeting and LOGIN itself, asks an HTTP auth service where the
user's server is, logs in there with the same credentials and relays raw bytes from
then on. It can terminate TLS on the client leg but speaks only plain IMAP to the
server, so it has no TLS->TLS set-up. The auth service here is a thread of the
benchmark (http.server on 127.0.0.1) that sends every user to the benchmark's
Dovecot; nginx runs as `nginx -p <workdir> -c <own conf>` with its own pid and log
files, never as the system service.
"""
import http.server
import os
import shutil
import subprocess
import threading

MODULE = "/usr/lib/nginx/modules/ngx_mail_module.so"


def ensure_nginx(install):
    """Installs nginx and its mail module with apt-get when missing (install: the
    benchmark's apt helper, which keeps Debian from starting the service)."""
    if shutil.which("nginx") and os.path.exists(MODULE):
        return
    install(["nginx-light", "libnginx-mod-mail"])


def nginx_version():
    out = subprocess.run(["nginx", "-v"], capture_output=True, text=True)
    return (out.stderr or out.stdout).strip().split("/")[-1]


class AuthService:
    """nginx's auth_http: every login goes to (host, port)."""

    def __init__(self, host, port):
        target = (host, port)

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200)
                self.send_header("Auth-Status", "OK")
                self.send_header("Auth-Server", target[0])
                self.send_header("Auth-Port", str(target[1]))
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def nginx_argv(port, setup, dovecot, workdir, auth_port, label="", workers=2, connections=10000):
    """Writes nginx's config for a set-up (tls-plain or plain) and returns its command line."""
    if setup == "tls-tls":
        raise ValueError("nginx's mail proxy has no TLS towards the server")
    name = f"nginx-{label}{setup}"
    ssl = ""
    if setup == "tls-plain":
        ssl = (f"ssl_certificate {dovecot.certs['cert']};\n    ssl_certificate_key {dovecot.certs['key']};\n"
               "    ssl_protocols TLSv1.2 TLSv1.3;\n    ssl_session_cache shared:mail:10m;")
    conf = os.path.join(workdir, f"{name}.conf")
    with open(conf, "w") as f:
        f.write(f"""load_module {MODULE};
daemon off;
master_process on;
worker_processes {workers};
worker_rlimit_nofile {2 * connections + 100};
pid {workdir}/{name}.pid;
error_log {workdir}/{name}-error.log warn;
events {{
  worker_connections {connections};
}}
mail {{
  server_name localhost;
  auth_http 127.0.0.1:{auth_port}/auth;
  proxy on;
  proxy_pass_error_message on;
  imap_capabilities IMAP4rev1 LITERAL+ SASL-IR ID ENABLE IDLE;
  server {{
    listen 127.0.0.1:{port}{" ssl" if ssl else ""};
    protocol imap;
    {ssl}
  }}
}}
""")
    check = subprocess.run(["nginx", "-t", "-q", "-p", workdir, "-e", f"{workdir}/{name}-error.log", "-c", conf],
                           capture_output=True, text=True)
    if check.returncode != 0:
        raise RuntimeError(f"nginx -t {conf}: {check.stdout}{check.stderr}")
    return ["nginx", "-p", workdir, "-e", f"{workdir}/{name}-error.log", "-c", conf]
