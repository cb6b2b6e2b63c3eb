#!/usr/bin/env python3
"""Writes the Grafana dashboards (grafana/dashboards/*.json) from the panel lists
below: dashboards as code, so every panel has the same variables and layout, and a
test can check that the JSON files are what this script makes (`--check`).

Every panel's query uses only imapscope's public metric names (docs/metrics.md)
and two variables: $datasource (a Prometheus data source) and $instance (one or more
imapscope instances)."""
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
SEL = 'instance=~"$instance"'


def q(expr, legend):
    return {"expr": expr, "legendFormat": legend}


def panel(title, description, targets, unit="short", kind="timeseries", stack=False):
    return {"title": title, "description": description, "targets": targets, "unit": unit, "kind": kind,
            "stack": stack}


def row(title):
    """A row header: the panels after it, up to the next row, are its own."""
    return {"title": title, "kind": "row"}


OVERVIEW = ("imapscope-overview", "imapscope: overview", [
    panel("Sessions open", "Sessions open now, per listener and TLS mode.",
          [q(f'sum by (listener, tls) (imapscope_sessions_active{{{SEL}}})', "{{listener}} {{tls}}")]),
    panel("New sessions /s", "Sessions accepted per second, per listener.",
          [q(f'sum by (listener) (rate(imapscope_sessions_total{{{SEL}}}[$__rate_interval]))', "{{listener}}")],
          unit="ops"),
    panel("Commands /s", "Commands answered per second, by command (top 10).",
          [q(f'topk(10, sum by (command) (rate(imapscope_commands_total{{{SEL}}}[$__rate_interval])))', "{{command}}")],
          unit="ops", stack=True),
    panel("Error ratio", "Share of commands answered NO or BAD (a NO is often the user's doing: a BAD rarely is).",
          [q(f'sum(rate(imapscope_commands_total{{{SEL},result=~"no|bad"}}[$__rate_interval])) '
             f'/ clamp_min(sum(rate(imapscope_commands_total{{{SEL}}}[$__rate_interval])), 1e-9)', "NO+BAD"),
           q(f'sum(rate(imapscope_commands_total{{{SEL},result="bad"}}[$__rate_interval])) '
             f'/ clamp_min(sum(rate(imapscope_commands_total{{{SEL}}}[$__rate_interval])), 1e-9)', "BAD")],
          unit="percentunit"),
    panel("Command latency p50", "Command line complete to tagged answer, median, by command (IDLE excluded).",
          [q(f'histogram_quantile(0.5, sum by (le, command) (rate(imapscope_command_duration_seconds_bucket{{{SEL}}}[$__rate_interval])))', "{{command}}")],
          unit="s"),
    panel("Command latency p95", "95th percentile, by command.",
          [q(f'histogram_quantile(0.95, sum by (le, command) (rate(imapscope_command_duration_seconds_bucket{{{SEL}}}[$__rate_interval])))', "{{command}}")],
          unit="s"),
    panel("Command latency p99", "99th percentile, by command.",
          [q(f'histogram_quantile(0.99, sum by (le, command) (rate(imapscope_command_duration_seconds_bucket{{{SEL}}}[$__rate_interval])))', "{{command}}")],
          unit="s"),
    panel("Bytes /s", "Bytes read from each side, and the part of them that is literal payload (message bodies).",
          [q(f'sum by (direction) (rate(imapscope_bytes_total{{{SEL}}}[$__rate_interval]))', "{{direction}}"),
           q(f'sum by (direction) (rate(imapscope_literal_bytes_total{{{SEL}}}[$__rate_interval]))', "literal {{direction}}")],
          unit="Bps"),
    panel("Commands in flight", "Commands sent and not answered yet: a stuck server shows here first.",
          [q(f'sum(imapscope_commands_in_flight{{{SEL}}})', "in flight")]),
    panel("Sessions in IDLE", "Sessions waiting in IDLE, and the server's keepalives per second.",
          [q(f'sum(imapscope_idle_sessions{{{SEL}}})', "in IDLE"),
           q(f'sum(rate(imapscope_idle_keepalives_total{{{SEL}}}[$__rate_interval]))', "keepalives /s")]),
    panel("Session close reasons /s", "Why sessions end.",
          [q(f'sum by (reason) (rate(imapscope_sessions_closed_total{{{SEL}}}[$__rate_interval]))', "{{reason}}")],
          unit="ops", stack=True),
])

