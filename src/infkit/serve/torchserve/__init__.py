"""The TorchServe engine: its lifecycle (server), Java, logs and readiness. Used through infkit.serve.engine."""
