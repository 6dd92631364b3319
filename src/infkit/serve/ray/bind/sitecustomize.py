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


_patch()