CLIENTS = ("imapscope-clients", "imapscope: clients", [
    panel("Sessions by client", "Sessions open now, by client family (ID, or tags and commands).",
          [q(f'sum by (client) (imapscope_client_sessions_active{{{SEL}}})', "{{client}}")], stack=True),
    panel("Commands /s by client", "Which clients make the load.",
          [q(f'sum by (client) (rate(imapscope_commands_total{{{SEL}}}[$__rate_interval]))', "{{client}}")],
          unit="ops", stack=True),
    panel("Errors by client", "NO and BAD per second, by client: a client that gets BAD is often a client bug.",
          [q(f'sum by (client, result) (rate(imapscope_commands_total{{{SEL},result=~"no|bad"}}[$__rate_interval]))', "{{client}} {{result}}")],
          unit="ops"),
    panel("Latency p95 by client", "95th percentile of command latency, by client family.",
          [q(f'histogram_quantile(0.95, sum by (le, client) (rate(imapscope_command_duration_seconds_bucket{{{SEL}}}[$__rate_interval])))', "{{client}}")],
          unit="s"),
    panel("How clients were identified", "Identifications per second by method: id (RFC 2971 ID), heuristic (tags and commands), unknown.",
          [q(f'sum by (method) (rate(imapscope_client_identified_total{{{SEL}}}[$__rate_interval]))', "{{method}}")],
          unit="ops", stack=True),
    panel("Identified clients (total)", "Sessions per client family and method since start.",
          [q(f'sum by (client, method) (imapscope_client_identified_total{{{SEL}}})', "{{client}} {{method}}")],
          kind="bargauge"),
    panel("Rule hits /s", "Messages each rewrite rule matched.",
          [q(f'sum by (rule) (rate(imapscope_rule_hits_total{{{SEL}}}[$__rate_interval]))', "{{rule}}")],
          unit="ops"),
    panel("Authentications by mechanism", "LOGIN / AUTHENTICATE results per second, by mechanism (never user names).",
          [q(f'sum by (mechanism, result) (rate(imapscope_authentications_total{{{SEL}}}[$__rate_interval]))', "{{mechanism}} {{result}}")],
          unit="ops"),
    panel("Findings /s", "Client behaviours the diagnostics found, by finding: full resyncs, IDLE churn, keepalive "
          "wake-ups, error loops, login failure storms... (docs/diagnostics.md: what each means and what fixes it; "
          "the live view and the log name the sessions).",
          [q(f'sum by (finding) (rate(imapscope_findings_total{{{SEL}}}[$__rate_interval]))', "{{finding}}")],
          unit="ops", stack=True),
    panel("Findings by client (total)", "Which client families show which behaviour, since start.",
          [q(f'sum by (finding, client) (imapscope_findings_total{{{SEL}}})', "{{client}} {{finding}}")],
          kind="bargauge"),
    panel("Full resync bytes /s", "What the server sent for whole-mailbox flag sweeps (FETCH 1:* (UID FLAGS)), by "
          "client: bandwidth that CONDSTORE/QRESYNC would save.",
          [q(f'sum by (client) (rate(imapscope_full_resync_bytes_total{{{SEL}}}[$__rate_interval]))', "{{client}}")],
          unit="Bps"),
])

