"""TorchServe's server settings as one typed object: addresses, ports, limits, logs; config.properties from it."""

from __future__ import annotations

import dataclasses
import random
import socket
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from infkit.errors import InfkitError

PORT_KEYS = ("inference_port", "management_port", "metrics_port", "grpc_inference_port", "grpc_management_port")
MIB = 1024 * 1024
FRONTS = ("nginx", "none")


@dataclass(frozen=True)
class ServerConfig:
    """`serve.server` of configs/serve/default.yaml, checked once (a wrong key or value names the fix)."""

    address: str = "127.0.0.1"
    inference_port: int = 8080
    management_port: int = 8081
    metrics_port: int = 8082
    grpc_inference_port: int = 7070
    grpc_management_port: int = 7071
    token_auth: bool = True
    token_expiration_min: int = 1440
    model_api: bool = False
    start_timeout: float = 240.0
    java_heap: str = "1g"
    #: largest request body TorchServe accepts; null: room for the largest image the handler accepts, in any encoding
    max_request_size: int | None = None
    max_response_size: int = 16 * MIB
    #: TorchServe's own log level (INFO: no per-request lines); each log rotates at log_file_mb, log_files kept
    log_level: str = "INFO"
    log_file_mb: int = 10
    log_files: int = 5
    access_log: bool = False
    #: the frontend's threads: accepting and answering HTTP (number_of_netty_threads), talking to the workers
    #: (netty_client_threads); 0: TorchServe's default (the number of logical processors)
    number_of_netty_threads: int = 0
    netty_client_threads: int = 0
    #: requests a model's queue holds before TorchServe answers 503
    job_queue_size: int = 100
    #: what listens on inference_port: nginx (infkit.serve.core.front: it parses clients' HTTP, TorchServe's inference
    #: API behind it on a free loopback port) or none (TorchServe itself)
    front: str = "nginx"
    #: connections the front holds at once (clients and TorchServe's together)
    max_connections: int = 4096
    #: the old spelling of front: false = none, true = nginx
    form_guard: bool | None = None

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> ServerConfig:
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise InfkitError(f"unknown serve.server key(s) {', '.join(unknown)}; valid: {', '.join(known)}")
        out = {}
        for key, value in values.items():
            kind = known[key].type
            if value is None or kind in ("str",):
                out[key] = value if value is None else str(value)
                continue
            try:
                out[key] = _convert(value, kind)
            except (TypeError, ValueError):
                raise InfkitError(f"serve.server.{key}={value!r} is not a valid {kind.split(' ')[0]}") from None
        if out.get("form_guard") is not None:  # the old spelling, when given, decides
            out["front"] = "nginx" if out["form_guard"] else "none"
        config = cls(**out)
        config.check()
        return config

    def check(self) -> None:
        for key in PORT_KEYS:
            port = getattr(self, key)
            if not 0 < port < 65536:
                raise InfkitError(f"serve.server.{key}={port} is not a TCP port; choose 1024-65535")
        if self.log_level.upper() not in ("TRACE", "DEBUG", "INFO", "WARN", "ERROR"):
            raise InfkitError(f"serve.server.log_level={self.log_level!r}; choose DEBUG, INFO, WARN or ERROR")
        if self.log_file_mb < 1 or self.log_files < 1:
            raise InfkitError("serve.server.log_file_mb and log_files must be >= 1")
        for key in ("number_of_netty_threads", "netty_client_threads"):
            if getattr(self, key) < 0:
                raise InfkitError(f"serve.server.{key}={getattr(self, key)} is negative; give 0 (default) or more")
        if self.front not in FRONTS:
            raise InfkitError(f"serve.server.front={self.front!r}; choose {' or '.join(FRONTS)}")
        if self.max_connections < 16:
            raise InfkitError(f"serve.server.max_connections={self.max_connections}; give 16 or more (default 4096)")
        if self.job_queue_size < 1:
            raise InfkitError(f"serve.server.job_queue_size={self.job_queue_size}; give 1 or more (default 100)")

    def replace(self, **changes) -> ServerConfig:
        return dataclasses.replace(self, **changes)

    def with_free_ports(self) -> ServerConfig:
        return self.replace(**free_ports(self.address))

    def ports(self) -> dict[str, int]:
        return {k: getattr(self, k) for k in PORT_KEYS}

    def busy_ports(self) -> list[str]:
        return [k for k in PORT_KEYS if not port_free(self.address, getattr(self, k))]

    def urls(self) -> dict[str, str]:
        host = self.address
        return {
            "inference": f"http://{host}:{self.inference_port}",
            "management": f"http://{host}:{self.management_port}",
            "metrics": f"http://{host}:{self.metrics_port}/metrics",
            "grpc_inference": f"{host}:{self.grpc_inference_port}",
        }

    def request_limit(self, max_image_bytes: int) -> int:
        """max_request_size: the configured one, or room for an image of max_image_bytes sent base64 in JSON
        (4/3 of it) plus headers and fields, so the handler's own 413 is the answer users see."""
        if self.max_request_size:
            return int(self.max_request_size)
        return -(-int(max_image_bytes) * 4 // 3) + 64 * 1024

    def config_properties(
        self, model_store: Path, max_image_bytes: int, log_config: Path | None = None, inference_port: int | None = None
    ) -> str:
        """config.properties with safe defaults: loopback, token auth, model API off, local archives only.
        `inference_port`: the loopback port TorchServe's inference API listens on behind the front (127.0.0.1 whatever
        `address` is: only the front talks to it)."""
        host, store = self.address, Path(model_store).resolve()
        vmargs = f"-Xmx{self.java_heap} -XX:+ExitOnOutOfMemoryError"
        if log_config:
            vmargs += f" -Dlog4j.configurationFile=file://{Path(log_config).resolve()}"
        lines = {
            "inference_address": f"http://127.0.0.1:{inference_port}"
            if inference_port
            else f"http://{host}:{self.inference_port}",
            "management_address": f"http://{host}:{self.management_port}",
            "metrics_address": f"http://{host}:{self.metrics_port}",
            "grpc_inference_address": host,
            "grpc_inference_port": self.grpc_inference_port,
            "grpc_management_address": host,
            "grpc_management_port": self.grpc_management_port,
            "model_store": store,
            "enable_model_api": str(self.model_api).lower(),
            # only archives from the local model store may ever be registered
            "allowed_urls": f"file://{store}/.*",
            "metrics_mode": "prometheus",
            # the handler's own counters (per-stage times) appear on the metrics endpoint as soon as it emits them
            "model_metrics_auto_detect": "true",
            "job_queue_size": self.job_queue_size,
            "disable_token_authorization": str(not self.token_auth).lower(),
            "token_expiration_min": self.token_expiration_min,
            "enable_envvars_config": "false",
            "install_py_dep_per_model": "false",
            "default_workers_per_model": 1,
            "max_request_size": self.request_limit(max_image_bytes),
            "max_response_size": self.max_response_size,
            "vmargs": vmargs,
        }
        for key in ("number_of_netty_threads", "netty_client_threads"):
            if getattr(self, key):
                lines[key] = getattr(self, key)
        return "".join(f"{k}={v}\n" for k, v in lines.items())


def _convert(value: Any, kind: str) -> Any:
    if kind.startswith("bool"):
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("true", "1", "yes", "on"):
            return True
        if text in ("false", "0", "no", "off"):
            return False
        raise ValueError(value)
    if kind.startswith("int"):
        if isinstance(value, bool) or float(value) != int(float(value)):
            raise ValueError(value)
        return int(float(value))
    if kind.startswith("float"):
        return float(value)
    return value


def port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, int(port)))
        except OSError:
            return False
    return True


