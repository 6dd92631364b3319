"""Train a timm classifier: python src/train.py experiment=digits_example [key=value ...]"""

import sys

import hydra
from omegaconf import DictConfig

from infkit.train.run import run
from infkit.utils.cli import check_group_choices, log, report_errors


@hydra.main(version_base="1.3", config_path="../configs", config_name="train.yaml")
@report_errors
def main(cfg: DictConfig) -> float | None:
    result = run(cfg)
    if result is None:  # a distributed run's other processes: rank 0 reports
        return None
    log.info("best checkpoint: %s", result.best_ckpt)
    log.info("test metrics:    %s (test/acc=%.4f)", result.metrics_path, result.metrics.get("test/acc", float("nan")))
    return result.metrics.get("test/acc")


if __name__ == "__main__":
    check_group_choices(sys.argv[1:], ("experiment", "data", "model", "trainer", "logger", "callbacks"))
    main()