HEALTH = ("imapscope-health", "imapscope: health", [
    panel("TLS handshake failures /s", "Failed TLS handshakes, client side (the proxy's certificate) and upstream.",
          [q(f'sum by (side) (rate(imapscope_tls_handshakes_total{{{SEL},result="failed"}}[$__rate_interval]))', "{{side}}")],
          unit="ops"),
    panel("TLS versions", "TLS sessions established per second, by side and version.",
          [q(f'sum by (side, version) (rate(imapscope_tls_sessions_total{{{SEL}}}[$__rate_interval]))', "{{side}} {{version}}")],
          unit="ops"),
    panel("Upstream connect time p99", "Connecting to the mail server up to its greeting (TLS included).",
          [q(f'histogram_quantile(0.99, sum by (le) (rate(imapscope_upstream_connect_seconds_bucket{{{SEL}}}[$__rate_interval])))', "p99"),
           q(f'histogram_quantile(0.5, sum by (le) (rate(imapscope_upstream_connect_seconds_bucket{{{SEL}}}[$__rate_interval])))', "p50")],
          unit="s"),
    panel("Upstream connections /s", "Connections to the mail server, by result: failures mean clients got BYE [UNAVAILABLE].",
          [q(f'sum by (result) (rate(imapscope_upstream_connects_total{{{SEL}}}[$__rate_interval]))', "{{result}}")],
          unit="ops"),
    panel("Protocol errors /s", "Messages refused by a decoder limit, by direction and kind.",
          [q(f'sum by (direction, kind) (rate(imapscope_protocol_errors_total{{{SEL}}}[$__rate_interval]))', "{{direction}} {{kind}}")],
          unit="ops"),
    panel("Rule reloads", "SIGHUP reloads of the rule files, by result (failed: the old rules stayed).",
          [q(f'sum by (result) (imapscope_reloads_total{{{SEL}}})', "{{result}}"),
           q(f'sum(imapscope_rules_loaded{{{SEL}}})', "rules loaded")]),
    panel("CPU", "CPU seconds per second of the imapscope process.",
          [q(f'rate(process_cpu_seconds_total{{{SEL}}}[$__rate_interval])', "{{instance}}")], unit="percentunit"),
    panel("Memory", "Resident memory of the imapscope process.",
          [q(f'process_resident_memory_bytes{{{SEL}}}', "{{instance}}")], unit="bytes"),
    panel("Open file descriptors", "Two per session, plus listeners; against the limit.",
          [q(f'process_open_fds{{{SEL}}}', "open {{instance}}"), q(f'process_max_fds{{{SEL}}}', "limit {{instance}}")]),
    panel("Session length p50", "How long sessions last (IDLE clients stay for hours).",
          [q(f'histogram_quantile(0.5, sum by (le) (rate(imapscope_session_duration_seconds_bucket{{{SEL}}}[$__rate_interval])))', "p50")],
          unit="s"),
    # Routing mode (a route map or lookup service): its series exist only there.
    row("Backends"),
    panel("Sessions per backend", "Sessions relayed to each backend now (\"other\": backends past the bound of "
          "64 learnt from lookups).",
          [q(f'sum by (backend) (imapscope_backend_sessions{{{SEL}}})', "{{backend}}")], stack=True),
    panel("Backends up and drained", "1 while a backend's health checks pass; 1 while an operator drains it "
          "(no new sessions there, running ones go on).",
          [q(f'max by (backend) (imapscope_backend_up{{{SEL}}})', "{{backend}} up"),
           q(f'max by (backend) (imapscope_backend_draining{{{SEL}}})', "{{backend}} draining")]),
    panel("Route lookups /s", "Lookups by source (map, http, cache) and result: refused is the lookup's NO, "
          "unavailable a lookup service down, slow or answering garbage (clients get NO [UNAVAILABLE]).",
          [q(f'sum by (source, result) (rate(imapscope_route_lookups_total{{{SEL}}}[$__rate_interval]))', "{{source}} {{result}}")],
          unit="ops"),
    panel("Lookup latency p50 / p99", "How long lookups take, by source (the cache answers in microseconds, the "
          "lookup service in milliseconds).",
          [q(f'histogram_quantile(0.5, sum by (le, source) (rate(imapscope_route_lookup_seconds_bucket{{{SEL}}}[$__rate_interval])))', "p50 {{source}}"),
           q(f'histogram_quantile(0.99, sum by (le, source) (rate(imapscope_route_lookup_seconds_bucket{{{SEL}}}[$__rate_interval])))', "p99 {{source}}")],
          unit="s"),
    panel("Replayed logins /s", "Logins replayed to the backend, by result: ok, no (the backend's NO: a wrong "
          "password), failed (no backend reached, or the replay broke off).",
          [q(f'sum by (result) (rate(imapscope_route_logins_total{{{SEL}}}[$__rate_interval]))', "{{result}}")],
          unit="ops", stack=True),
    panel("Health checks /s", "Health checks by backend and result: failed checks take a backend out after "
          "the configured count (fall).",
          [q(f'sum by (backend, result) (rate(imapscope_backend_checks_total{{{SEL}}}[$__rate_interval]))', "{{backend}} {{result}}")],
          unit="ops"),
])