def _ephemeral_range() -> tuple[int, int]:
    """The ports the OS gives outgoing connections (Linux: /proc/sys/net/ipv4/ip_local_port_range)."""
    try:
        low, high = (int(x) for x in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
        return low, high
    except (OSError, ValueError):
        return 32768, 60999


#: the ports Ray and Serve pick from on their own: Ray's default worker ports (a user's Ray started with defaults)
#: and the HTTP and gRPC ports of Serve's replicas under direct ingress (RAY_SERVE_DIRECT_INGRESS_MIN/MAX_*_PORT)
RAY_PORT_RANGES = ((10002, 19999), (30000, 31000), (40000, 41000))


_PICK = random.SystemRandom()


def _taken_by_ray(port: int) -> bool:
    return any(low <= port <= high for low, high in RAY_PORT_RANGES)


def free_ports(host: str = "127.0.0.1", keys: tuple[str, ...] = PORT_KEYS) -> dict[str, int]:
    """One free port for each of `keys`, outside the OS's range for outgoing connections where it can: a port the OS
    picked from that range can be taken by any process's next outgoing connection before the server that was given
    it binds it (Ray's processes make hundreds while a private Ray starts: Serve's proxy once failed to bind its port
    with "Address already in use"), and outside the ranges Ray's and Serve's own servers pick from (RAY_PORT_RANGES).
    Falls back to a port the OS picks."""
    low, high = _ephemeral_range()
    candidates = [p for p in range(10000, 65536) if not low <= p <= high and not _taken_by_ray(p)]
    # the OS's randomness, not the `random` module's: a training seeds that (Lightning's seed_everything), and two
    # processes that trained with the same seed then picked the same "free" ports (two pytest workers' servers did)
    _PICK.shuffle(candidates)
    socks, out = [], {}
    try:
        for key in keys:
            while key not in out:
                s = socket.socket()
                port = candidates.pop() if candidates else 0
                try:
                    s.bind((host, port))
                except OSError:
                    s.close()
                    continue
                socks.append(s)
                out[key] = s.getsockname()[1]
        return out
    finally:
        for s in socks:
            s.close()
