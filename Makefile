# Keelson: one binary, everything through make.
#   make run    build and run a single-node cluster in the foreground (data in .run/)
#   make test   every test (unit, integration; as root also the e2e suite)
#   make bench  benchmarks side by side with upstream (etcd, kube-apiserver, kube-scheduler, Traefik, ...),
#               the whole control plane's memory among them (keelson vs etcd + kube-apiserver + kcm + kube-scheduler)
#   make bench-scale  kwok nodes + clusterloader2-style load, keelson (3 servers) vs upstream
#                     (SCALE_ARGS="-nodes 50 -pods-per-node 10" for a small run; not in make bench)
#   make conformance        upstream [Conformance] specs against a real cluster, offline
#                           (FOCUS=regexp SKIP=regexp HA=1; as root)
#   make conformance-smoke  the ~30 specs of conformance/smoke.txt
#   make conformance-gateway  Gateway API conformance, profile GATEWAY-HTTP (core and the extended
#                           features the plugin claims; GATEWAY_FEATURES=a,b adds more, GATEWAY_TEST=Name runs one)

SHELL         := /bin/bash
GO            ?= go
BIN           := $(CURDIR)/bin
KEELSON       := $(BIN)/keelson
RUN_DIR       ?= $(CURDIR)/.run
KEELSON_VERSION ?= 0.1.0
K8S_VERSION   := v1.37.2
GIT_COMMIT    := $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
BUILD_DATE    := $(shell date -u +%Y-%m-%dT%H:%M:%SZ)
# kube-apiserver and kubectl report the version stamped here (see
# core/apiserver/VERSION_LDFLAGS.md); unstamped they say v0.0.0-master.
VERSION_LDFLAGS := -X main.keelsonVersion=$(KEELSON_VERSION) \
	$(foreach p,k8s.io/component-base/version k8s.io/client-go/pkg/version,\
	-X $(p).gitVersion=$(K8S_VERSION)+keelson.$(KEELSON_VERSION) \
	-X $(p).gitMajor=1 -X $(p).gitMinor=37 \
	-X $(p).gitCommit=$(GIT_COMMIT) -X $(p).gitTreeState=clean \
	-X $(p).buildDate=$(BUILD_DATE))
GOFLAGS_BUILD := -trimpath -ldflags "$(VERSION_LDFLAGS)"
TEST_TIMEOUT  ?= 25m

.PHONY: all build run test bench bench-scale soak lint deps clean conformance conformance-smoke conformance-bins conformance-gateway

all: build

# build writes bin/keelson-plugins (the built-in plugins' multicall binary:
# client-go, the SDK and the controllers only), embeds it gzip-compressed
# with its SHA-256 in bin/keelson (tag keelson_embedplugins), and keelson
# extracts it into its data dir. Stripped (-s -w): it is 80 MB unstripped
# and only panics' function names matter, which Go keeps anyway.
PLUGINS_BIN   := $(BIN)/keelson-plugins
PLUGINS_EMBED := internal/pluginbin
build:
	@mkdir -p $(BIN)
	$(GO) build -trimpath -ldflags "-s -w $(VERSION_LDFLAGS)" -o $(PLUGINS_BIN) ./cmd/keelson-plugins
	gzip -1 -n -c $(PLUGINS_BIN) > $(PLUGINS_EMBED)/keelson-plugins.gz.tmp
	mv $(PLUGINS_EMBED)/keelson-plugins.gz.tmp $(PLUGINS_EMBED)/keelson-plugins.gz
	sha256sum $(PLUGINS_BIN) | cut -d' ' -f1 > $(PLUGINS_EMBED)/keelson-plugins.sha256
	$(GO) build -tags keelson_embedplugins $(GOFLAGS_BUILD) -o $(KEELSON) ./cmd/keelson

# deps installs what a fresh Debian machine lacks to run a cluster.
deps:
	@scripts/install-deps.sh

# run is a single-node cluster: its one server is also its only node, so it
# runs ordinary pods (--schedulable-control-plane: no control-plane taint).
run: deps build
	@mkdir -p $(RUN_DIR)
	@echo "keelson: data in $(RUN_DIR); in another shell:"
	@echo "  KUBECONFIG=$(RUN_DIR)/admin.kubeconfig $(KEELSON) kubectl get namespaces"
	$(KEELSON) server --data-dir $(RUN_DIR) --schedulable-control-plane $(ARGS)

# Tests get the same version stamp as the binary: kube-apiserver refuses to
# start with an unparseable version. The end-to-end packages run two at a
# time (E2E_PARALLEL): each starts clusters of real servers (and agents) on
# its own bridge, pod range, ports and cgroup root (internal/testnet), and
# most of their time is spent waiting on timers, so two side by side keep a
# 2-core machine busy without starving it; E2E_PARALLEL=1 runs them one by one.
E2E_PARALLEL ?= 2
GO_TEST = KEELSON_BIN=$(KEELSON) $(GO) test -trimpath -ldflags "$(VERSION_LDFLAGS)" -timeout $(TEST_TIMEOUT) -count=1
test: build
	$(GO_TEST) $$($(GO) list ./... | grep -v -e '/e2e$$' -e '/e2e/')
	$(GO_TEST) -p $(E2E_PARALLEL) ./e2e/...

