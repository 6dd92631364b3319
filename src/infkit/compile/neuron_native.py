"""TorchNeuron, the native PyTorch backend (Trn2/Trn3): torch.compile(backend="neuron") on the `neuron` device.

Written against the Neuron 2.33/2.34 documentation (public beta; package torch-neuronx 2.13.3.0.* / 2.14.3.0.* for
PyTorch 2.13 / 2.14, Python 3.12-3.14) and never run on hardware by this project. torch.compile compiles just in
time, one NEFF per input shape (dynamic=True is rejected), so compilation calls the compiled model once per entry of
compile.batch_sizes and the NEFFs land in TORCH_NEURONX_NEFF_CACHE_DIR, a folder beside the artifact. The artifact,
<name>.neuron_native.tar, holds the model as a torch.export program (no timm needed to rebuild it) and that cache;
loading unpacks it, points the cache variable at it before the SDK is imported, and warms up each batch size."""

from __future__ import annotations

import io
import logging
import os
import shutil
import sys
import tarfile
import tempfile
from collections.abc import Mapping, MutableMapping
from pathlib import Path
from typing import Any

import torch

from infkit.compile import neuron_stack
from infkit.compile._neuron_common import import_sdk
from infkit.compile.manifest import sha256
from infkit.errors import InfkitError

log = logging.getLogger(__name__)

#: the device TorchNeuron registers (PrivateUse1 named "neuron"); the contract tests put "cpu" in its place
DEVICE = "neuron"
CACHE_ENV, FALLBACK_ENV = "TORCH_NEURONX_NEFF_CACHE_DIR", "TORCH_NEURONX_DISABLE_FALLBACK_EXECUTION"
PROGRAM, CACHE, SOURCE = "program.pt2", "neff_cache", "artifact.sha256"
AUTOCAST = {"bf16": torch.bfloat16}
#: the largest batch the exported program accepts (each size still compiles its own NEFF)
MAX_BATCH = 4096


def cache_dir(out_dir: Path) -> Path:
    """Where compilation writes its NEFFs: a folder in the artifact folder, packed into the artifact."""
    return Path(out_dir) / CACHE


def environment(options: Mapping[str, Any], cache: Path) -> dict[str, str]:
    """The SDK's variables, to be set before it is imported: the NEFF cache folder, and fallback to eager execution
    off (the SDK's default, stated) unless compile.fallback=true."""
    return {CACHE_ENV: str(cache), FALLBACK_ENV: "0" if options.get("fallback") else "1"}


def set_environment(options: Mapping[str, Any], cache: Path, env: MutableMapping[str, str] | None = None) -> None:
    env = os.environ if env is None else env
    if "torch_neuronx" in sys.modules:  # PyTorch autoloads device backends when torch is imported
        log.warning(
            "torch_neuronx was imported before %s and %s were set (PyTorch's device-backend autoload): export them "
            "in the shell, or set TORCH_DEVICE_BACKEND_AUTOLOAD=0, if the SDK reads them at import",
            CACHE_ENV,
            FALLBACK_ENV,
        )
    for key, value in environment(options, cache).items():
        if env.get(key) not in (None, value):
            log.info("%s=%s replaced by %s for this compilation", key, env[key], value)
        env[key] = value
    Path(cache).mkdir(parents=True, exist_ok=True)


def check_options(options: Mapping[str, Any]) -> None:
    autocast = options.get("autocast")
    if autocast is not None and autocast not in AUTOCAST:
        raise InfkitError(
            f"compile.autocast={autocast!r} is not valid; use bf16 (torch.autocast(device_type='neuron', "
            "dtype=torch.bfloat16)) or null (fp32)"
        )
    if options.get("dynamic"):
        raise InfkitError(
            "compile.dynamic=true is rejected by torch.compile(backend='neuron') (Neuron 2.34); list the shapes in "
            "compile.batch_sizes instead, e.g. [1,4,8]"
        )


def _compiled(module: torch.nn.Module, options: Mapping[str, Any]):
    module = module.to(DEVICE)
    fn = torch.compile(module, backend="neuron", fullgraph=bool(options.get("fullgraph", True)), dynamic=False)
    dtype = AUTOCAST.get(options.get("autocast"))

    def run(x: torch.Tensor) -> torch.Tensor:
        # always the same grad mode and a fresh device tensor: a caller's no_grad or inference_mode would otherwise
        # fail dynamo's guards and compile the same shape again
        with torch.inference_mode(), torch.autocast(device_type=DEVICE, dtype=dtype, enabled=dtype is not None):
            return fn(x.to(DEVICE, copy=True)).float().cpu()

    return run


def _warm_up(run, example: torch.Tensor, sizes) -> None:
    for bs in sizes:
        log.info("neuron_native: compiling batch size %d (first call)", bs)
        run(example[:1].expand(int(bs), *example.shape[1:]).contiguous())


