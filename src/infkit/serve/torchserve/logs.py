"""TorchServe's logs: a bounded log4j2 configuration to run with, and what a start reads back from the logs.

TorchServe's built-in log4j2.xml logs `org.pytorch.serve` at DEBUG into ts_log.log *and*, through the root logger,
again into ts_log.log and the console (so every line twice, and the console file grows forever). Ours: one
appender per logger (additivity off), INFO by default, size-based rotation with a fixed number of files, the
lines TorchServe writes at INFO for every request or batch filtered out, the access log optional, and only warnings
on the console.
"""

from __future__ import annotations

import re
from pathlib import Path
from xml.sax.saxutils import quoteattr

from infkit.serve.core.config import ServerConfig
from infkit.serve.core.process import log_bytes  # noqa: F401  (its old place: infkit.serve.logs.log_bytes)

#: what TorchServe 0.12 logs at INFO for every request or batch: the Python worker's "Backend received inference at",
#: the frontend's batch and response bookkeeping, and each worker's per-request metric line echoed from its stdout
PER_REQUEST = (
    "Backend received inference at",
    "Backend response time",
    "Looping backend response at",
    "Sending response for jobId",
    "result=[METRICS]",
)

_FAILED_ARCHIVE = re.compile(r"Failed to load model: (?P<mar>\S+)")
_WORKER_LINE = re.compile(r"\bW-\d+-(?P<model>.+?)_(?P<version>[^_\s]+)-std(?:out|err)\b")
_WORKER_DIED = re.compile(r"\bW-\d+-(?P<model>.+?)_(?P<version>[^_\s]+)\b.*(?:Backend worker process died|Worker died)")


def _rolling(name: str, directory: Path, pattern: str, cfg: ServerConfig, extra: str = "") -> str:
    base = directory / name
    return (
        f'    <RollingFile name="{name}" fileName={quoteattr(str(base) + ".log")} '
        f"filePattern={quoteattr(str(base) + '.%i.log')}>\n"
        f'      <PatternLayout pattern="{pattern}"/>{extra}\n'
        f'      <Policies><SizeBasedTriggeringPolicy size="{cfg.log_file_mb} MB"/></Policies>\n'
        f'      <DefaultRolloverStrategy max="{cfg.log_files - 1 or 1}" fileIndex="min"/>\n'
        f"    </RollingFile>\n"
    )


def log4j2_xml(log_dir: Path | None, cfg: ServerConfig) -> str:
    """The log4j2 configuration TorchServe runs with (written into the state folder at start). With log_dir None,
    everything goes to the console at the same levels and filters: a container's logs are its standard output."""
    level = cfg.log_level.upper()
    line = "%d{ISO8601} [%-5p] %t %c - %m%n"
    regex = quoteattr(".*(" + "|".join(re.escape(m) for m in PER_REQUEST) + ").*")
    drop = f'\n      <RegexFilter regex={regex} onMatch="DENY" onMismatch="NEUTRAL"/>'
    console = (
        '    <Console name="STDOUT" target="SYSTEM_OUT">\n'
        f'      <PatternLayout pattern="{line}"/>{drop if log_dir is None else ""}\n    </Console>\n'
    )
    if log_dir is None:
        appenders, ts_log, model_log, access_log = console, "STDOUT", "STDOUT", "STDOUT"
    else:
        log_dir = Path(log_dir).resolve()
        appenders = (
            _rolling("ts_log", log_dir, line, cfg, drop)
            + _rolling("model_log", log_dir, line, cfg, drop)
            + (_rolling("access_log", log_dir, "%d{ISO8601} - %m%n", cfg) if cfg.access_log else "")
            + console
        )
        ts_log, model_log, access_log = "ts_log", "model_log", "access_log"
    access = (
        f'    <Logger name="ACCESS_LOG" level="info" additivity="false"><AppenderRef ref="{access_log}"/></Logger>\n'
        if cfg.access_log
        else '    <Logger name="ACCESS_LOG" level="off" additivity="false"/>\n'
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        "<!-- written by infkit (infkit.serve.torchserve.logs); change serve.server.log_* instead of editing it -->\n"
        "<Configuration>\n  <Appenders>\n"
        + appenders
        + "  </Appenders>\n  <Loggers>\n"
        + access
        + f'    <Logger name="org.pytorch.serve" level="{level}" additivity="false">'
        f'<AppenderRef ref="{ts_log}"/></Logger>\n'
        + f'    <Logger name="MODEL_LOG" level="{level}" additivity="false"><AppenderRef ref="{model_log}"/>'
        "</Logger>\n"
        # metrics go to Prometheus (metrics_mode=prometheus); their per-request log lines are off
        + '    <Logger name="MODEL_METRICS" level="off" additivity="false"/>\n'
        + '    <Logger name="TS_METRICS" level="off" additivity="false"/>\n'
        + '    <Logger name="io.netty" level="error"/>\n    <Logger name="org.apache" level="off"/>\n'
        + '    <Root level="warn"><AppenderRef ref="STDOUT"/></Root>\n'
        + "  </Loggers>\n</Configuration>\n"
    )


def _lines(path: Path) -> list[str]:
    try:
        return path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return []


def load_failures(log_dir: Path) -> dict[str, str]:
    """{model name: reason} for archives the frontend could not load, and for models whose worker raised an
    infkit error while loading (neither gets better by waiting). Read from ts_log.log and model_log.log."""
    failures: dict[str, str] = {}
    ts_log = _lines(Path(log_dir) / "ts_log.log")
    for i, line in enumerate(ts_log):
        m = _FAILED_ARCHIVE.search(line)
        if m:
            reason = next(
                (ln.strip() for ln in ts_log[i + 1 : i + 4] if ln.strip() and not ln.strip().startswith("at ")),
                "TorchServe gave no reason",
            )
            failures.setdefault(Path(m["mar"]).stem, reason[:300])
    for line in _lines(Path(log_dir) / "model_log.log"):
        if "InfkitError:" in line:
            m = _WORKER_LINE.search(line)
            if m:
                failures.setdefault(m["model"], line.split("InfkitError:", 1)[1].strip()[:300])
    return failures


def worker_deaths(log_dir: Path) -> dict[str, int]:
    """How often each model's worker process died (TorchServe restarts it with a back-off)."""
    deaths: dict[str, int] = {}
    for line in _lines(Path(log_dir) / "ts_log.log"):
        m = _WORKER_DIED.search(line)
        if m:
            deaths[m["model"]] = deaths.get(m["model"], 0) + 1
    return deaths


def last_errors(log_dir: Path, model: str | None = None, max_lines: int = 12) -> str:
    """The last error lines of TorchServe's logs (of one model's workers, when given): what a failed start shows."""
    lines: list[str] = []
    for name in ("model_log.log", "ts_log.log", "torchserve.out"):
        hits = [
            ln
            for ln in _lines(Path(log_dir) / name)
            if any(w in ln for w in ("ERROR", "Error", "Exception", "error:"))
            and (model is None or f"-{model}_" in ln or name != "model_log.log")
        ]
        lines += [f"{name}: {ln.strip()[:300]}" for ln in hits[-max_lines:]]
    return "\n".join(lines[-max_lines:]) or "(no error lines in the logs)"