bench: build
	$(GO) test -run '^$$' -bench . -benchmem ./fsm/ ./core/raftnode/ ./core/kvserver/ ./plugins/builtin/endpoints/ ./plugins/builtin/endpointslice/ ./plugins/builtin/garbagecollector/ ./plugins/builtin/internal/servicepods/ ./plugins/builtin/scheduler/internal/placement/ ./plugins/builtin/ingress/ ./plugins/builtin/metricsserver/
	scripts/bench-ingress.sh
	scripts/bench-kv.sh
	scripts/bench-api.sh
	scripts/bench-ha.sh
	$(GO) run ./bench/pluginbench -keelson-bin $(KEELSON) -keelson-plugins-bin $(PLUGINS_BIN)
	scripts/bench-workloads.sh
	scripts/bench-controllers.sh
	scripts/bench-controllers.sh -scope control-plane
	scripts/bench-sched.sh
	$(GO) run ./bench/nodebench -keelson-bin $(KEELSON)
	@if [ "$$(id -u)" = 0 ]; then \
		KEELSON_BIN=$(KEELSON) $(GO) test -run '^$$' -bench PodStartup -benchtime 3x -timeout 30m ./e2e/agent/; \
		KEELSON_BIN=$(KEELSON) $(GO) test -run '^$$' -bench MetricsScrape -benchtime 20x -timeout 30m ./e2e/agent/; \
		KEELSON_BIN=$(KEELSON) $(GO) test -run '^$$' -bench ProvisionAndBind -benchtime 1x -timeout 30m ./e2e/storage/; \
		KEELSON_BIN=$(KEELSON) $(GO) test -run '^$$' -bench LoadBalancerFailover -benchtime 1x -timeout 60m ./e2e/loadbalancer/; \
		KEELSON_BIN=$(KEELSON) $(GO) test -run '^$$' -bench IngressChangeToRoute -benchtime 1x -timeout 30m ./e2e/ingress/; \
	else echo "bench: pod startup, metrics scrapes, volume provisioning, LoadBalancer failover and Ingress change-to-route need root (containers); skipped"; fi
	$(GO) run ./bench/proxybench

# soak runs the HA fault-injection scenarios in random order for SOAK_TIME
# (as root: network namespaces, iptables).
SOAK_TIME ?= 30m
bench-scale: build
	KEELSON_BIN=$(KEELSON) scripts/bench-scale.sh $(SCALE_ARGS)

soak: build
	KEELSON_BIN=$(KEELSON) KEELSON_SOAK=$(SOAK_TIME) $(GO) test -run Soak -timeout 0 -count=1 -v ./e2e/ha/

# conformance builds, once (cached in .conformance/, rebuilt when
# conformance/e2ebin's go.mod changes), the upstream e2e.test v1.37.2 and the
# test images' programs from their Go sources, in the module of their own
# conformance/e2ebin, and upstream busybox 1.37.0 from its source
# (conformance/build-busybox.sh: curl, gcc, libc6-dev, make, bzip2); then
# runs e2e/conformance under the e2e lock. Its
# report is .conformance/report.md (each run's files in .conformance/runs/).
# PARALLEL=N runs the specs not labelled Serial in N e2e.test processes
# (the ginkgo CLI, built in conformance/ginkgocli), then the Serial ones.
CONFORMANCE_DIR ?= $(CURDIR)/.conformance
E2EBIN          := $(CURDIR)/conformance/e2ebin
E2EBIN_DEPS     := $(E2EBIN)/go.mod $(E2EBIN)/go.sum
E2E_LDFLAGS     := -X k8s.io/component-base/version.gitVersion=$(K8S_VERSION) \
	-X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=37
CONFORMANCE_BINS := $(CONFORMANCE_DIR)/e2e.test $(CONFORMANCE_DIR)/bin/agnhost \
	$(CONFORMANCE_DIR)/bin/sample-apiserver $(CONFORMANCE_DIR)/bin/nnp $(CONFORMANCE_DIR)/bin/porter/localhost.crt \
	$(CONFORMANCE_DIR)/bin/kitten/data.json $(CONFORMANCE_DIR)/bin/nautilus/data.json \
	$(CONFORMANCE_DIR)/bin/busybox $(CONFORMANCE_DIR)/bin/ginkgo $(CONFORMANCE_DIR)/bin/etcd
export FOCUS SKIP HA E2E_TIMEOUT SMOKE_LIST PARALLEL

conformance-bins: $(CONFORMANCE_BINS)

