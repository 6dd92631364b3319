"""One TorchServe worker's start-up, as a separate process, with the recording Neuron SDK stand-in (tests only).

    python -m tests.recording_neuron_sdk.worker <model dir extracted from a .mar> <image>

Loads the handler file packed in the model dir and initializes it with what TorchServe passes (model_dir and the
.mar's model-config.yaml), serves a batch of three copies of one image, and prints one JSON line: the environment
each stand-in module saw when it was imported, the recorded calls, and the answers."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import yaml

from tests.recording_neuron_sdk.importer import install


class Context:
    def __init__(self, model_dir: Path):
        self.system_properties = {"model_dir": str(model_dir), "gpu_id": None}
        self.model_yaml_config = yaml.safe_load((model_dir / "model-config.yaml").read_text())

    def get_request_header(self, idx, key):
        return None

    def set_response_status(self, code=200, phrase="", idx=0):
        raise AssertionError(f"unexpected status {code} {phrase}")


def main(model_dir: Path, image: Path) -> dict:
    sdk, uninstall = install()
    try:
        spec = importlib.util.spec_from_file_location("infkit_handler", model_dir / "infkit_handler.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        handler = module.InfkitHandler()
        context = Context(model_dir)
        handler.initialize(context)
        answer = handler.handle([{"body": image.read_bytes()}] * 3, context)
    finally:
        uninstall()
    return {
        "imports": sdk.imports,
        "calls": [[c.name, c.env] for c in sdk.calls],
        "answer": answer,
        "min_workers": context.model_yaml_config["minWorkers"],
    }


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1]), Path(sys.argv[2]))))