class NeuronNativeBackend:
    name = "neuron_native"
    suffix = ".neuron_native.tar"
    #: one compiled shape per batch size, all inside one artifact (the compile stage writes one file)
    static_batch = True
    one_artifact_all_sizes = True
    #: the SDK's variables must be set before it is imported (infkit.compile.registry.resolve_backend)
    env_before_import = True
    option_names = frozenset({"autocast", "fallback", "fullgraph"})

    def __init__(self):
        #: the artifact this instance compiled, its options and its compiled callable (the compile stage's parity
        #: check loads the artifact it just wrote: the same compiled model, no second compilation)
        self._compiled: tuple[Path, dict[str, Any], Any] | None = None

    def prepare_environment(self, options: Mapping[str, Any], out_dir: Path) -> None:
        """Before the SDK is imported: the NEFF cache in the artifact folder, fallback per compile.fallback (nothing
        where TorchNeuron is not installed: unavailable_reason then says so without importing anything)."""
        if neuron_stack.torch_neuronx_line(neuron_stack.installed("torch-neuronx")) == "native":
            set_environment(options, cache_dir(out_dir))

    def unavailable_reason(self) -> str | None:
        version = neuron_stack.installed("torch-neuronx")
        fix = (
            "install TorchNeuron (torch-neuronx 2.13.3.0.* or 2.14.3.0.* for PyTorch 2.13/2.14, Python 3.12-3.14, "
            "from the Neuron pip repository; docs/inferentia.md); it runs on Trn2 and Trn3 only, not on Inf2, Trn1 "
            "or Inf1 (there use compile=neuronx or compile=neuron; here compile=torchscript)"
        )
        if version is None:
            return f"compile=neuron_native needs TorchNeuron, which is not installed here: {fix}"
        if neuron_stack.torch_neuronx_line(version) != "native":
            return (
                f"compile=neuron_native needs TorchNeuron, but torch-neuronx {version} here is the XLA-based line "
                f"(Inf2/Trn1: use compile=neuronx); {fix}"
            )
        module, reason = import_sdk("torch_neuronx", self.name, "torch-neuronx (TorchNeuron)", "Trn2/Trn3")
        if module is None:
            return reason
        devices = neuron_stack.neuron_devices()
        if not devices:
            return (
                f"compile=neuron_native: torch-neuronx {version} imports but sees no neuron device "
                "(torch.neuron.is_available() is false); TorchNeuron runs on Trn2 and Trn3 only"
            )
        if "neuron" not in torch.compiler.list_backends(exclude_tags=()):
            return f"compile=neuron_native: torch-neuronx {version} registered no torch.compile backend 'neuron'"
        return None

    def compile(
        self, model: torch.nn.Module, example: torch.Tensor, options: Mapping[str, Any], path: Path
    ) -> dict[str, Any]:
        check_options(options)
        sizes = sorted({int(b) for b in options.get("batch_sizes") or [int(example.shape[0])]})
        cache = Path(os.environ.get(CACHE_ENV) or cache_dir(path.parent))
        cache.mkdir(parents=True, exist_ok=True)
        batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
        wide = example[:1].expand(2, *example.shape[1:]).contiguous()  # size 1 would be specialised
        program = torch.export.export(model.eval(), (wide,), dynamic_shapes=({0: batch},))
        buffer = io.BytesIO()
        torch.export.save(program, buffer)
        run = _compiled(program.module(), options)
        _warm_up(run, example, sizes)
        with tarfile.open(path, "w") as tar:
            info = tarfile.TarInfo(PROGRAM)
            info.size = buffer.getbuffer().nbytes
            buffer.seek(0)
            tar.addfile(info, buffer)
            tar.add(cache, arcname=CACHE)
        cached = sorted(p.relative_to(cache).as_posix() for p in cache.rglob("*") if p.is_file())
        log.info("neuron_native: %d file(s) in the NEFF cache %s, packed into %s", len(cached), cache, path.name)
        used = {
            "compiled_batch_sizes": sizes,
            "input_shape": [int(d) for d in example.shape[1:]],
            "autocast": options.get("autocast"),
            "fallback": bool(options.get("fallback", False)),
            "fullgraph": bool(options.get("fullgraph", True)),
            "neff_cache_files": len(cached),
            "device": "neuron",
        }
        self._compiled = (Path(path), used, run)
        return used

    def prepare_load(self, path: Path, options: Mapping[str, Any], env: MutableMapping[str, str] | None = None) -> Path:
        """Unpack the artifact (once per model folder; a temporary folder where that is read-only) and set the SDK's
        variables to its NEFF cache. Call before the SDK is imported (infkit.serve.core.runtime does)."""
        path = Path(path)
        target = path.with_name(path.name + ".d")
        digest = sha256(path)
        if (target / SOURCE).is_file() and (target / SOURCE).read_text() != digest:  # unpacked from another artifact
            shutil.rmtree(target, ignore_errors=True)
        if not (target / PROGRAM).is_file():
            try:
                staging = Path(tempfile.mkdtemp(prefix=".unpack-", dir=path.parent))
            except OSError:
                target = staging = Path(tempfile.mkdtemp(prefix="infkit-neuron-native-"))
            with tarfile.open(path) as tar:
                tar.extractall(staging, filter="data")
            (staging / SOURCE).write_text(digest)
            if staging != target:
                try:
                    os.replace(staging, target)
                except OSError:  # another worker unpacked it first: use theirs
                    if (target / PROGRAM).is_file():
                        shutil.rmtree(staging, ignore_errors=True)
                    else:
                        target = staging
        set_environment(options, target / CACHE, env)
        return target

    def load(self, path, threads: int | None = None, *, options: Mapping[str, Any] | None = None):
        """A callable on CPU tensors (moved to the neuron device and back). `options`: the backend options recorded in
        the manifest; without them, the model this instance just compiled."""
        if options is None and self._compiled and self._compiled[0] == Path(path):
            return self._compiled[2]
        options = dict(options or {})
        folder = self.prepare_load(path, options)
        module = torch.export.load(str(folder / PROGRAM)).module()
        run = _compiled(module, options)
        # the NEFFs come from the packed cache: one call per compiled shape loads them before traffic does
        shape = options.get("input_shape")
        if shape:
            _warm_up(run, torch.zeros(1, *shape), options.get("compiled_batch_sizes") or [])
        return run

    def versions(self) -> dict[str, str]:
        return {"torch-neuronx": neuron_stack.installed("torch-neuronx") or "unknown"}
