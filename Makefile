# Two set-up commands on a fresh machine: `make train` and `make test` (see README.md).
PYTHON ?= python3
STAMP := .installed.stamp

.PHONY: install train demo test test-fast lint format clean

# Install the package (editable) with the dev extras, again only when pyproject.toml changed.
$(STAMP): pyproject.toml
	$(PYTHON) -m pip install -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

train: $(STAMP)
	$(PYTHON) -m dsc.train $(ARGS)

demo: $(STAMP)
	$(PYTHON) -m dsc.demo $(ARGS)

test: $(STAMP)
	$(PYTHON) -m pytest

test-fast: $(STAMP)
	$(PYTHON) -m pytest -m "not slow"

lint: $(STAMP)
	$(PYTHON) -m ruff check .
	$(PYTHON) -m ruff format --check .

format: $(STAMP)
	$(PYTHON) -m ruff format .
	$(PYTHON) -m ruff check --fix .

clean:
	rm -rf $(STAMP) logs outputs demo .pytest_cache build *.egg-info
