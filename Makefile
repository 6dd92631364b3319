# Every target sets up .venv on first use (and again when pyproject.toml or requirements.lock changes).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# the torch pair the dev environment is locked to (both lie on this project's machines' local disk)
TORCH_PAIR := torch==2.14.1 torchvision==0.29.1
# the torch-neuronx 2.9 pairing, for `make test-torch29`
TORCH29_PAIR := torch==2.9.1 torchvision==0.24.1
VENV29 ?= .venv-torch29

.PHONY: setup system-demo system-test demo test test-fast lint format lock test-torch29 clean

$(STAMP): pyproject.toml requirements.lock
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else "the dev environment is locked for Python 3.11 (requirements.lock): run make PYTHON=python3.11 ...")'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -qq --progress-bar off -r requirements.lock
	$(PY) -m pip install -qq --progress-bar off --no-deps -e .
	@touch $(STAMP)

setup: $(STAMP)

# what the machine must have beyond the venv (Java, nginx; for the suite also hey, g++, readelf): checked, and on
# Debian/Ubuntu installed with apt-get when missing (scripts/system_deps.py; INFKIT_NO_APT=1 only checks)
system-demo: setup
	$(PY) scripts/system_deps.py demo

system-test: setup
	$(PY) scripts/system_deps.py test

# the main job on the embedded default: train digits, compile, package, serve, live tests, stop
# (`make demo ENGINE=ray` serves with Ray Serve instead of TorchServe)
demo: setup system-demo
	$(PY) src/demo.py $(if $(ENGINE),--engine $(ENGINE))

# lint and format check (ruff, line length 120), then the whole suite, including one end-to-end run
# (train -> compile -> package -> serve -> live tests), in TEST_WORKERS pytest-xdist workers: much of the suite
# waits on servers starting and stopping, so 4 workers keep 2 cores busy. The training and the compiles are shared
# by the workers (built once, under a file lock); each server's tests run on one worker (tests/conftest.py).
# TEST_WORKERS=0 runs in one process. OMP_WAIT_POLICY=PASSIVE: with more busy threads than cores, torch's OpenMP
# threads sleep when they wait instead of spinning on cores another test needs (no test asserts a speed).
TEST_WORKERS ?= 4
test: setup lint system-test
	OMP_WAIT_POLICY=PASSIVE $(PY) -m pytest $(if $(filter-out 0,$(TEST_WORKERS)),-n $(TEST_WORKERS) --dist loadgroup)

lint: setup
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .

# rewrite the code in the project's format and apply ruff's safe fixes
format: setup
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# without the tests marked slow
test-fast: setup system-test
	$(PY) -m pytest -m "not slow"

# regenerate requirements.lock (exact pins of the dev environment) from pyproject.toml's ranges, and
# requirements-sdk.lock: the same pins without torch, torchvision, numpy and torch's CUDA wheels, for environments
# that bring their own torch (the Neuron SDK's): pip install -c requirements-sdk.lock -e .
lock: setup
	$(PY) -m pip install -qq --progress-bar off pip-tools
	CUSTOM_COMPILE_COMMAND="make lock" $(VENV)/bin/pip-compile -q --extra dev --extra java --extra ray --strip-extras --no-emit-index-url --no-emit-find-links \
		--no-emit-trusted-host \
		$(foreach p,$(TORCH_PAIR),--upgrade-package '$(p)') --output-file requirements.lock pyproject.toml
	$(PY) scripts/sdk_lock.py requirements.lock requirements-sdk.lock

# a second venv with the torch-neuronx pairing (torch 2.9): the fast suite and one train -> compile -> package ->
# serve round. Not part of `make test`: it downloads about 7 GB.
test-torch29:
	$(PYTHON) -m venv $(VENV29)
	$(VENV29)/bin/python -m pip install -qq --progress-bar off $(TORCH29_PAIR)
	$(VENV29)/bin/python -m pip install -qq --progress-bar off -c requirements-sdk.lock -e '.[dev]'
	$(VENV29)/bin/python -c 'import torch, torchvision; assert torch.__version__.startswith("2.9"), torch.__version__; print("torch", torch.__version__, "torchvision", torchvision.__version__)'
	$(VENV29)/bin/python -m pytest -m "not slow" -p no:cacheprovider
	$(VENV29)/bin/python -m pytest -p no:cacheprovider tests/integration/test_live_server.py -k "live_suite"

clean:
	rm -rf logs model_store .pytest_cache

# build docker/Dockerfile.cpu (infkit:cpu, TorchServe) and docker/Dockerfile.ray-onnx (infkit:ray-onnx: the Ray
# engine and ONNX Runtime, no torch, at most a quarter of infkit:cpu's size), serve a packaged digits ONNX model from
# each on loopback ports, run tests/test_serve against each container, then remove it. DOCKER_TEST_ARGS passes
# options on (--no-slim, --slim-only, --model-store DIR --model NAME). Not part of `make test`: it needs a Docker
# engine (docs/deployment.md).
.PHONY: docker-test
docker-test: setup
	$(PY) docker/docker_test.py $(DOCKER_TEST_ARGS)
