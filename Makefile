# The two commands of the README:
#   make run   fetch the default models, build, and serve on 127.0.0.1:50051 (metrics :9464)
#   make test  fetch the default models, set up the Python client and Prometheus, run every test
PYTHON ?= python3
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
VENV := .venv

.PHONY: run test models pydeps sysdeps fmt

run: models
	cargo run --release -- serve $(ARGS)

test: models pydeps sysdeps
	LETHE_PYTHON=$(CURDIR)/$(VENV)/bin/python cargo test --locked

models:
	./scripts/fetch-models.sh

# grpcio/grpcio-tools for the Python example client, in a virtualenv of the project's own.
pydeps: $(VENV)/.installed
$(VENV)/.installed: examples/python/requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet -r examples/python/requirements.txt
	touch $@

# Prometheus and promtool (Debian's `prometheus` package) for the monitoring tests.
sysdeps:
	@command -v prometheus >/dev/null && command -v promtool >/dev/null || { \
	  echo "installing Debian's prometheus package (prometheus, promtool) for the monitoring tests"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends prometheus; }

fmt:
	cargo fmt --all
