"""One neuron-monitor report (one JSON document) -> plain records.

Field names follow the Neuron SDK's neuron-monitor user guide: `neuron_runtime_data[]` of
`{pid, neuron_runtime_tag, error, report}`, where `report` holds the metric groups `neuroncore_counters`,
`execution_stats`, `memory_used` and `neuron_runtime_vcpu_usage`; `system_data` holds `memory_info`,
`vcpu_usage` and `neuron_hw_counters`; `instance_info` and `neuron_hardware_info` are always present.
Every group may be missing (not configured), carry an `error`, or hold nulls (`latency_stats.total_latency`
is null when nothing ran in the period): such parts come out empty, never as an exception."""

from __future__ import annotations

from dataclasses import dataclass, field

PERCENTILES = ("p0", "p1", "p25", "p50", "p75", "p99", "p100")
ERROR_TYPES = ("generic", "numerical", "transient", "model", "runtime", "hardware")
STATUS_TYPES = (
    "completed",
    "completed_with_err",
    "completed_with_num_err",
    "timed_out",
    "incorrect_input",
    "failed_to_queue",
)
CORE_MEMORY = ("constants", "model_code", "model_shared_scratchpad", "runtime_memory", "tensors")
ECC_EVENTS = ("mem_ecc_corrected", "mem_ecc_uncorrected", "sram_ecc_corrected", "sram_ecc_uncorrected")
# Prometheus label -> instance_info field, as AWS's neuron-monitor-prometheus.py names them
INSTANCE_LABELS = {
    "instance_name": "instance_name",
    "instance_id": "instance_id",
    "instance_type": "instance_type",
    "availability_zone": "instance_availability_zone",
    "region": "instance_region",
    "subnet_id": "subnet_id",
}


class NotAReport(ValueError):
    """A JSON document that is not a neuron-monitor report."""


@dataclass
class Runtime:
    """One Neuron application (a process holding NeuronCores, e.g. one TorchServe worker)."""

    tag: str
    pid: int | None = None
    error: str = ""
    utilization: dict[str, float] = field(default_factory=dict)  # NeuronCore index -> percent in the period
    core_memory: dict[str, dict[str, float]] = field(default_factory=dict)  # core -> CORE_MEMORY -> bytes
    host_bytes: float | None = None
    device_bytes: float | None = None
    total_latency: dict[str, float] = field(default_factory=dict)  # PERCENTILES -> seconds
    device_latency: dict[str, float] = field(default_factory=dict)
    errors: dict[str, float] = field(default_factory=dict)  # error_summary, counts in the period
    status: dict[str, float] = field(default_factory=dict)  # execution_summary, counts in the period
    vcpu: dict[str, float] = field(default_factory=dict)  # user/system percent


@dataclass
class Report:
    instance: dict[str, str]  # INSTANCE_LABELS keys -> values ("" when unknown)
    runtimes: list[Runtime]
    memory: dict[str, float] = field(default_factory=dict)  # memory_info: memory_total_bytes, ...
    vcpu_count: int | None = None
    vcpu_usage: dict[str, float] = field(default_factory=dict)  # average_usage, percent
    ecc: list[tuple[str, dict[str, float]]] = field(default_factory=list)  # (device index, ECC_EVENTS -> count)
    period: float | None = None  # longest captured period in the report, seconds


def _num(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _obj(parent, key) -> dict:
    value = parent.get(key) if isinstance(parent, dict) else None
    return value if isinstance(value, dict) else {}


def _numbers(obj: dict, keys=None) -> dict[str, float]:
    return {k: v for k, v in ((k, _num(obj.get(k))) for k in (keys or obj)) if v is not None}


def _runtime(entry: dict, periods: list[float]) -> Runtime:
    report = _obj(entry, "report")
    pid = entry.get("pid") if isinstance(entry.get("pid"), int) else None
    tag = entry.get("neuron_runtime_tag")
    if tag in (None, ""):  # neuron-monitor tags an untagged application with its pid
        tag = pid if pid is not None else "unknown"
    rt = Runtime(tag=str(tag), pid=pid, error=str(entry.get("error") or ""))
    for group in report.values():
        if isinstance(group, dict) and _num(group.get("period")) is not None:
            periods.append(float(group["period"]))
    cores = _obj(_obj(report, "neuroncore_counters"), "neuroncores_in_use")
    rt.utilization = {
        str(k): u
        for k, v in cores.items()
        if (u := _num(v.get("neuroncore_utilization") if isinstance(v, dict) else None)) is not None
    }
    used = _obj(_obj(report, "memory_used"), "neuron_runtime_used_bytes")
    rt.host_bytes, rt.device_bytes = _num(used.get("host")), _num(used.get("neuron_device"))
    per_core = _obj(_obj(used, "usage_breakdown"), "neuroncore_memory_usage")
    rt.core_memory = {str(k): _numbers(v, CORE_MEMORY) for k, v in per_core.items() if isinstance(v, dict)}
    stats = _obj(report, "execution_stats")
    latency = _obj(stats, "latency_stats")
    rt.total_latency = _numbers(_obj(latency, "total_latency"), PERCENTILES)
    rt.device_latency = _numbers(_obj(latency, "device_latency"), PERCENTILES)
    rt.errors = _numbers(_obj(stats, "error_summary"))
    rt.status = _numbers(_obj(stats, "execution_summary"))
    rt.vcpu = _numbers(_obj(_obj(report, "neuron_runtime_vcpu_usage"), "vcpu_usage"), ("user", "system"))
    return rt


def parse_report(doc) -> Report:
    """A decoded JSON document -> Report; NotAReport when it is not shaped like neuron-monitor's output."""
    if not isinstance(doc, dict) or not ({"neuron_runtime_data", "instance_info", "system_data"} & doc.keys()):
        raise NotAReport("not a neuron-monitor report (no neuron_runtime_data, system_data or instance_info)")
    entries = doc.get("neuron_runtime_data")
    if entries is not None and not isinstance(entries, list):
        raise NotAReport("neuron_runtime_data is not a list")
    periods: list[float] = []
    runtimes = [_runtime(e, periods) for e in entries or [] if isinstance(e, dict)]
    info = _obj(doc, "instance_info")
    system = _obj(doc, "system_data")
    for group in system.values():
        if isinstance(group, dict) and _num(group.get("period")) is not None:
            periods.append(float(group["period"]))
    vcpu = _obj(system, "vcpu_usage")
    usage_data = _obj(vcpu, "usage_data")
    devices = _obj(system, "neuron_hw_counters").get("neuron_devices")
    ecc = [
        (str(d.get("neuron_device_index", i)), _numbers(d, ECC_EVENTS))
        for i, d in enumerate(devices if isinstance(devices, list) else [])
        if isinstance(d, dict)
    ]
    return Report(
        instance={label: str(info.get(key) or "") for label, key in INSTANCE_LABELS.items()},
        runtimes=runtimes,
        memory=_numbers(
            _obj(system, "memory_info"),
            ("memory_total_bytes", "memory_used_bytes", "swap_total_bytes", "swap_used_bytes"),
        ),
        vcpu_count=len(usage_data) or None,
        vcpu_usage=_numbers(_obj(vcpu, "average_usage")),
        ecc=ecc,
        period=max(periods) if periods else None,
    )
