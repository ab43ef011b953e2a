# ckptd: `make run` and `make test` do all set-up on a fresh Debian 12 machine.
SHELL := /bin/bash
VENV ?= $(HOME)/.cache/ckptd/venv
export CKPTD_VENV := $(VENV)
SWIFT ?= swift
CONFIG ?= config/ckptd.toml
PREFIX ?= /usr/local

.PHONY: deb test-deb fuzz-smoke all setup setup-system setup-python build build-release run test swift-test tsan interop lint bench fuzz install clean

all: build

setup-system:
	@scripts/setup-system.sh

setup-python:
	@scripts/setup-python.sh

setup: setup-system setup-python

build: setup-system
	$(SWIFT) build --build-tests -Xswiftc -warnings-as-errors

build-release: setup-system
	$(SWIFT) build -c release -Xswiftc -warnings-as-errors

run: build-release
	scripts/run-demo.sh .build/release/ckptd $(CONFIG)

test: setup build lint swift-test tsan interop fuzz-smoke test-deb

# The daemon suite runs on its own: it drives a test clock and waits on the daemon's notes (no sleeps), but its
# inotify events still share the machine with the CPU-heavy format suites.
swift-test:
	$(SWIFT) test --skip-build --skip CheckpointDaemonTests
	$(SWIFT) test --skip-build --filter CheckpointDaemonTests

# Thread Sanitizer over the daemon and conversion suites, in its own scratch path (a separate full build).
TSAN_SCRATCH ?= .build-tsan
TSAN_ENV = TSAN_OPTIONS="halt_on_error=1 suppressions=$(CURDIR)/Tests/tsan-suppressions.txt"
tsan: setup-system
	$(SWIFT) build --build-tests --sanitize=thread --scratch-path $(TSAN_SCRATCH)
	$(TSAN_ENV) $(SWIFT) test --skip-build --sanitize=thread --scratch-path $(TSAN_SCRATCH) \
		--filter CheckpointDaemonTests
	$(TSAN_ENV) $(SWIFT) test --skip-build --sanitize=thread --scratch-path $(TSAN_SCRATCH) \
		--filter CheckpointConversionTests

# The interop suite: real torch/safetensors/transformers against the debug binary. pytest prints its summary
# line (-ra lists failures/skips) and exits non-zero on any failure, which fails make.
interop: setup-python
	@test -x $(CURDIR)/.build/debug/ckptd || { echo "interop: $(CURDIR)/.build/debug/ckptd missing: run make build"; exit 1; }
	cd $(CURDIR) && CKPTD=$(CURDIR)/.build/debug/ckptd HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 \
		$(VENV)/bin/python -m pytest -q -ra -p no:cacheprovider Tests/interop

lint:
	$(SWIFT) format lint --strict --recursive Package.swift Sources Tests

# ANCHOR_REF: the older commit the bench compares with (built once into bench-data/anchor-REF); empty: none.
ANCHOR_REF ?= 9959bb0
bench: setup build-release
	ANCHOR_REF=$(ANCHOR_REF) scripts/bench.sh

fuzz: setup-system
	scripts/fuzz.sh $(FUZZ_SECONDS)

# The short run `make test` includes: every harness for a few seconds over the seeds and saved corpus.
fuzz-smoke: setup-system
	scripts/fuzz.sh 15

install: build-release
	install -D -m 0755 .build/release/ckptd $(DESTDIR)$(PREFIX)/bin/ckptd
	install -D -m 0644 systemd/ckptd.service $(DESTDIR)/etc/systemd/system/ckptd.service
	install -d $(DESTDIR)/etc/ckptd/watch.d
	[ -f $(DESTDIR)/etc/ckptd/ckptd.toml ] || install -m 0644 config/ckptd.toml $(DESTDIR)/etc/ckptd/ckptd.toml
	install -D -m 0644 config/watch.d/10-example.toml $(DESTDIR)$(PREFIX)/share/ckptd/examples/watch.d/10-example.toml
	install -D -m 0644 systemd/ckptd.service.d/10-output-dirs.conf.example \
	  $(DESTDIR)$(PREFIX)/share/ckptd/examples/ckptd.service.d/10-output-dirs.conf

# The Debian package ckptd_VERSION_ARCH.deb (packaging/debian): a static-runtime release build in .build-deb,
# man pages from swift-argument-parser's generate-manual plugin, completions, the unit with /usr/bin/ckptd.
deb: setup-system
	SWIFT=$(SWIFT) packaging/debian/build-deb.sh

# Installs the package on this machine, checks it (lintian, --version, man, systemd-analyze) and purges it.
test-deb: deb
	scripts/test-deb.sh

clean:
	rm -rf .build .build-deb
