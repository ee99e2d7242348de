# urun / ufs — build, test and demo entry points.
#
#   make deps           install Debian packages (root)
#   make build          bin/ufs (CGO_ENABLED=0)
#   make install        ufs into $(PREFIX)/bin, /sbin/mount.fuse.ufs
#   make test           deps, build, test-unit, test-root, test-rootless
#   make test-unit      go test -race -short ./...
#   make test-root      go test ./... as root (mounts FUSE)
#   make test-rootless  go test ./... as the unprivileged user urun-test
#   make demo           mount a 3-branch union, then run a rootless container
#   make bench          ufs and urun against their peers: filesystem and runtime (root)
#   make bench-fs       the filesystem part only
#   make bench-run      the runtime part only
#   make bench-smoke    one round, small sizes, synthetic tree (part of make test)
#   make bench-go       go benchmarks (go test -bench)
#   make deps-bench     install the peers (fuse-overlayfs, fio, mmdebstrap, podman, ...)
#   make lint           gofmt, go vet, staticcheck
#   make clean
#
# Extra flags: make test-root GOTESTFLAGS='-v -run TestFoo' PKGS=./fusefs/...
#              make bench-fs BENCHFLAGS='--rounds 3 -w metadata,untar'

SHELL       := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := build
MAKEFLAGS   += --no-print-directory

# Go is installed in /usr/local/go; sbin holds useradd, runuser, mkfs, ...
export PATH := $(PATH):/usr/local/go/bin:/usr/local/sbin:/usr/sbin:/sbin
export GOTOOLCHAIN ?= local

GO          ?= go
# Build tags for containers/storage and containers/image without C
# libraries (btrfs, devicemapper, gpgme): every go command gets them
# through GOFLAGS, so that go build/test/vet and staticcheck agree.
GO_TAGS     := exclude_graphdriver_btrfs,exclude_graphdriver_devicemapper,containers_image_openpgp
export GOFLAGS := $(strip $(filter-out -tags=%,$(shell $(GO) env GOFLAGS 2>/dev/null)) -tags=$(GO_TAGS))
PKGS        ?= ./...
GOTESTFLAGS ?=
TEST_TIMEOUT ?= 20m

BIN_DIR     := $(CURDIR)/bin
CACHE_DIR   := $(CURDIR)/.cache
UFS         := $(BIN_DIR)/ufs
URUN        := $(BIN_DIR)/urun

STATICCHECK_VERSION := v0.8.2
STATICCHECK := $(CACHE_DIR)/bin/staticcheck

# Rootless phase.
TEST_USER   ?= urun-test
TEST_DIR    ?= /var/tmp/urun-test
TEST_SRC    := $(TEST_DIR)/src

# Benchmarks (bench/, cmd/ubench): the peers from Debian's packages.
BENCH_PACKAGES := fuse-overlayfs fio mmdebstrap podman runc crun bubblewrap busybox-static \
	catatonit conmon uidmap fuse3 tar
BENCHFLAGS  ?=
UBENCH      := $(BIN_DIR)/ubench

.PHONY: all deps deps-bench build install test test-unit test-root test-rootless demo \
	bench bench-fs bench-run bench-smoke bench-go bench-prepare lint clean

all: build

deps:
	@scripts/deps.sh

deps-bench:
	@scripts/deps.sh $(BENCH_PACKAGES)

build:
	@mkdir -p $(BIN_DIR)
	CGO_ENABLED=0 $(GO) build -o $(BIN_DIR)/ ./cmd/...

# ufs into $(PREFIX)/bin, and mount.fuse.ufs beside mount(8)'s helpers so
# that "mount -t fuse.ufs" and fstab entries find it directly.
PREFIX ?= /usr/local
DESTDIR ?=
install: build
	install -D -m 0755 $(UFS) $(DESTDIR)$(PREFIX)/bin/ufs
	install -d $(DESTDIR)/sbin
	ln -sf $(PREFIX)/bin/ufs $(DESTDIR)/sbin/mount.fuse.ufs

# Sequential on purpose (even under -j): each phase is a sub-make.
test:
	@$(MAKE) deps
	@$(MAKE) build
	@$(MAKE) test-unit
	@$(MAKE) test-root
	@$(MAKE) test-rootless
	@$(MAKE) bench-smoke

test-unit:
	@echo "==> unit tests (-race -short)"
	CGO_ENABLED=1 $(GO) test -race -short -count=1 $(GOTESTFLAGS) $(PKGS)

test-root: build
	@if [ "$$(id -u)" -ne 0 ]; then \
		echo "test-root: must run as root (it mounts FUSE filesystems); try 'sudo make test-root'" >&2; \
		exit 1; \
	fi
	@echo "==> integration tests as root"
	UFS_TEST_ROOT=1 UFS_BIN=$(UFS) URUN_BIN=$(URUN) \
		$(GO) test -count=1 -timeout $(TEST_TIMEOUT) $(GOTESTFLAGS) $(PKGS)

