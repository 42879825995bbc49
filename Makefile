# p2pcore — top-level entry points. The real build is CMake (build/), tests run under CTest and pytest.
#   make            build build/p2p
#   make demo       install what is missing, build, run a local cluster (Ctrl-C stops it)
#   make test       install what is missing, build, run unit + system + browser tests, the sanitizer build and a fuzz smoke run
#   make bench      install what is missing, build, run the benchmarks in bench/
#   make install    install p2p, the systemd unit p2p@.service and example configs (PREFIX=/usr/local, DESTDIR honoured)
#   make deb        build the Debian package of the node into dist/ (dpkg-deb)
PREFIX ?= /usr/local
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
FUZZ_SECONDS ?= 5
TEST_JOBS ?= 2
PYTEST = /usr/bin/python3 -m pytest
CMAKE_FLAGS ?=

.PHONY: all build deb deps deps-bench demo test test-unit test-system test-browser test-sanitize fuzz fuzz-smoke bench install clean

all: build

build:
	@cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo $(CMAKE_FLAGS) >/dev/null
	@cmake --build build -j $(JOBS)

deps:
	@scripts/install-deps.sh

deps-bench:
	@scripts/install-deps.sh bench

demo: deps build
	@scripts/demo.sh

test: deps build
	@$(MAKE) --no-print-directory test-unit test-system test-browser test-sanitize fuzz-smoke
	@echo "make test: all suites passed"

test-unit: build
	cd build && ctest --output-on-failure

# System tests run in TEST_JOBS pytest-xdist workers (a test file stays in one worker:
# module fixtures are shared by its tests); the `timing` tests (netns partitions, key
# retirement) run afterwards on their own, since they measure time.
test-system: build
	P2P_BIN=$(CURDIR)/build/p2p $(PYTEST) -q -n $(TEST_JOBS) --dist loadfile -m "not timing" tests/system
	P2P_BIN=$(CURDIR)/build/p2p $(PYTEST) -q -m timing tests/system

# The dashboard in headless chromium (playwright-core from web/node_modules) against a real
# coordinator and two workers; screenshots in build/browser-artifacts/.
test-browser: build
	P2P_BIN=$(CURDIR)/build/p2p $(PYTEST) -q tests/browser

build-asan/p2p: FORCE
	@cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DP2P_SANITIZE=ON >/dev/null
	@cmake --build build-asan -j $(JOBS)

test-sanitize: build-asan/p2p
	cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ctest --output-on-failure
	ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 P2P_BIN=$(CURDIR)/build-asan/p2p P2P_SANITIZED=1 $(PYTEST) -q -n $(TEST_JOBS) --dist loadfile -m "not timing" tests/system

build-fuzz/fuzz_jsonrpc: FORCE
	@CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=Debug -DP2P_FUZZ=ON >/dev/null
	@cmake --build build-fuzz -j $(JOBS) --target fuzz_all

fuzz-smoke: build-fuzz/fuzz_jsonrpc
	@scripts/fuzz.sh $(FUZZ_SECONDS)

fuzz: build-fuzz/fuzz_jsonrpc
	@scripts/fuzz.sh $(or $(SECONDS),600)

bench: deps deps-bench build
	@bench/run.sh

# The unit goes to $(PREFIX)/lib/systemd/system (on systemd's search path for /usr/local
# and /usr); it reads /etc/p2p/<instance>.yaml: copy an example there (docs/deploy.md).
install: build
	DESTDIR=$(DESTDIR) cmake --install build --prefix $(PREFIX)
	install -d $(DESTDIR)$(PREFIX)/lib/systemd/system $(DESTDIR)$(PREFIX)/share/p2pcore/examples
	sed -e 's|@BINDIR@|$(PREFIX)/bin|g' -e 's|@DOCDIR@|$(PREFIX)/share/doc/p2pcore|g' \
	  packaging/systemd/p2p@.service.in > $(DESTDIR)$(PREFIX)/lib/systemd/system/p2p@.service
	chmod 0644 $(DESTDIR)$(PREFIX)/lib/systemd/system/p2p@.service
	install -m 0644 packaging/examples/coordinator.yaml packaging/examples/worker.yaml \
	  $(DESTDIR)$(PREFIX)/share/p2pcore/examples/

# dist/p2pcore_<version>_<arch>.deb (scripts/make-deb.sh)
deb: build
	@scripts/make-deb.sh build dist

clean:
	rm -rf build build-asan build-fuzz dist

FORCE:
