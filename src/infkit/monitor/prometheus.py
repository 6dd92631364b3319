"""neuron-monitor reports -> Prometheus text, with the metric names and labels of the exporter that ships
with the Neuron SDK (neuron-monitor-prometheus.py), so dashboards built for one work with the other.

Gauges show the latest report. The `*_total` counters add up each report's per-period counts
(execution_stats and neuron_hw_counters count events in the captured period), as the SDK's exporter does."""

from __future__ import annotations

import threading
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from infkit.monitor.schema import (
    CORE_MEMORY,
    ECC_EVENTS,
    ERROR_TYPES,
    STATUS_TYPES,
    Report,
)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# name -> (type, help); the order of the exposition
METRICS = {
    "neuroncore_utilization_ratio": ("gauge", "NeuronCore utilization ratio"),
    "neuron_runtime_memory_used_bytes": ("gauge", "Runtime memory used bytes"),
    **{f"neuroncore_memory_usage_{c}": ("gauge", f"NeuronCore memory utilization for {c}") for c in CORE_MEMORY},
    "execution_latency_seconds": ("gauge", "Execution latency in seconds"),
    "execution_errors_total": ("counter", "Execution errors total"),
    "execution_status_total": ("counter", "Execution status total"),
    "neuron_runtime_vcpu_usage_ratio": ("gauge", "Runtime vCPU utilization ratio"),
    "system_memory_total_bytes": ("gauge", "System memory total_bytes bytes"),
    "system_memory_used_bytes": ("gauge", "System memory used_bytes bytes"),
    "system_swap_total_bytes": ("gauge", "System swap total_bytes bytes"),
    "system_swap_used_bytes": ("gauge", "System swap used_bytes bytes"),
    "system_vcpu_count": ("gauge", "System vCPU count"),
    "system_vcpu_usage_ratio": ("gauge", "System CPU utilization ratio"),
    "hardware_ecc_events_total": ("counter", "Hardware ecc events total"),
    "instance_info": ("gauge", "EC2 instance information"),
    "neuron_monitor_reports_total": ("counter", "neuron-monitor reports read by infkit's exporter"),
    "neuron_monitor_skipped_lines_total": ("counter", "Input lines that were not neuron-monitor reports"),
}


def escape(value: str) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def sample(name: str, labels: dict[str, str], value: float) -> str:
    inner = ",".join(f'{k}="{escape(v)}"' for k, v in sorted(labels.items()))
    return f"{name}{{{inner}}} {float(value)!r}" if inner else f"{name} {float(value)!r}"


class Exporter:
    """The exporter's state: the latest report and the counters; thread-safe (reader thread vs HTTP threads)."""

    def __init__(self):
        self.latest: Report | None = None
        self.reports = 0
        self.skipped = 0
        self.counters: dict[tuple[str, tuple], float] = defaultdict(float)
        self._lock = threading.Lock()

    def update(self, report: Report) -> None:
        with self._lock:
            self.latest, self.reports = report, self.reports + 1
            base = report.instance
            for rt in report.runtimes:
                labels = {**base, "runtime_tag": rt.tag}
                for kind in ERROR_TYPES:
                    self._add("execution_errors_total", {**labels, "error_type": kind}, rt.errors.get(kind))
                for kind in STATUS_TYPES:
                    self._add("execution_status_total", {**labels, "status_type": kind}, rt.status.get(kind))
            for device, counts in report.ecc:
                for kind in ECC_EVENTS:
                    self._add(
                        "hardware_ecc_events_total",
                        {**base, "event_type": kind, "neuron_device_index": device},
                        counts.get(kind),
                    )

    def skip(self) -> None:
        """Count one input line that was not a report."""
        with self._lock:
            self.skipped += 1

    def _add(self, name: str, labels: dict, value: float | None) -> None:
        if value is not None:
            self.counters[(name, tuple(sorted(labels.items())))] += value

    def samples(self) -> dict[str, list[tuple[dict, float]]]:
        out: dict[str, list[tuple[dict, float]]] = defaultdict(list)
        with self._lock:
            report = self.latest
            for (name, labels), value in self.counters.items():
                out[name].append((dict(labels), value))
            out["neuron_monitor_reports_total"].append(({}, self.reports))
            out["neuron_monitor_skipped_lines_total"].append(({}, self.skipped))
        if report is None:
            return out
        base = report.instance
        for rt in report.runtimes:
            labels = {**base, "runtime_tag": rt.tag}
            for core, pct in rt.utilization.items():
                out["neuroncore_utilization_ratio"].append(({**labels, "neuroncore": core}, pct / 100.0))
            for location, value in (("host", rt.host_bytes), ("neuron_device", rt.device_bytes)):
                if value is not None:
                    out["neuron_runtime_memory_used_bytes"].append(({**labels, "memory_location": location}, value))
            for core, usage in rt.core_memory.items():
                for kind, value in usage.items():
                    out[f"neuroncore_memory_usage_{kind}"].append(({**labels, "neuroncore": core}, value))
            for pct, seconds in rt.total_latency.items():
                out["execution_latency_seconds"].append(({**labels, "percentile": pct}, seconds))
            for kind, pct in rt.vcpu.items():
                out["neuron_runtime_vcpu_usage_ratio"].append(({**labels, "usage_type": kind}, pct / 100.0))
        for key, value in report.memory.items():
            out["system_" + key].append((dict(base), value))
        if report.vcpu_count:
            out["system_vcpu_count"].append((dict(base), report.vcpu_count))
        for kind in ("user", "system"):
            if kind in report.vcpu_usage:
                out["system_vcpu_usage_ratio"].append(({**base, "usage_type": kind}, report.vcpu_usage[kind] / 100.0))
        out["instance_info"].append((dict(base), 1.0))
        return out

    def render(self) -> str:
        """The Prometheus text exposition (format 0.0.4)."""
        found = self.samples()
        lines = []
        for name, (kind, help_text) in METRICS.items():
            if not found.get(name):
                continue
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
            lines += [sample(name, labels, value) for labels, value in found[name]]
        return "\n".join(lines) + "\n"


def serve(exporter: Exporter, host: str = "127.0.0.1", port: int = 9010) -> ThreadingHTTPServer:
    """An HTTP server answering GET /metrics (and /) with exporter.render(); run it with serve_forever()."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path.split("?", 1)[0] not in ("/", "/metrics"):
                self.send_error(404, "try /metrics")
                return
            body = exporter.render().encode()
            self.send_response(200)
            self.send_header("Content-Type", CONTENT_TYPE)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):  # scrapes every few seconds: keep the console for warnings
            pass

    httpd = ThreadingHTTPServer((host, port), Handler)
    httpd.daemon_threads = True
    return httpd
