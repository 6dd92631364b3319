"""Loaded by the Python processes of infkit's private Ray only (this folder is on their PYTHONPATH, and it acts only
when INFKIT_RAY_BIND is set): the gRPC servers Ray Serve starts in Python on every interface ("[::]:port": the
gRPC proxy, and each replica's server for calls between deployments) bind INFKIT_RAY_BIND (127.0.0.1) instead,
and the gRPC proxy's port (INFKIT_RAY_GRPC_PORT) binds INFKIT_RAY_GRPC_HOST (serve.server.address). Ray 2.60 has no
setting for these addresses; tests/integration/test_ray_engine.py lists every listening socket to prove the effect.
With Serve's HAProxy ingress (INFKIT_HAPROXY_HTTP_HOST set) it also edits Serve's HAProxy config template: metrics
and stats frontends on the loopback, a 0600 admin socket, the frontends on serve.server.address, gRPC calls that name
no application to the ingress (HAPROXY_EDITS).
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
    _no_reuseport(aio_server, sync_server)


def _no_reuseport(aio_server, sync_server) -> None:
    """No SO_REUSEPORT on the gRPC servers of infkit's Ray. gRPC turns it on by default, and Serve 2.60 means to turn
    it off for each replica's direct-ingress server but passes ("grpc.so_reuseport", "0"), a string, which gRPC
    ignores: two private Rays on one machine then bind the same replica ports (40000, 40001, ...) and the kernel
    spreads one server's connections over both, so one server's HAProxy reached the other's ingress (seen as
    "Token Authorization failed": the other server's key). With the option an integer 0, a taken port fails to bind
    and Serve tries the next."""

    def without(options):
        return (*((k, v) for k, v in options or () if k != "grpc.so_reuseport"), ("grpc.so_reuseport", 0))

    original = aio_server.Server.__init__
    if not getattr(original, "_infkit", False):

        def __init__(self, thread_pool, generic_handlers, interceptors, options, *args, _original=original, **kw):
            _original(self, thread_pool, generic_handlers, interceptors, without(options), *args, **kw)

        __init__._infkit = True
        aio_server.Server.__init__ = __init__
    create = getattr(sync_server, "create_server", None)
    if create is not None and not getattr(create, "_infkit", False):

        def create_server(thread_pool, handlers, interceptors, options, *args, _original=create, **kw):
            return _original(thread_pool, handlers, interceptors, without(options), *args, **kw)

        create_server._infkit = True
        sync_server.create_server = create_server


def _after_import(target: str, change) -> None:
    """Run change(module) right after `target` is first imported (before any other module reads its names)."""
    import importlib.abc
    import importlib.util
    import sys

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
                change(module)

            spec.loader.exec_module = exec_module
            return spec

    if target not in sys.modules:
        sys.meta_path.insert(0, Finder())


def _default_grpc_app() -> None:
    """Serve's gRPC proxy picks the application from the call's `application` metadata, or takes the only routed
    application when there is one. infkit's model applications have HTTP routes of their own (/predictions/<model>),
    so there are several, and TorchServe's gRPC clients send no such metadata: a call without it goes to
    INFKIT_RAY_GRPC_APP (the ingress application). Patched when Serve's proxy router module is first imported."""
    app = os.environ.get("INFKIT_RAY_GRPC_APP")
    if not app:
        return

    def change(module):
        router = getattr(module, "ProxyRouter", None)
        original = getattr(router, "get_handle_for_endpoint", None)
        if original is None:
            return

        def get_handle_for_endpoint(self, target_app_name, _original=original):
            return _original(self, target_app_name or app)

        router.get_handle_for_endpoint = get_handle_for_endpoint

    _after_import("ray.serve._private.proxy_router", change)


#: Serve's HAProxy config template (Ray 2.60): what infkit changes in it, and to what
HAPROXY_EDITS = (
    # the Prometheus frontend and the stats page listen on every interface: the loopback only
    ("bind :{{ config.metrics_port }}", "bind 127.0.0.1:{{ config.metrics_port }}"),
    ("bind *:{{ config.stats_port }}", "bind 127.0.0.1:{{ config.stats_port }}"),
    # the admin socket (`level admin`: it can reconfigure HAProxy) is made mode 666: its owner only
    (
        "stats socket {{ config.socket_path }} mode 666 level admin",
        "stats socket {{ config.socket_path }} mode 600 level admin",
    ),
    # the HTTP frontend faces the clients (or the nginx front): serve.server.address, while Serve's own HTTP servers
    # (the replicas' direct ingress, the fallback proxy) keep http_options.host, the loopback
    (
        "bind {{ config.frontend_host }}:{{ config.frontend_port }}",
        "bind {{ infkit_http_host }}:{{ config.frontend_port }}",
    ),
    (
        "bind {{ config.grpc_frontend_host }}:{{ config.grpc_frontend_port }}",
        "bind {{ infkit_grpc_host }}:{{ config.grpc_frontend_port }}",
    ),
    # a gRPC call naming no application goes to the ingress application (TorchServe's clients name none)
    (
        "    default_backend default_grpc_backend\n",
        "    default_backend {{ (grpc_backends | selectattr('app_name', 'equalto', infkit_grpc_app)"
        " | map(attribute='name') | first) or 'default_grpc_backend' }}\n",
    ),
)


def _haproxy_host(host: str) -> str:
    """serve.server.address as HAProxy's `bind` takes it."""
    if host in ("0.0.0.0", ""):
        return "0.0.0.0"
    return f"ipv6@{host}" if ":" in host else host


def _haproxy_template() -> None:
    """With Serve's HAProxy ingress (serve.ray.ingress=haproxy), edit its config template: HAProxyManager renders it
    into <state_dir>/h. Every edit must apply: if Ray's template changed, HAProxy does not start (Serve names the
    error) rather than listen where infkit's settings say it must not."""
    http_host = os.environ.get("INFKIT_HAPROXY_HTTP_HOST")
    if not http_host:
        return
    names = {
        "infkit_http_host": _haproxy_host(http_host),
        "infkit_grpc_host": _haproxy_host(os.environ.get("INFKIT_RAY_GRPC_HOST", http_host)),
        "infkit_grpc_app": os.environ.get("INFKIT_RAY_GRPC_APP", ""),
    }

    def change(module):
        text = module.HAPROXY_CONFIG_TEMPLATE
        for old, new in HAPROXY_EDITS:
            if text.count(old) != 1:
                raise RuntimeError(
                    f"infkit: Ray Serve's HAProxy template has changed ({old!r} not found once); "
                    "serve with serve.ray.ingress=proxy or the Ray version infkit pins"
                )
            text = text.replace(old, new)
        prelude = "".join(f"{{%- set {k} = {v!r} %}}" for k, v in names.items())
        module.HAPROXY_CONFIG_TEMPLATE = prelude + text

    _after_import("ray.serve._private.haproxy_templates", change)


_patch()
_default_grpc_app()
_haproxy_template()
