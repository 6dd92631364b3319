"""Training stage: `run(cfg)` fits a timm classifier with Lightning and tests the best checkpoint."""
