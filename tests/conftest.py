"""Shared fixtures: the real Hydra configs made tiny, and one trained digits model per session."""

from __future__ import annotations

import logging
import os
import pickle
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from filelock import FileLock

from infkit.utils.compose import compose_config

ROOT = Path(__file__).resolve().parents[1]

# a tiny but real training run: digits, resnet18, a few batches of one epoch, no progress bar
TINY_TRAIN = [
    "experiment=digits_example",
    "trainer.max_epochs=1",
    "+trainer.limit_train_batches=3",
    "+trainer.limit_val_batches=2",
    "+trainer.limit_test_batches=2",
    "+trainer.enable_progress_bar=false",
    "~callbacks.rich_progress_bar",
    "~callbacks.early_stopping",
]


def run_entry(script: str, *overrides: str, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run an entry script the way a user does, from `cwd` (its logs/ land there)."""
    env = {**os.environ, "HYDRA_FULL_ERROR": "0", "PYTHONWARNINGS": "ignore"}
    return subprocess.run(
        [sys.executable, str(ROOT / "src" / script), *overrides],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@dataclass
class Ran:
    """What an entry's main() did in this process: the exit status and what it printed (as a CompletedProcess)."""

    returncode: int
    stdout: str
    stderr: str


def _logging_state() -> dict:
    loggers = [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]
    return {
        lg: (lg.handlers[:], lg.level, lg.propagate, lg.disabled) for lg in loggers if isinstance(lg, logging.Logger)
    }


def _restore_logging(saved: dict) -> None:
    """Every logger's handlers as they were (and the settings of those that existed): Hydra's handlers, and those a
    library added on import while the call's output was captured, would write to this test's closed streams later."""
    for lg in [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]:
        if not isinstance(lg, logging.Logger):
            continue
        handlers, *settings = saved.get(lg, ([], lg.level, lg.propagate, lg.disabled))
        for handler in lg.handlers:
            if handler not in handlers:
                handler.close()
        lg.handlers[:] = handlers
        lg.level, lg.propagate, lg.disabled = settings


@pytest.fixture
def call_main(capsys):
    """call_main(main, *argv, cwd=...): an entry's main(argv) in this process, from `cwd` (its logs/ land there), for
    the error cases: the same code path as the script, without a new interpreter importing torch each time (the
    subprocess runs stay in one smoke test per entry point). Hydra's logging setup is undone after the call."""

    def call(main, *argv: str, cwd: Path) -> Ran:
        saved = _logging_state()
        here = os.getcwd()
        capsys.readouterr()
        os.chdir(cwd)
        try:
            code = main(list(argv))
        finally:
            os.chdir(here)
            _restore_logging(saved)
        out = capsys.readouterr()
        return Ran(code, out.out, out.err)

    return call


@pytest.fixture(scope="session", autouse=True)
def ctrl_c_reaches_python():
    """A suite started in the background (`nohup make test &`, some CI runners) inherits SIGINT ignored, and then
    neither this process nor its children ever see Ctrl-C: the tests that press it would wait for nothing. Restore
    Python's handler for the session (children inherit the default action and install theirs)."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        yield
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    else:
        yield


def built_once(tmp_path_factory, name: str, build):
    """build(folder) once for the whole run. Alone, in a folder of this session. Under pytest-xdist (`make test`
    runs its workers in parallel), in a folder the workers share: the first to ask builds it under a file lock,
    the others wait for it and read its (pickled) result, so a training or a compile is never done twice."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return build(tmp_path_factory.mktemp(name))
    shared = tmp_path_factory.getbasetemp().parent  # this run's base folder, above each worker's own
    out, done = shared / name, shared / name / "built.pickle"
    with FileLock(str(shared / f"{name}.lock")):
        if done.exists():
            return pickle.loads(done.read_bytes())
        out.mkdir(exist_ok=True)
        result = build(out)
        done.write_bytes(pickle.dumps(result))
        return result


@pytest.fixture(scope="session")
def tiny_trained(tmp_path_factory):
    """A checkpoint from a tiny real training run (seconds)."""
    from infkit.train import run as train_stage

    return built_once(
        tmp_path_factory, "tiny_train", lambda out: train_stage.run(compose_config("train", TINY_TRAIN, out))
    )


@pytest.fixture(scope="session")
def digits_trained(tmp_path_factory):
    """The full digits_example experiment, as `python src/train.py experiment=digits_example` runs it."""
    from infkit.train import run as train_stage

    overrides = ["experiment=digits_example", "+trainer.enable_progress_bar=false", "~callbacks.rich_progress_bar"]
    return built_once(
        tmp_path_factory, "digits_train", lambda out: train_stage.run(compose_config("train", overrides, out))
    )


@pytest.fixture
def neuron_sdk():
    """The recording stand-in for torch_neuron / torch_neuronx (tests/recording_neuron_sdk): imported by infkit's
    lazy SDK import while the test runs, removed after. It records call shapes; it compiles nothing."""
    from tests.recording_neuron_sdk.importer import install

    sdk, uninstall = install()
    try:
        yield sdk
    finally:
        uninstall()


@pytest.fixture
def neuron_env():
    """os.environ without NEURON_RT_NUM_CORES / NEURON_RT_VISIBLE_CORES (no operator setting), restored after."""
    keys = ("NEURON_RT_NUM_CORES", "NEURON_RT_VISIBLE_CORES")
    saved = {k: os.environ.pop(k) for k in keys if k in os.environ}
    try:
        yield os.environ
    finally:
        for k in keys:
            os.environ.pop(k, None)
        os.environ.update(saved)


def compile_digits(tmp_path_factory, trained, backend: str, *overrides: str):
    """compile=<backend> of a trained digits model, built once per run (built_once); the CompileResult."""
    from infkit.compile import run as compile_stage

    def build(out: Path):
        return compile_stage.run(
            compose_config(
                "trace",
                ["experiment=digits_example", f"ckpt_path={trained.best_ckpt}", f"compile={backend}", *overrides],
                out,
            )
        )

    return built_once(tmp_path_factory, f"compiled-{backend}", build)


@pytest.fixture(scope="session")
def int8_compiled(digits_trained, tmp_path_factory):
    """compile=onnx_int8 of the fully trained digits model (int8 is judged on a model that has learnt something);
    shared by the compile, handler and live-server tests."""
    return compile_digits(tmp_path_factory, digits_trained, "onnx_int8", "compile.batch_sizes=[1,3,8]")


@pytest.fixture(scope="session")
def export_compiled(digits_trained, tmp_path_factory):
    """compile=export (AOTInductor: a minute or more of C++ compilation), once per session; shared as above."""
    return compile_digits(tmp_path_factory, digits_trained, "export", "compile.batch_sizes=[1,3,8]")


def pytest_runtest_setup(item):
    """CI=true: a test whose component is missing (tests/helpers/run_if.py) fails, naming it."""
    marker = item.get_closest_marker("missing_component")
    if marker is not None:
        pytest.fail(f"CI=true and this test's component is missing: {marker.kwargs['reason']}", pytrace=False)


#: the modules whose tests share one server (a session- or module-scoped fixture): under pytest-xdist each group runs
#: on one worker, so each server starts once. `make test` runs `pytest -n 4 --dist loadgroup`; xdist's own loadgroup
#: reads groups from node ids that pytest 9.2 no longer lets it change (pytest-xdist#1386), so the scheduler below
#: groups by module name instead, and collection checks that every test of a shared server is in its module's group.
SERVER_MODULES = {
    "test_live_server.py": "running_server",
    "test_live_bench.py": "running_server",
    "test_stage_split.py": "running_server",
    "test_ray_engine.py": "ray_server",
}
#: the session's builds from the fully trained digits model (tests/conftest.py, tests/integration/conftest.py)
DIGITS_FIXTURES = ("digits_trained", "int8_compiled", "export_compiled", "onnx_compiled", "torchscript_compiled")


def _parallel_order(items: list) -> list:
    """The order the xdist workers take tests in (each worker collects the same order): the live TorchServe's tests
    first (they need the trained model and all four compiles: the longest chain); then one test for each compile, so
    that the other workers run the compiles beside it once the model is trained, not one after another; then the
    tests that need none of the digits builds; then the rest."""
    live = [it for it in items if "running_server" in it.fixturenames]
    others = [it for it in items if it not in live]
    starters = []
    for build in ("export_compiled", "onnx_compiled", "torchscript_compiled"):  # the longest compile first
        first = next((it for it in others if build in it.fixturenames and it not in starters), None)
        if first is not None:
            starters.append(first)
    others = [it for it in others if it not in starters]
    free = [it for it in others if not set(DIGITS_FIXTURES) & set(it.fixturenames)]
    rest = [it for it in others if it not in free]
    return live + starters + _long_first(free) + _long_first(rest)


#: modules of tests that take 30 s or more each (tune's candidates, bench_model's backends, Ray clusters, training
#: runs): started early, so that no worker is left with one of them at the end while the others have finished
LONG_MODULES = (
    "test_tune.py",
    "test_model_bench.py",
    "test_ray_cluster.py",
    "test_ray_neuron_contract.py",
    "test_serve_failures.py",
    "test_cli.py",
    "test_ddp.py",
)


def _long_first(items: list) -> list:
    return sorted(items, key=lambda it: it.path.name not in LONG_MODULES)  # stable: collection order otherwise


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """--dist loadgroup: one work unit per SERVER_MODULES group, one per test otherwise; the largest units first
    (xdist's default reordering), then collection order."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class SharedServerScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return SERVER_MODULES.get(Path(nodeid.split("::", 1)[0]).name, nodeid)

    return SharedServerScheduling(config, log)


def pytest_collection_modifyitems(config, items):
    """tests/test_serve runs against a live server: without --public_ip, beside other tests (as in `make test`,
    where tests/integration/test_live_server.py runs it against real servers), it is deselected rather than
    reported as skipped; alone, its tests skip and say what to pass. Under pytest-xdist, the order puts the longest
    chain first."""
    if not config.getoption("--public_ip"):
        live = [it for it in items if "test_serve" in it.path.parts]
        if live and len(live) < len(items):
            config.hook.pytest_deselected(items=live)
            items[:] = [it for it in items if it not in live]
    for it in items:
        for name in set(SERVER_MODULES.values()) & set(it.fixturenames):
            if SERVER_MODULES.get(it.path.name) != name:
                raise pytest.UsageError(
                    f"{it.nodeid} uses the shared {name}: add {it.path.name!r}: {name!r} to SERVER_MODULES in "
                    "tests/conftest.py, so that its tests run on the worker that starts it"
                )
    if os.environ.get("PYTEST_XDIST_WORKER"):
        items[:] = _parallel_order(items)


# -- live-server options (tests/test_serve) ------------------------------------------------------
def pytest_addoption(parser):
    group = parser.getgroup("infkit live server", "tests/test_serve against a running TorchServe")
    group.addoption("--public_ip", default=None, help="address of a running TorchServe; without it the live tests skip")
    group.addoption("--model", default=None, help="model name on that server, e.g. digits_resnet18_onnx")
    group.addoption(
        "--dataset",
        default=None,
        help="folder under tests/resources with <idx>_<label>.png images (default: the model name's "
        "first word, e.g. digits)",
    )
    group.addoption("--http-port", type=int, default=8080, help="inference API port")
    group.addoption("--grpc-port", type=int, default=7070, help="gRPC inference port")
    group.addoption("--metrics-port", type=int, default=8082, help="metrics API port")
    group.addoption(
        "--key-file",
        default="logs/serve/key_file.json",
        help="TorchServe's key_file.json (token authorization); --token overrides it",
    )
    group.addoption("--token", default=None, help="inference token (default: read from --key-file)")
