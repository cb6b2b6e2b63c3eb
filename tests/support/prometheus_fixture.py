"""A private Prometheus (the Debian package) on loopback, scraping the given targets
every second, stopped by its pid."""
import json
import os
import shutil
import subprocess
import urllib.parse
import urllib.request

from imap_fixtures import free_port, start_process, stop_process, temp_dir, wait_for_port

SCRAPE = "1s"


def http_json(url, timeout=10):
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())


class Prometheus:
    def __init__(self, targets, scrape_config=None):
        """targets: "host:port" or a list of them; scrape_config: a whole
        scrape_configs section (YAML text) instead, for recipes that bring their own."""
        if isinstance(targets, str):
            targets = [targets]
        self.dir = temp_dir(prefix="imapscope-prometheus-")
        self.port = free_port()
        config = os.path.join(self.dir, "prometheus.yml")
        if scrape_config is None:
            listed = ", ".join(f"'{t}'" for t in targets)
            scrape_config = (f"scrape_configs:\n  - job_name: imapscope\n    static_configs:\n"
                             f"      - targets: [{listed}]\n")
        with open(config, "w") as f:
            f.write(f"global:\n  scrape_interval: {SCRAPE}\n  evaluation_interval: {SCRAPE}\n" + scrape_config)
        self.proc = start_process(
            ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={self.dir}/data",
             f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
            os.path.join(self.dir, "prometheus.log"), stdout=subprocess.DEVNULL)
        wait_for_port(self.port, timeout=60, proc=self.proc)
        self.url = f"http://127.0.0.1:{self.port}"

    def query(self, expr):
        return http_json(f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))

    def stop(self):
        stop_process(self.proc, timeout=30)
        shutil.rmtree(self.dir, ignore_errors=True)
