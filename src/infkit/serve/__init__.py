"""Serving logic as plain functions; handlers/infkit_handler.py only adapts TorchServe to them."""
