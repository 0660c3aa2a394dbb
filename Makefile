# The two commands of the README:
#   make run   fetch the default models, build, and serve on 127.0.0.1:50051 (metrics :9464)
#   make test  fetch the default models, set up the Python client, Prometheus and the deployment
#              linters (hadolint, kubectl, kubernetes-validate), run every test
PYTHON ?= python3
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
VENV := .venv

.PHONY: run test models pydeps sysdeps fmt k8s-rules demo fuzz

run: models
	cargo run --release -- serve $(ARGS)

# The tests that depend on what the real model says run a second time on candle's AVX2 kernels
# (MISTRALRS_FORCE_AVX2=1 is candle's switch; a no-op on an AVX2-only host): greedy tokens differ
# between an AVX-512 VNNI host and an AVX2 one, and the suite must hold on both.
MODEL_TESTS := --test serve_smollm2 --test guard_smollm2 --test prometheus --test python_client --test openai_smollm2 --test openai_python
test: models pydeps sysdeps
	LETHE_PYTHON=$(CURDIR)/$(VENV)/bin/python cargo test --locked
	MISTRALRS_FORCE_AVX2=1 LETHE_PYTHON=$(CURDIR)/$(VENV)/bin/python cargo test --locked $(MODEL_TESTS)

models:
	./scripts/fetch-models.sh

# The end-to-end demo (README, Demo): plant a biography, leak it, forget it at run time, then in
# the weights, hot-swap the model; prints each step and the metrics. A few minutes on 2 cores.
demo: models
	./scripts/demo.sh

# In a virtualenv of the project's own: grpcio/grpcio-tools for the Python example client;
# hadolint and kubernetes-validate for the deployment tests (tests/deploy.rs).
pydeps: $(VENV)/.installed
$(VENV)/.installed: examples/python/requirements.txt deploy/requirements-lint.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet -r examples/python/requirements.txt -r deploy/requirements-lint.txt
	touch $@

# Debian packages for the tests, each installed only when missing: `prometheus` (prometheus,
# promtool) for the monitoring tests; `kubernetes-client` (kubectl, whose built-in kustomize
# renders deploy/k8s) for the deployment tests; `postgresql` (initdb, postgres, pg_dump) for the
# shared forget store's tests, which start a throwaway cluster of their own.
sysdeps:
	@command -v prometheus >/dev/null && command -v promtool >/dev/null || { \
	  echo "installing Debian's prometheus package (prometheus, promtool) for the monitoring tests"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends prometheus; }
	@command -v kubectl >/dev/null || { \
	  echo "installing Debian's kubernetes-client package (kubectl) for the deployment tests"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends kubernetes-client; }
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { \
	  echo "installing Debian's postgresql package (initdb, postgres, pg_dump) for the shared-store tests"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends postgresql; }

# The PrometheusRule of deploy/k8s/monitoring is deploy/prometheus/alerts.yml inside the CRD's
# envelope: run this after changing the alerts (tests/deploy.rs fails while the two differ).
k8s-rules:
	{ printf '%s\n' \
	  '# Generated from deploy/prometheus/alerts.yml by `make k8s-rules`: edit that file, not this one.' \
	  'apiVersion: monitoring.coreos.com/v1' 'kind: PrometheusRule' 'metadata:' '  name: lethe' \
	  '  labels:' '    app.kubernetes.io/name: lethe' 'spec:'; \
	  sed 's/^\(.\)/  \1/' deploy/prometheus/alerts.yml; } > deploy/k8s/monitoring/prometheusrule.yaml

fmt:
	cargo fmt --all

# Fuzz one target (normalize, forget_list, store_log, request, chat, guard_text) for FUZZ_SECONDS
# with cargo-fuzz on a nightly toolchain (not in `make test`, which replays the committed
# corpora on stable: tests/fuzz_corpora.rs). New inputs land in fuzz/corpus/TARGET.
FUZZ_SECONDS ?= 600
fuzz:
	cd fuzz && cargo +nightly fuzz run $(TARGET) -- -max_total_time=$(FUZZ_SECONDS) -max_len=4096