WIDTH, HEIGHT = 12, 8


def grafana_panel(p, index, position):
    panel_json = {
        "id": index + 1,
        "type": "bargauge" if p["kind"] == "bargauge" else "timeseries",
        "title": p["title"],
        "description": p["description"],
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "gridPos": {"h": HEIGHT, "w": WIDTH, **position},
        "fieldConfig": {"defaults": {"unit": p["unit"]}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}, "tooltip": {"mode": "multi"}},
        "targets": [dict(t, refId=chr(ord("A") + i), datasource={"type": "prometheus", "uid": "${datasource}"})
                    for i, t in enumerate(p["targets"])],
    }
    if p["kind"] == "timeseries":
        panel_json["fieldConfig"]["defaults"]["custom"] = {"stacking": {"mode": "normal" if p["stack"] else "none"},
                                                           "fillOpacity": 10}
    return panel_json


def dashboard(uid, title, panels):
    return {
        "uid": uid,
        "title": title,
        "tags": ["imapscope", "imap"],
        "timezone": "browser",
        "schemaVersion": 38,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-1h", "to": "now"},
        "links": [{"type": "dashboards", "tags": ["imapscope"], "title": "imapscope", "asDropdown": True}],
        "templating": {"list": [
            {"name": "datasource", "label": "Data source", "type": "datasource", "query": "prometheus",
             "current": {}, "hide": 0},
            {"name": "instance", "label": "Instance", "type": "query",
             "datasource": {"type": "prometheus", "uid": "${datasource}"},
             "query": {"query": "label_values(imapscope_sessions_total, instance)", "refId": "instance"},
             "definition": "label_values(imapscope_sessions_total, instance)",
             "refresh": 2, "multi": True, "includeAll": True, "allValue": ".*", "current": {}, "hide": 0},
        ]},
        "panels": grafana_panels(panels),
    }


def grafana_panels(panels):
    """Two panels a line; a row header takes a line of its own and starts a new one."""
    out, y, column = [], 0, 0
    for index, p in enumerate(panels):
        if p["kind"] == "row":
            y += HEIGHT if column else 0
            out.append({"id": index + 1, "type": "row", "title": p["title"], "collapsed": False,
                        "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}, "panels": []})
            y, column = y + 1, 0
            continue
        out.append(grafana_panel(p, index, {"x": column * WIDTH, "y": y}))
        column = (column + 1) % 2
        y += HEIGHT if column == 0 else 0
    return out


def rendered():
    return {f"{uid}.json": json.dumps(dashboard(uid, title, panels), indent=2) + "\n"
            for uid, title, panels in (OVERVIEW, CLIENTS, HEALTH)}


def main():
    out_dir = os.path.join(HERE, "grafana", "dashboards")
    stale = []
    for name, text in rendered().items():
        path = os.path.join(out_dir, name)
        if "--check" in sys.argv:
            with open(path) as f:
                if f.read() != text:
                    stale.append(path)
        else:
            with open(path, "w") as f:
                f.write(text)
    if stale:
        sys.exit("out of date (run dashboards/build.py): " + ", ".join(stale))


if __name__ == "__main__":
    main()
