# The two README commands: `make run` (the main job) and `make test` (the tests).
VENV ?= .venv
PYTHON := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install run test lint fmt typecheck docker-build docker-up docker-gpu docker-down

# setup.py and the .proto files too: the install generates core/tfserving_protos from them.
$(STAMP): pyproject.toml setup.py $(shell find core/tfserving_protos/third_party -name '*.proto')
	test -x $(PYTHON) || python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip setuptools wheel
	$(PYTHON) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# The local stack: fetch the data, train the default models if models/ lacks them, then run
# the model server, the gateway and Prometheus (where installed) until Ctrl-C.
run: install
	$(VENV)/bin/housing serve stack

# The suite with a line-coverage report of the packages (subprocesses the tests start are
# not measured). COV_FLOOR is the total measured on this project's CI, rounded down: a
# change that drops coverage below it fails the run (measured: 74%, 10,155 statements).
COV_FLOOR ?= 74
COV := --cov=core --cov=training --cov=service --cov=pipelines --cov=deploy

test: install
	$(PYTHON) -m pytest -q -ra $(COV) --cov-report=term:skip-covered --cov-fail-under=$(COV_FLOOR)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

fmt: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

typecheck: install
	$(VENV)/bin/mypy

# The docker stack (needs Docker with the compose plugin; not available on this project's CI).
# Plain `docker compose up --build` works as well: no folder or variable needs preparing.
docker-build:
	docker compose build

docker-up:
	docker compose up --build

docker-gpu:
	HOUSING_KERAS_TARGET=tfserving-gpu:8500 docker compose --profile gpu up --build

docker-down:
	docker compose --profile gpu --profile load down

# Load and benchmarks. `make load HOST=http://127.0.0.1:8000` runs locust headless against a
# running gateway (thresholds: load_tests/thresholds.toml; reports in runs/load/); `make bench`
# starts `housing serve stack` as `make run` does and measures both models against plain
# FastAPI, MLServer and MLflow serving the same sklearn pipeline.
.PHONY: load bench
HOST ?= http://127.0.0.1:8000

load: install
	$(PYTHON) load_tests/run_locust.py --host $(HOST)

bench: install
	$(PYTHON) load_tests/peers/bench_peers.py
