"""Packaging stage: a compiled artifact + manifest + handler -> model_store/<name>.mar."""
