# Two set-up commands on a fresh machine: `make train` and `make test` (see README.md).
# dsc is installed (editable, with the dev extras) into a virtual environment of this checkout,
# $(VENV), which sees the machine's packages (torch is not installed twice) and never changes
# another checkout's install. `make … VENV=` installs into the current environment instead.
PYTHON ?= python3
VENV ?= .venv
STAMP := .installed.stamp
INSTALL_LOG := install.log
RUN := $(if $(VENV),$(VENV)/bin/python,$(PYTHON))
# pytest's worker processes (pytest-xdist): one per CPU core; TEST_WORKERS=0 runs in this process.
TEST_WORKERS ?= auto

.PHONY: install train demo test test-fast lint format clean

# Again only when pyproject.toml changed; pip's output goes to $(INSTALL_LOG), shown if it fails.
$(STAMP): pyproject.toml
	@echo "installing dsc into $(if $(VENV),$(VENV)/,the current environment) (once; pip's output in $(INSTALL_LOG)) …"
	@: > $(INSTALL_LOG)
	@{ $(if $(VENV),test -x $(VENV)/bin/python || $(PYTHON) -m venv --system-site-packages $(VENV) &&) \
	  $(RUN) -m pip install -e ".[dev]"; } >> $(INSTALL_LOG) 2>&1 \
	  || { cat $(INSTALL_LOG); echo "installing dsc failed; pip's output above is in $(INSTALL_LOG)"; exit 1; }
	@touch $(STAMP)

install: $(STAMP)

train: $(STAMP)
	$(RUN) -m dsc.train $(ARGS)

demo: $(STAMP)
	$(RUN) -m dsc.demo $(ARGS)

test: $(STAMP)
	$(RUN) -m pytest -n $(TEST_WORKERS)

test-fast: $(STAMP)
	$(RUN) -m pytest -n $(TEST_WORKERS) -m "not slow"

lint: $(STAMP)
	$(RUN) -m ruff check .
	$(RUN) -m ruff format --check .

format: $(STAMP)
	$(RUN) -m ruff format .
	$(RUN) -m ruff check --fix .

clean:
	rm -rf $(STAMP) $(INSTALL_LOG) $(VENV) logs outputs demo .pytest_cache build *.egg-info
