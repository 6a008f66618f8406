# Two commands do all set-up on a fresh machine:
#   make demo   the end-to-end recipe on a corpus the project generates itself
#   make test   the test suite
# Both create .venv/ (pinned by requirements/constraints.txt) and install the Debian tools they need.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP_INSTALL := $(PY) -m pip install --disable-pip-version-check -q -c requirements/constraints.txt
DEBIAN_PACKAGES := sox espeak-ng flite festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts libsndfile1
APT := $(shell [ "$$(id -u)" = 0 ] && echo apt-get || echo sudo apt-get)
# The suite runs in one process per core (pytest-xdist, at most 4), a test file at a time per process so its module
# fixtures are built once; `make test PYTEST_ARGS=` runs it in one process.
PYTEST_ARGS ?= -n auto --maxprocesses=4 --dist loadfile

.PHONY: test demo bench soak install system-deps clean

$(VENV)/.installed: requirements/constraints.txt requirements/base.in requirements/test.in setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP_INSTALL) -r requirements/base.in -r requirements/test.in
	$(PIP_INSTALL) --no-deps --no-build-isolation -e .
	touch $@

install: $(VENV)/.installed system-deps

# Debian tools the corpus generator and audio tests call; installed only when missing.
system-deps:
	@missing=""; for pkg in $(DEBIAN_PACKAGES); do dpkg -s $$pkg >/dev/null 2>&1 || missing=1; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages: $(DEBIAN_PACKAGES)"; \
	  $(APT) update -qq && DEBIAN_FRONTEND=noninteractive $(APT) install -y -qq $(DEBIAN_PACKAGES) >/dev/null; \
	fi

test: install
	$(PY) -m pytest $(PYTEST_ARGS)

# RECIPE_ARGS adds crnn-recipe flags, e.g. make demo RECIPE_ARGS="--num_utterances=6000 --epochs=10".
# FSDD=<checkout of the Free Spoken Digit Dataset> adds real speech: train on all speakers but jackson, test on him.
# With real speech in training, foreign-accented synthetic voices and the FFNN + CLSTM combination made the fewest
# errors over the six leave-one-speaker-out folds; without it the accented voices hurt (docs/real_speech.md).
RECIPE_ARGS ?=
FSDD ?=
FSDD_ARGS := --fsdd=$(FSDD) --synthesizers=espeak,flite,espeak_foreign --combine=ENS=FFNN+CLSTM
DEMO_DIR := $(if $(FSDD),exp/demo_fsdd,exp/demo)
demo: install
	$(PY) -m tools.recipe --work_dir=$(DEMO_DIR) --report_dir=report $(if $(FSDD),$(FSDD_ARGS)) $(RECIPE_ARGS)

bench: install
	$(PY) bench/run_all.py

# Loopback soak of crnn-serve: 10,000 REST and gRPC requests at concurrency 32, 5 % malformed (bench/serving_soak.py).
SOAK_ARGS ?=
soak: install
	$(PY) bench/serving_soak.py $(SOAK_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
