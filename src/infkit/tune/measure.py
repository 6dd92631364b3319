"""One candidate measured for real: packaged (infkit.package.run with its model-config), served by its own
server (serve.engine: TorchServe or Ray Serve, through infkit.serve.engine) on free loopback ports, loaded level by
level with stability windows (infkit.bench.runner), stopped."""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from omegaconf import OmegaConf

from infkit.bench import loadgen, runner
from infkit.bench.stats import MAX_ERROR_RATE
from infkit.errors import InfkitError
from infkit.serve.core.auth import inference_token
from infkit.serve.core.config import ServerConfig
from infkit.serve.core.process import STATE_FILE
from infkit.serve.engine import get_engine
from infkit.tune.space import Candidate
from infkit.utils.compose import compose_config


@dataclass
class Load:
    """The load shape each candidate meets: closed-loop concurrencies or open-loop rates, and the windows."""

    mode: str  # "closed" or "open"
    levels: Sequence[float]
    bodies: Sequence[bytes]
    warmup: float = 3.0
    max_duration: float = 20.0
    window: float = 2.0
    stable_windows: int = 3
    tolerance: float = 0.1
    timeout: float = 30.0
    max_error_rate: float = MAX_ERROR_RATE

    def specs(self) -> list[runner.LevelSpec]:
        return [
            runner.LevelSpec(
                mode=self.mode,
                level=lv,
                warmup=self.warmup,
                max_duration=self.max_duration,
                interval=max(self.window, 5.0),
                window=self.window,
                stable_windows=self.stable_windows,
                tolerance=self.tolerance,
                max_error_rate=self.max_error_rate,
            )
            for lv in self.levels
        ]


def overrides(c: Candidate) -> list[str]:
    """The candidate as overrides of configs/serve/default.yaml's model: section (what package.run packs)."""
    spin = "null" if c.spinning is None else str(c.spinning).lower()
    return [
        f"serve.model.minWorkers={c.workers}",
        f"serve.model.maxWorkers={c.workers}",
        f"serve.model.batchSize={c.batch_size}",
        f"serve.model.maxBatchDelay={c.max_batch_delay}",
        f"serve.model.handler.threads={c.threads or 'null'}",
        f"serve.model.handler.spinning={spin}",
    ]


def package(artifact_dir: Path, c: Candidate, store: Path, model_name: str, work: Path):
    """The candidate's .mar in `store` (package.run: the same archiver call `infkit package` makes)."""
    from infkit.package import run as package_stage

    cfg = compose_config(
        "package",
        [f"artifact_dir={artifact_dir}", f"model_store={store}", f"model_name={model_name}", *overrides(c)],
        work,
    )
    return package_stage.run(cfg), OmegaConf.to_container(cfg.serve.model, resolve=True)


def level_row(result: dict) -> dict:
    """A level as tune ranks it: successful throughput and latency, errors and the error rate beside them."""
    s = result["summary"]
    lat = s["latency_s"]
    return {
        "level": result["level"],
        "requests": s["requests"],
        "ok": s["ok"],
        "errors": s["errors"],
        "error_rate": s["error_rate"],
        "failed": result.get("failed"),
        "first_error": result.get("first_error"),
        "throughput_rps": s["throughput_rps"],
        "mean_ms": lat["mean"] * 1e3,
        **{f"{p}_ms": lat[p] * 1e3 for p in ("p50", "p90", "p99")},
        "stopped_by": result["stopped_by"],
        "server": result.get("server"),
        "client_bottleneck": bool((result.get("client") or {}).get("bottleneck")),
        "machine_load": result.get("machine_load"),
    }


class Measurer:
    """measure(candidate) -> result for the search; each candidate gets a state folder under `work`."""

    def __init__(
        self,
        artifact_dirs: Sequence[Path],
        model_names: Sequence[str],
        load: Load,
        work: Path,
        server_overrides: Sequence[str] = (),
        echo: Callable[[str], None] = print,
    ):
        self.artifact_dirs, self.model_names, self.load = list(artifact_dirs), list(model_names), load
        self.work, self.echo = Path(work), echo
        cfg = compose_config("serve", list(server_overrides), self.work)
        self.server_settings = OmegaConf.to_container(cfg.serve.server, resolve=True)
        self.engine = get_engine(cfg.serve.get("engine"), OmegaConf.to_container(cfg.serve, resolve=True))
        self.count = 0

    def __call__(self, c: Candidate) -> dict:
        self.count += 1
        where = self.work / f"c{self.count:02d}"
        store = where / "model_store"
        # TorchServe's worker sockets live in the state folder's tmp/: a short path keeps them under AF_UNIX's
        # 108 characters wherever the results go; the server's logs are copied next to the results after it stops
        state_dir = Path(tempfile.mkdtemp(prefix="infkit-tune-")) / "serve"
        name = self.model_names[c.artifact]
        t0 = time.perf_counter()
        result = {"candidate": c, "status": "measured", "levels": [], "model_config": None}
        result["server_state_dir"], result["server_logs"] = str(state_dir), str(where / "server-logs")
        try:
            packed, model_config = package(self.artifact_dirs[c.artifact], c, store, name, where)
            result["model_config"] = model_config
            srv = ServerConfig.from_mapping(self.server_settings).with_free_ports()
            state = self.engine.start(srv, store, state_dir, [packed.model_name], strict=True, log=lambda m: None)
        except InfkitError as exc:
            self.echo(f"  failed: {exc}")
            self._keep_logs(state_dir, where)
            return result | {"status": "failed", "reason": str(exc), "seconds": time.perf_counter() - t0}
        except BaseException:
            self._keep_logs(state_dir, where)
            raise
        try:
            token = inference_token(Path(state["key_file"])) if srv.token_auth else None
            url = f"{state['urls']['inference']}/predictions/{packed.model_name}"
            target = loadgen.Target(url, self.load.bodies, token, self.load.timeout)
            levels = runner.sweep(target, self.load.specs(), state["urls"]["metrics"], packed.model_name, self._quiet)
        finally:
            self.engine.stop(state_dir)
            self._keep_logs(state_dir, where)
            shutil.rmtree(store, ignore_errors=True)  # the winner is packaged again at the end
        result["levels"] = [level_row(r) for r in levels]
        if any(r["interrupted"] for r in levels):
            result["status"] = "interrupted"
        result["seconds"] = time.perf_counter() - t0
        for row in result["levels"]:
            self.echo(
                f"  {row['level']:g} {'clients' if self.load.mode == 'closed' else 'req/s'}: "
                f"{row['throughput_rps']:.1f} req/s, p50 {row['p50_ms']:.1f} ms, p90 {row['p90_ms']:.1f} ms, "
                f"p99 {row['p99_ms']:.1f} ms, errors {row['errors']}"
                + (" (client-bound)" if row["client_bottleneck"] else "")
                + (f"; FAILED: {row['failed']}, first error: {row['first_error']}" if row["failed"] else "")
            )
        return result

    @staticmethod
    def _keep_logs(state_dir: Path, where: Path) -> None:
        """The stopped server's logs to <where>/server-logs; its short-lived state folder removed."""
        if (state_dir / "logs").is_dir():
            shutil.copytree(state_dir / "logs", where / "server-logs", dirs_exist_ok=True)
        if not (state_dir / STATE_FILE).exists():  # never remove the folder of a server still running
            shutil.rmtree(state_dir.parent, ignore_errors=True)

    def _quiet(self, line: str) -> None:
        """The sweep's own lines: only warnings (each level is summarised once above)."""
        if "warning" in line or line.startswith("stopping"):
            self.echo(f"  {line.strip()}")
