"""NeuronCores per TorchServe worker: the runtime's core budget, set before the Neuron SDK is imported (torch-neuron,
torch-neuronx, and TorchNeuron's native `neuron` device alike: the budget is the Neuron runtime's).

By default one Neuron runtime process reserves every NeuronCore, so a second worker could not load. Each worker
therefore asks for NEURON_RT_NUM_CORES = the model's pipeline cores (1 when not pipelined), unless the operator set
NEURON_RT_NUM_CORES or NEURON_RT_VISIBLE_CORES (never overwritten). The data_parallel layout instead lets one worker
use every core it sees. TorchServe itself knows no Neuron device (deviceType is cpu or gpu, and it passes no gpu_id
on Inferentia), so nothing here comes from TorchServe's context."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, MutableMapping
from typing import Any

from infkit.compile._neuron_common import pipeline_cores
from infkit.errors import InfkitError

log = logging.getLogger(__name__)

NEURON_BACKENDS = ("neuron", "neuronx", "neuron_native")
LAYOUTS = ("per_worker", "data_parallel")
NUM_CORES, VISIBLE_CORES = "NEURON_RT_NUM_CORES", "NEURON_RT_VISIBLE_CORES"


def is_neuron(manifest: Mapping[str, Any]) -> bool:
    return manifest.get("backend") in NEURON_BACKENDS


def cores_per_worker(manifest: Mapping[str, Any]) -> int:
    """NeuronCores one worker needs: the pipeline cores the model was compiled for, 1 when not pipelined."""
    return max(1, pipeline_cores(manifest.get("backend_options")))


def check_layout(layout: str, manifest: Mapping[str, Any]) -> str:
    """The layout, if valid for this model; data_parallel refuses pipelined models."""
    if layout not in LAYOUTS:
        raise InfkitError(f"serve.neuron.layout={layout!r} is not valid; use {' or '.join(LAYOUTS)}")
    if layout == "data_parallel" and manifest.get("backend") == "neuron_native":
        raise InfkitError(
            "serve.neuron.layout=data_parallel is for torch-neuron/torch-neuronx (XLA) artifacts; a neuron_native "
            "model runs one copy per worker: use serve.neuron.layout=per_worker"
        )
    cores = pipeline_cores(manifest.get("backend_options"))
    if layout == "data_parallel" and cores > 1:
        raise InfkitError(
            f"serve.neuron.layout=data_parallel cannot serve {manifest.get('name')!r}: it is pipelined "
            f"over {cores} NeuronCores (DataParallel replicates whole models per core); use "
            "serve.neuron.layout=per_worker, or compile with compile.pipeline_cores=null"
        )
    return layout


def set_core_budget(
    manifest: Mapping[str, Any], layout: str = "per_worker", env: MutableMapping[str, str] | None = None
) -> str:
    """Set this process's NeuronCore budget in `env` (os.environ) before the SDK is imported; return the log line
    saying which setting applies."""
    env = os.environ if env is None else env
    check_layout(layout, manifest)
    need = cores_per_worker(manifest)
    if VISIBLE_CORES in env:
        line = (
            f"{VISIBLE_CORES}={env[VISIBLE_CORES]!r} set by the operator: kept (it takes precedence over "
            f"{NUM_CORES}); this worker needs {need} NeuronCore(s)"
        )
    elif NUM_CORES in env:
        line = f"{NUM_CORES}={env[NUM_CORES]!r} set by the operator: kept; this worker needs {need} NeuronCore(s)"
        if env[NUM_CORES].strip().isdigit() and int(env[NUM_CORES]) < need:
            log.warning(
                "%s=%s is fewer than the %d pipeline cores this model needs: it will not load",
                NUM_CORES,
                env[NUM_CORES],
                need,
            )
    elif layout == "data_parallel":
        line = (
            f"{NUM_CORES} not set: layout data_parallel, this worker takes every NeuronCore it sees "
            "(torch DataParallel over all of them)"
        )
    else:
        env[NUM_CORES] = str(need)
        why = f"pipelined over {need} cores" if need > 1 else "not pipelined"
        line = f"{NUM_CORES}={need} set for this worker (one model copy per worker, {why})"
    log.info("NeuronCore budget: %s", line)
    return line


def packaging_warnings(
    manifest: Mapping[str, Any], model_config: Mapping[str, Any], instance_cores: int | None
) -> list[str]:
    """What packaging says about workers x cores per worker against the instance's NeuronCores."""
    layout = check_layout(str((model_config.get("handler") or {}).get("neuron_layout", "per_worker")), manifest)
    workers = {k: int(model_config.get(k) or 1) for k in ("minWorkers", "maxWorkers")}
    if layout == "data_parallel":
        busy = [f"{k}={v}" for k, v in workers.items() if v > 1]
        line = (
            f"layout data_parallel: each worker takes every NeuronCore it sees, so with {' and '.join(busy)} the "
            f"second worker cannot load unless {NUM_CORES} splits the cores; use 1 worker"
        )
        return [line] if busy else []
    if instance_cores is None:
        return [
            (
                f"serve.neuron.cores is not set: workers x {cores_per_worker(manifest)} NeuronCore(s) per worker "
                "is not checked against the instance (set it, e.g. serve.neuron.cores=2 on inf2.xlarge)"
            )
        ]
    try:
        instance_cores = int(instance_cores)
    except (TypeError, ValueError):
        raise InfkitError(
            f"serve.neuron.cores={instance_cores!r} is not valid; give the instance's NeuronCores, "
            "e.g. 2 on inf2.xlarge (docs/inferentia.md has the table)"
        ) from None
    need = cores_per_worker(manifest)
    over = [f"{k}={v}" for k, v in workers.items() if v * need > instance_cores]
    if not over:
        return []
    return [
        (
            f"{' and '.join(over)} x {need} NeuronCore(s) per worker exceed serve.neuron.cores={instance_cores}: "
            f"at most {instance_cores // need} worker(s) can load; lower the workers or use a larger instance"
        )
    ]