# As root: prepare the user and a private copy of the tree, then drop
# privileges with runuser and a clean environment. As a non-root user:
# assume the host is prepared and run the suite as ourselves.
test-rootless: build
	@echo "==> integration tests as an unprivileged user"
	@if [ "$$(id -u)" -ne 0 ]; then \
		echo "test-rootless: not root; running as $$(id -un) without host setup"; \
		UFS_TEST_ROOTLESS=1 UFS_BIN=$(UFS) URUN_BIN=$(URUN) \
			$(GO) test -count=1 -timeout $(TEST_TIMEOUT) $(GOTESTFLAGS) $(PKGS); \
		exit; \
	fi; \
	URUN_TEST_USER=$(TEST_USER) URUN_TEST_DIR=$(TEST_DIR) scripts/rootless-setup.sh $(CURDIR); \
	goroot=$$($(GO) env GOROOT); \
	home=$$(getent passwd $(TEST_USER) | cut -d: -f6); \
	goflags=$$($(GO) env GOFLAGS); goproxy=$$($(GO) env GOPROXY); \
	gosumdb=$$($(GO) env GOSUMDB); goprivate=$$($(GO) env GOPRIVATE); \
	gonosumdb=$$($(GO) env GONOSUMDB); gonoproxy=$$($(GO) env GONOPROXY); \
	set -x; \
	runuser -u $(TEST_USER) -- env -i -C $(TEST_SRC) \
		HOME="$$home" USER=$(TEST_USER) LOGNAME=$(TEST_USER) \
		PATH="$$goroot/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
		LANG=C.UTF-8 TMPDIR=/tmp \
		GOTOOLCHAIN=local \
		GOCACHE=$(TEST_DIR)/gocache \
		GOPATH=$(TEST_DIR)/gopath \
		GOMODCACHE=$(TEST_DIR)/gomod \
		GOFLAGS="$$goflags" \
		GOPROXY="$$goproxy" \
		GOSUMDB="$$gosumdb" \
		GOPRIVATE="$$goprivate" \
		GONOSUMDB="$$gonosumdb" \
		GONOPROXY="$$gonoproxy" \
		UFS_TEST_ROOTLESS=1 \
		UFS_BIN=$(TEST_SRC)/bin/ufs \
		URUN_BIN=$(TEST_SRC)/bin/urun \
		"$$goroot/bin/go" test -count=1 -timeout $(TEST_TIMEOUT) $(GOTESTFLAGS) $(PKGS)

demo:
	@$(MAKE) deps
	@$(MAKE) build
	UFS=$(UFS) scripts/demo.sh
	URUN=$(URUN) scripts/demo-urun.sh

# The benchmarks run as root: kernel overlayfs and cold caches need it; the
# rootless figures come from the user $(TEST_USER), made here.
bench-prepare: build
	@if [ "$$(id -u)" -ne 0 ]; then \
		echo "bench: run as root (kernel overlayfs, dropping caches, the rootless user); try 'sudo make $(MAKECMDGOALS)'" >&2; \
		exit 1; \
	fi
	@$(MAKE) deps-bench
	@URUN_TEST_USER=$(TEST_USER) URUN_TEST_DIR=$(TEST_DIR) scripts/rootless-setup.sh $(CURDIR) >/dev/null

bench: bench-prepare
	$(UBENCH) all --user $(TEST_USER) $(BENCHFLAGS)

bench-fs: bench-prepare
	$(UBENCH) fs --user $(TEST_USER) $(BENCHFLAGS)

bench-run: bench-prepare
	$(UBENCH) run --user $(TEST_USER) $(BENCHFLAGS)

# In CI (last step of make test): every workload and peer once, on small
# fixtures; it checks the harness, its figures mean nothing.
bench-smoke: bench-prepare
	$(UBENCH) all --smoke --user $(TEST_USER) --results $(CURDIR)/results/smoke --scratch $(CURDIR)/results/smoke-scratch $(BENCHFLAGS)

bench-go:
	$(GO) test -run '^$$' -bench . -benchmem $(GOTESTFLAGS) $(PKGS)

lint:
	@echo "==> gofmt"
	@files=$$(find . \( -path ./.git -o -path ./.cache -o -path ./bin -o -path ./results \) -prune \
		-o -name '*.go' -print); \
	if [ -n "$$files" ]; then \
		bad=$$(gofmt -l $$files); \
		if [ -n "$$bad" ]; then echo "gofmt needed on:"; echo "$$bad"; exit 1; fi; \
	fi
	@echo "==> go vet"
	$(GO) vet $(PKGS)
	@echo "==> staticcheck $(STATICCHECK_VERSION)"
	@have=$$("$(STATICCHECK)" -version 2>/dev/null || true); \
	case "$$have" in \
	*"($(STATICCHECK_VERSION:v%=%))"*) ;; \
	*) echo "installing staticcheck $(STATICCHECK_VERSION) into $(dir $(STATICCHECK))"; \
	   GOBIN=$(dir $(STATICCHECK)) $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ;; \
	esac
	$(STATICCHECK) $(PKGS)

clean:
	rm -rf $(BIN_DIR) $(CURDIR)/results $(CACHE_DIR)
