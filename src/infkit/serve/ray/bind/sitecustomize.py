"""Loaded by the Python processes of infkit's private Ray only (this folder is on their PYTHONPATH, and it acts only
when INFKIT_RAY_BIND is set): the gRPC servers Ray Serve starts in Python on every interface ("[::]:port": the
gRPC proxy, and each replica's server for calls between deployments) bind INFKIT_RAY_BIND (127.0.0.1) instead,
and the gRPC proxy's port (INFKIT_RAY_GRPC_PORT) binds INFKIT_RAY_GRPC_HOST (serve.server.address). Ray 2.60 has no
setting for these addresses; tests/integration/test_ray_engine.py lists every listening socket to prove the effect.
"""

import os


def _patch() -> None:
    bind = os.environ.get("INFKIT_RAY_BIND")
    if not bind:
        return
    public_port = os.environ.get("INFKIT_RAY_GRPC_PORT", "")
    public_host = os.environ.get("INFKIT_RAY_GRPC_HOST", bind)

    def rewrite(address):
        host, _, port = str(address).rpartition(":")
        if host not in ("[::]", "0.0.0.0", "::", ""):
            return address
        target = public_host if port == public_port else bind
        return f"[{target}]:{port}" if ":" in target else f"{target}:{port}"

    try:
        import grpc._server as sync_server
        import grpc.aio._server as aio_server
    except ImportError:
        return
    for cls in (sync_server._Server, aio_server.Server):
        for name in ("add_insecure_port", "add_secure_port"):
            original = getattr(cls, name, None)
            if original is None or getattr(original, "_infkit", False):
                continue

            def patched(self, address, *args, _original=original, **kwargs):
                return _original(self, rewrite(address), *args, **kwargs)

            patched._infkit = True
            setattr(cls, name, patched)


def _default_grpc_app() -> None:
    """Serve's gRPC proxy picks the application from the call's `application` metadata, or takes the only routed
    application when there is one. infkit's model applications have HTTP routes of their own (/predictions/<model>),
    so there are several, and TorchServe's gRPC clients send no such metadata: a call without it goes to
    INFKIT_RAY_GRPC_APP (the ingress application). Patched when Serve's proxy router module is first imported."""
    app = os.environ.get("INFKIT_RAY_GRPC_APP")
    if not app:
        return
    import importlib.abc
    import importlib.util
    import sys

    target = "ray.serve._private.proxy_router"

    class Finder(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target_module=None):
            if name != target:
                return None
            sys.meta_path.remove(self)
            spec = importlib.util.find_spec(name)
            if spec is None or spec.loader is None:
                return spec
            run = spec.loader.exec_module

            def exec_module(module):
                run(module)
                router = getattr(module, "ProxyRouter", None)
                original = getattr(router, "get_handle_for_endpoint", None)
                if original is None:
                    return

                def get_handle_for_endpoint(self, target_app_name, _original=original):
                    return _original(self, target_app_name or app)

                router.get_handle_for_endpoint = get_handle_for_endpoint

            spec.loader.exec_module = exec_module
            return spec

    if target not in sys.modules:
        sys.meta_path.insert(0, Finder())


_patch()
_default_grpc_app()