$(CONFORMANCE_DIR)/e2e.test: $(E2EBIN_DEPS)
	cd $(E2EBIN) && $(GO) test -c -vet=off -trimpath -ldflags "$(E2E_LDFLAGS)" -o $@ k8s.io/kubernetes/test/e2e

$(CONFORMANCE_DIR)/bin/agnhost: $(E2EBIN_DEPS)
	cd $(E2EBIN) && $(GO) build -trimpath -o $@ k8s.io/kubernetes/test/images/agnhost

$(CONFORMANCE_DIR)/bin/sample-apiserver: $(E2EBIN_DEPS)
	cd $(E2EBIN) && $(GO) build -trimpath -o $@ k8s.io/sample-apiserver

$(CONFORMANCE_DIR)/bin/nnp: $(E2EBIN_DEPS)
	cd $(E2EBIN) && $(GO) build -trimpath -o $@ k8s.io/kubernetes/test/images/nonewprivs

$(CONFORMANCE_DIR)/bin/porter/localhost.crt: $(E2EBIN_DEPS)
	@mkdir -p $(@D)
	cd $(E2EBIN) && cp "$$($(GO) list -m -f '{{.Dir}}' k8s.io/kubernetes)"/test/images/agnhost/porter/localhost.{crt,key} $(@D)/ && chmod 644 $(@D)/localhost.*

# kitten and nautilus: upstream's pictures and data.json, for the images.
$(CONFORMANCE_DIR)/bin/%/data.json: $(E2EBIN_DEPS)
	@mkdir -p $(@D)
	cd $(E2EBIN) && cp "$$($(GO) list -m -f '{{.Dir}}' k8s.io/kubernetes)"/test/images/$*/html/{$*.jpg,data.json} $(@D)/ && chmod 644 $(@D)/*

# The etcd image's server (the Aggregator spec's), static, from the module
# the store benchmarks pin.
$(CONFORMANCE_DIR)/bin/etcd: bench/etcdref/go.mod bench/etcdref/go.sum
	CGO_ENABLED=0 $(GO) build -C bench/etcdref -trimpath -o $@ .

# The ginkgo CLI (PARALLEL=N), at e2e.test's ginkgo version.
$(CONFORMANCE_DIR)/bin/ginkgo: conformance/ginkgocli/go.mod conformance/ginkgocli/go.sum
	cd conformance/ginkgocli && $(GO) build -trimpath -o $@ github.com/onsi/ginkgo/v2/ginkgo

# The busybox image's binary: upstream's source from the Debian archive,
# sha256-checked, built static (see the script for why not Debian's).
$(CONFORMANCE_DIR)/bin/busybox: conformance/build-busybox.sh
	conformance/build-busybox.sh $@ $(CONFORMANCE_DIR)/src

conformance: build conformance-bins
	@command -v curl >/dev/null && command -v nc.openbsd >/dev/null && command -v dig >/dev/null || \
		(apt-get update -q && apt-get install -y -q curl netcat-openbsd bind9-dnsutils)
	flock /tmp/keelson-e2e.lock env KEELSON_BIN=$(KEELSON) KEELSON_CONFORMANCE_DIR=$(CONFORMANCE_DIR) KEELSON_COMMIT=$(GIT_COMMIT) \
		$(GO) test -trimpath -ldflags "$(VERSION_LDFLAGS)" -timeout 0 -count=1 -v -run '^TestConformance$$' ./e2e/conformance/
	@cat $(CONFORMANCE_DIR)/report.md

conformance-smoke:
	$(MAKE) conformance SMOKE_LIST=$(CURDIR)/conformance/smoke.txt

# conformance-gateway runs sigs.k8s.io/gateway-api/conformance (the version
# go.mod pins) against a cluster of real agents, with echo-basic built from
# the module's source; the suite's report goes to .conformance/gateway-report.yaml.
GATEWAY_REPORT ?= $(CONFORMANCE_DIR)/gateway-report.yaml
conformance-gateway: build
	@mkdir -p $(dir $(GATEWAY_REPORT))
	set -o pipefail; flock /tmp/keelson-e2e.lock env KEELSON_BIN=$(KEELSON) KEELSON_GATEWAY_REPORT=$(GATEWAY_REPORT) \
		KEELSON_GATEWAY_FEATURES=$(GATEWAY_FEATURES) KEELSON_GATEWAY_TEST=$(GATEWAY_TEST) \
		$(GO) test -trimpath -ldflags "$(VERSION_LDFLAGS)" -timeout 0 -count=1 -v -run '^TestGatewayConformance$$' ./e2e/ingress/ \
		| tee $(dir $(GATEWAY_REPORT))/gateway-run.log
	@cat $(GATEWAY_REPORT)

STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2

lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || (gofmt -l $$(git ls-files '*.go'); exit 1)
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...

clean:
	rm -rf $(BIN) $(CONFORMANCE_DIR)
