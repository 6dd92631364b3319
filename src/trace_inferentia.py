"""Compile a trained checkpoint: python src/trace_inferentia.py experiment=digits_example ckpt_path=<ckpt> [compile=onnx]"""

import sys

import hydra
from omegaconf import DictConfig

from infkit.compile.run import run
from infkit.utils.cli import check_group_choices, log, report_errors


@hydra.main(version_base="1.3", config_path="../configs", config_name="trace.yaml")
@report_errors
def main(cfg: DictConfig) -> None:
    result = run(cfg)
    for path in result.artifacts:
        log.info("artifact: %s", path)
    log.info("manifest: %s", result.manifest_path)


if __name__ == "__main__":
    check_group_choices(sys.argv[1:], ("experiment", "data", "model", "compile"))
    main()
