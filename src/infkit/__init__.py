"""infkit: train a timm image classifier, compile it, serve it with TorchServe and measure it."""

__version__ = "0.1.0"
