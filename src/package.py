"""Package a compiled model for TorchServe: python src/package.py artifact_dir=<compile run folder>"""

import sys

import hydra
from omegaconf import DictConfig

from infkit.package.run import run
from infkit.utils.cli import check_group_choices, log, report_errors


@hydra.main(version_base="1.3", config_path="../configs", config_name="package.yaml")
@report_errors
def main(cfg: DictConfig) -> None:
    result = run(cfg)
    log.info("model archive: %s (model name %s)", result.mar, result.model_name)


if __name__ == "__main__":
    check_group_choices(sys.argv[1:], ("serve",))
    main()
