# Twin Platform: `make run` runs the whole platform on the sample data, `make test` runs the tests.
VENV ?= .venv
BIN := $(VENV)/bin
export DEEPEVAL_TELEMETRY_OPT_OUT := YES
export LITELLM_LOCAL_MODEL_COST_MAP := True
export HF_HUB_OFFLINE := 1
export WANDB_MODE ?= offline

.PHONY: install run test test-all lint format docs stop lock

$(VENV)/.installed: pyproject.toml requirements.lock scripts/install.sh
	bash scripts/install.sh

install: $(VENV)/.installed

run: install
	$(BIN)/twin run

test: install
	$(BIN)/pytest

test-all: install
	$(BIN)/pytest -m ""

lint: install
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

format: install
	$(BIN)/ruff check --fix . && $(BIN)/ruff format .

docs: install
	$(BIN)/python scripts/settings_table.py --write

stop:
	$(BIN)/twin down

# Some machines keep a CPU build of torch in /opt/wheels; the lock pins torch without its local
# label (+cpu), which any build of that version satisfies.
lock: install
	$(BIN)/uv pip compile pyproject.toml --extra dev $(if $(wildcard /opt/wheels),--find-links /opt/wheels) --python-version 3.11 -o requirements.lock
	sed -i 's/^torch==\([0-9.]*\)+cpu$$/torch==\1/' requirements.lock
