# The two commands a new user runs: `make demo` and `make test`. Both create
# .venv and install jaxgen into it on first use (and again when setup.py changes).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
# Two pytest workers (pytest-xdist): the suite is compile-bound, one worker per core of a 2-core machine.
PYTEST_ARGS ?= -n 2 --dist loadfile

.PHONY: demo test test-all venv clean

$(STAMP): setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

# Trains the default VAE on the bundled mnist5k digits; writes runs/demo/.
demo: $(STAMP)
	$(PY) -m jaxgen.main --config=configs/vae/mnist5k.py --workdir=runs/demo
	@echo "Demo outputs in runs/demo: samples/*.png, metrics.jsonl, tensorboard/, checkpoints/"

# The default suite (slow tests excluded; see pytest.ini). Exit code 5 = no test ran: reported, never success.
test: $(STAMP)
	@$(PY) -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests (exit 5) - failing."; fi; exit $$rc

test-all: $(STAMP)
	$(PY) -m pytest -m "" $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) runs .pytest_cache
