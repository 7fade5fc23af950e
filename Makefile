# hypercore build: one executable (build/hypercore), tests, fuzzers, benchmarks.
#
#   make              build build/hypercore (gcc, -Werror)
#   make check        install deps, build, run every test (plain + ASan/UBSan build)
#   make run          install deps, build, run a node agent in the foreground
#   make fuzz         run each libFuzzer harness for FUZZ_SECONDS (default 60)
#   make bench        run the benchmarks under tools/bench
#   make install      install the binary, the systemd unit, the default config,
#                     man pages and bash completion (PREFIX=/usr/local, DESTDIR)
#   make deb          build $(BUILD)/hypercore_VERSION_ARCH.deb with dpkg-deb
#   make lint-deb     make deb, then lintian on it (slow; not part of check)
#   make demo         a 3-node cluster in namespaces with a web workload and cluster top
#   make V=1          show the commands
#   make FAULTS=0     a release build: no fault points (HYPERCORE_FAULT is refused)
#   make chaos        the fault scenarios on a 5-node cluster (tests/chaos/chaos.py)
#
# Every generated file goes under $(BUILD); the source tree stays clean.

BUILD ?= build
CC ?= gcc
ifeq ($(origin CC),default)
CC := gcc
endif
SAN ?=
# Fault points (HYPERCORE_FAULT, base.h): on unless FAULTS=0, as a release build is made.
FAULTS ?= 1
PROTOC_C ?= protoc-c

ifeq ($(V),1)
Q :=
msg = @true
else
Q := @
msg = @printf '  %-7s %s\n' $(1) $(2)
endif

GEN := $(BUILD)/gen
OBJ := $(BUILD)/obj

PKGS := libprotobuf-c jansson libmicrohttpd libssl libcrypto zlib libbpf libnl-3.0 libnl-route-3.0 \
	libnghttp2
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS))
PKG_LIBS = $(shell pkg-config --libs $(PKGS)) -lgrpc -lgpr

WARN := -Wall -Wextra -Werror -Wshadow -Wformat=2 -Wstrict-prototypes \
	-Wmissing-prototypes -Wno-unused-parameter
CFLAGS ?= -O2 -g
# -Ulinux: gnu11 predefines "linux" as 1, and the CRI messages have fields of that name.
ALL_CFLAGS := -std=gnu11 $(WARN) $(CFLAGS) -D_GNU_SOURCE -Ulinux \
	-Iinclude -Iagent -Icli -Iguest -Itests/lib -I$(GEN) -I$(BUILD)/bpf $(PKG_CFLAGS)
LDFLAGS ?=
LDLIBS := $(PKG_LIBS) -lpthread -lm
ifeq ($(FAULTS),1)
ALL_CFLAGS += -DHC_FAULTS
endif

ifeq ($(SAN),1)
SAN_FLAGS := -fsanitize=address,undefined -fno-sanitize-recover=all \
	-fno-omit-frame-pointer
ALL_CFLAGS += $(SAN_FLAGS)
LDFLAGS += $(SAN_FLAGS)
# With clang, the sanitized build doubles as the fuzzing build: coverage
# instrumentation everywhere, libFuzzer linked only into the harnesses.
ifneq ($(findstring clang,$(CC)),)
ALL_CFLAGS += -fsanitize=fuzzer-no-link
FUZZ_ENABLED := 1
endif
endif

VERSION := $(shell cat VERSION 2>/dev/null || echo 0.0.0)
GIT_REV := $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
ALL_CFLAGS += -DHC_VERSION='"$(VERSION)"' -DHC_GIT_REV='"$(GIT_REV)"'

# Generated protobuf-c code. google/protobuf/any.proto comes from libprotobuf-dev.
PROTO_INC := /usr/include
PROTO_SRCS := $(GEN)/cluster.pb-c.c $(GEN)/cri.pb-c.c $(GEN)/content.pb-c.c $(GEN)/snapshots.pb-c.c $(GEN)/google/protobuf/any.pb-c.c
PROTO_HDRS := $(PROTO_SRCS:.c=.h)

# BPF programs: one object and one libbpf skeleton per bpf/hc_<x>.bpf.c.
BPF_CLANG ?= clang
BPFTOOL ?= bpftool
BPF_SRCS := $(sort $(wildcard bpf/hc_*.bpf.c))
BPF_OBJS := $(patsubst bpf/%.bpf.c,$(BUILD)/bpf/%.bpf.o,$(BPF_SRCS))
BPF_SKELS := $(BPF_OBJS:.bpf.o=.skel.h)
BPF_CFLAGS := -target bpf -g -O2 -Wall -Werror -Iinclude -Ibpf \
	-I/usr/include/$(shell gcc -dumpmachine)

AGENT_SRCS := $(sort $(wildcard agent/*/*.c))
CLI_SRCS := $(sort $(filter-out cli/main.c,$(wildcard cli/*.c)))
LIB_OBJS := $(patsubst $(GEN)/%.c,$(OBJ)/gen/%.o,$(PROTO_SRCS)) \
	$(patsubst %.c,$(OBJ)/%.o,$(AGENT_SRCS) $(CLI_SRCS)) $(OBJ)/agent/runtime/pause_image.o \
	$(OBJ)/agent/runtime/vm_blobs.o $(OBJ)/guest/vmproto.o
LIB := $(BUILD)/libhypercore.a
BIN := $(BUILD)/hypercore

UNIT_SRCS := $(sort $(wildcard tests/unit/test_*.c))
TESTLIB_OBJS := $(patsubst %.c,$(OBJ)/%.o,$(sort $(wildcard tests/lib/*.c)))
TESTLIB := $(BUILD)/libhctest.a
# The test library reads the repository's tests/data (the captured serf
# traffic) by an absolute path, so a test finds it from any directory.
$(TESTLIB_OBJS): ALL_CFLAGS += -DHC_TEST_DATA_DIR='"$(CURDIR)/tests/data"'
UNIT_BINS := $(patsubst tests/unit/%.c,$(BUILD)/tests/unit/%,$(UNIT_SRCS))
BPFTEST_SRCS := $(sort $(wildcard tests/bpf/test_*.c))
BPFTEST_BINS := $(patsubst tests/bpf/%.c,$(BUILD)/tests/bpf/%,$(BPFTEST_SRCS))

FUZZ_SRCS := $(sort $(wildcard tests/fuzz/fuzz_*.c))
FUZZ_BINS := $(if $(FUZZ_ENABLED),$(patsubst tests/fuzz/%.c,$(BUILD)/fuzz/%,$(FUZZ_SRCS)))

.DELETE_ON_ERROR:
# Generated headers are prerequisites of pattern rules only; keep them.
.SECONDARY: $(PROTO_SRCS) $(PROTO_HDRS) $(BPF_OBJS) $(BPF_SKELS)
.SUFFIXES:
.PHONY: all deps check check-run chaos unit fuzzers run fuzz bench clean install deb lint-deb

all: $(BIN)

$(GEN)/%.pb-c.c $(GEN)/%.pb-c.h &: proto/%.proto
	$(call msg,PROTOC,$<)
	$(Q)mkdir -p $(GEN)
	$(Q)$(PROTOC_C) -Iproto -I$(PROTO_INC) --c_out=$(GEN) $<

# The pod sandbox ("pause") image: a static pause binary packed as an OCI
# archive by tools/mkimage.py and linked into the binary, which imports it into
# containerd at start, so pods start without any registry. Always built with
# gcc and without sanitizers: it runs inside containers, not in our process.
PAUSE_IMAGE := hypercore.local/pause:$(VERSION)
$(BUILD)/pause: agent/runtime/pause/pause.c
	$(call msg,CC,$@)
	$(Q)mkdir -p $(@D)
	$(Q)gcc -static -Os -s -Wall -Wextra -Werror -o $@ $<

$(BUILD)/pause-image.tar: $(BUILD)/pause tools/mkimage.py
	$(call msg,IMAGE,$@)
	$(Q)/usr/bin/python3 tools/mkimage.py pause --binary $< --name $(PAUSE_IMAGE) --archive $@

$(OBJ)/agent/runtime/pause_image.o: agent/runtime/pause_image.S $(BUILD)/pause-image.tar
	$(call msg,AS,$<)
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) -c -DPAUSE_IMAGE_FILE='"$(BUILD)/pause-image.tar"' -DPAUSE_IMAGE_NAME='"$(PAUSE_IMAGE)"' -o $@ $<

# The microVM guest's init and the VMM launcher (guest/): static, gcc, no
# sanitizers (they run in the guest and in the VM's container), linked into
# the binary like the pause image.
GUEST_BINS := $(BUILD)/guest/hc-init $(BUILD)/guest/hc-vmm
$(BUILD)/guest/hc-init: guest/init.c guest/vmproto.c guest/vmproto.h
$(BUILD)/guest/hc-vmm: guest/vmm.c guest/vmproto.c guest/vmproto.h
$(GUEST_BINS):
	$(call msg,CC,$@)
	$(Q)mkdir -p $(@D)
	$(Q)gcc -static -Os -s -std=gnu11 $(WARN) -D_GNU_SOURCE -o $@ $(filter %.c,$^)

$(OBJ)/agent/runtime/vm_blobs.o: agent/runtime/vm_blobs.S $(GUEST_BINS)
	$(call msg,AS,$<)
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) -c -DVM_INIT_FILE='"$(BUILD)/guest/hc-init"' -DVM_VMM_FILE='"$(BUILD)/guest/hc-vmm"' -o $@ $<

$(GEN)/google/protobuf/any.pb-c.c $(GEN)/google/protobuf/any.pb-c.h &: $(PROTO_INC)/google/protobuf/any.proto
	$(call msg,PROTOC,$<)
	$(Q)mkdir -p $(GEN)
	$(Q)$(PROTOC_C) -I$(PROTO_INC) --c_out=$(GEN) google/protobuf/any.proto

# bpftool gen object links the clang output, which also checks its BTF.
$(BUILD)/bpf/%.bpf.o: bpf/%.bpf.c
	$(call msg,BPF,$<)
	$(Q)mkdir -p $(@D)
	$(Q)$(BPF_CLANG) $(BPF_CFLAGS) -MD -MP -MF $@.d -MT $@ -c -o $@.tmp $<
	$(Q)$(BPFTOOL) gen object $@ $@.tmp
	$(Q)rm -f $@.tmp

$(BUILD)/bpf/%.skel.h: $(BUILD)/bpf/%.bpf.o
	$(call msg,SKEL,$@)
	$(Q)$(BPFTOOL) gen skeleton $< name $* > $@

# Generated headers must exist before any object is compiled; after the first
# build the -MD dependency files take over.
$(OBJ)/%.o: %.c | $(PROTO_HDRS) $(BPF_SKELS)
	$(call msg,CC,$<)
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) $(ALL_CFLAGS) -MD -MP -c -o $@ $<

$(OBJ)/gen/%.o: $(GEN)/%.c $(PROTO_HDRS)
	$(call msg,CC,$<)
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) $(ALL_CFLAGS) -Wno-error -c -o $@ $<

$(LIB): $(LIB_OBJS)
	$(call msg,AR,$@)
	$(Q)rm -f $@
	$(Q)ar rcs $@ $^

$(BIN): $(OBJ)/cli/main.o $(LIB)
	$(call msg,LD,$@)
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# The policy tests read the shipped examples/policies by an absolute path.
$(OBJ)/tests/unit/test_ibrl_policy.o: ALL_CFLAGS += -DHC_EXAMPLES_DIR='"$(CURDIR)/examples"'

$(TESTLIB): $(TESTLIB_OBJS)
	$(call msg,AR,$@)
	$(Q)rm -f $@
	$(Q)ar rcs $@ $^

$(BUILD)/tests/unit/%: $(OBJ)/tests/unit/%.o $(TESTLIB) $(LIB)
	$(call msg,LD,$@)
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) -lcmocka

unit: $(UNIT_BINS) $(BPFTEST_BINS)

# BPF program tests (BPF_PROG_TEST_RUN): root, no NIC.
$(BUILD)/tests/bpf/%: $(OBJ)/tests/bpf/%.o $(TESTLIB) $(LIB)
	$(call msg,LD,$@)
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) -lcmocka

$(BUILD)/fuzz/%: $(OBJ)/tests/fuzz/%.o $(LIB)
	$(call msg,LD,$@)
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) $(LDFLAGS) -fsanitize=fuzzer -o $@ $^ $(LDLIBS)

fuzzers: $(FUZZ_BINS)

deps:
	$(Q)tools/deps.sh

# The chaos tests' wall-clock shim (LD_PRELOAD; tests/chaos/clockshift.c).
CHAOS_LIBS := $(BUILD)/tests/chaos/libclockshift.so
$(BUILD)/tests/chaos/libclockshift.so: tests/chaos/clockshift.c
	$(call msg,CC,$@)
	$(Q)mkdir -p $(@D)
	$(Q)gcc -std=gnu11 $(WARN) -O2 -g -fPIC -shared -o $@ $< -ldl

unit: $(CHAOS_LIBS)

# Fault scenarios on a 5-node cluster (tests/chaos/chaos.py; CHAOS_ARGS, e.g.
# CHAOS_ARGS="--only partition"). Root, minutes; not part of make check,
# which runs tests/integration/test_chaos.py, a bounded subset.
chaos: all $(CHAOS_LIBS)
	$(Q)/usr/bin/python3 tests/chaos/chaos.py --build $(BUILD) $(CHAOS_ARGS)

# The README's test command: install, build (gcc, and clang with ASan+UBSan),
# run the suites (agents under the sanitizer build), print one "N passed, N failed" line.
check: deps
	$(Q)$(MAKE) --no-print-directory all unit bench-bins
	$(Q)$(MAKE) --no-print-directory BUILD=build/asan CC=clang SAN=1 all unit fuzzers
	$(Q)$(MAKE) --no-print-directory check-run

check-run:
	$(Q)/usr/bin/python3 tests/run.py --build build --build build/asan

run: deps
	$(Q)$(MAKE) --no-print-directory all
	$(BIN) cluster $(RUN_ARGS)

# A 3-node cluster in network namespaces, a local registry and the example web
# workload, then `cluster top`; everything is removed on q, ^C or an error
# (tools/demo.py; DEMO_ARGS=--check: no live view, check and tear down).
.PHONY: demo
demo: deps
	$(Q)$(MAKE) --no-print-directory all
	$(Q)/usr/bin/python3 tools/demo.py $(DEMO_ARGS)

# libFuzzer harnesses (tests/fuzz/fuzz_*.c), longer than make check runs them.
fuzz: deps
	$(Q)$(MAKE) --no-print-directory BUILD=build/asan CC=clang SAN=1 fuzzers
	$(Q)tools/fuzz.sh --all build/asan/fuzz $(or $(FUZZ_SECONDS),300)

bench: deps
	$(Q)$(MAKE) --no-print-directory all bench-bins
	$(Q)HC_BUILD=$(BUILD) tools/bench/run.sh

# Benchmark tools: standalone programs the tools/bench scripts run, and
# benchmarks in C (tools/bench/bench_*.c) built against the library.
BENCH_BINS += $(BUILD)/bench/hc_pktgen $(BUILD)/bench/bench_map_sync
BENCH_BINS += $(BUILD)/bench/bench_xdp_prog $(BUILD)/bench/bench_tc_prog
# bench_tc_prog times the TC programs beside their version before the egress
# policy (issue 16), built from git at TC_BASE_REV with that commit's bpf/ and
# include/.
TC_BASE_REV := a705338
BENCH_BINS += $(BUILD)/bench/base/hc_tc.bpf.o
$(BUILD)/bench/base/hc_tc.bpf.o:
	$(call msg,BPF,$@)
	$(Q)rm -rf $(@D)/src && mkdir -p $(@D)/src
	$(Q)git archive $(TC_BASE_REV) bpf include | tar -x -C $(@D)/src
	$(Q)$(BPF_CLANG) $(filter-out -Iinclude -Ibpf,$(BPF_CFLAGS)) -I$(@D)/src/include \
		-I$(@D)/src/bpf -c -o $@.tmp $(@D)/src/bpf/hc_tc.bpf.c
	$(Q)$(BPFTOOL) gen object $@ $@.tmp
	$(Q)rm -f $@.tmp
BENCH_BINS += $(BUILD)/bench/bench_routes $(BUILD)/bench/bench_placement
BENCH_BINS += $(BUILD)/bench/bench_ibrl_sign $(BUILD)/bench/bench_gossip_sim $(BUILD)/bench/bench_state
# bench_proxy's floor side: a bare recv/send relay (what any proxy does at least)
BENCH_BINS += $(BUILD)/bench/relay_floor
# The benchmark programs alone, built (not run) by make check too, so that
# a change of the library's interfaces cannot leave make bench broken.
.PHONY: bench-bins
bench-bins: $(BENCH_BINS)

$(BUILD)/bench/bench_%: $(OBJ)/tools/bench/bench_%.o $(TESTLIB) $(LIB)
	$(call msg,LD,$@)
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/bench/hc_pktgen: tools/bench/hc_pktgen.c
	$(call msg,CC,$<)
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) -std=gnu11 $(WARN) $(CFLAGS) -D_GNU_SOURCE -o $@ $<

$(BUILD)/bench/relay_floor: tools/bench/relay_floor.c
	$(call msg,CC,$<)
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) -std=gnu11 $(WARN) $(CFLAGS) -D_GNU_SOURCE -o $@ $< -pthread

# ---- install and package ----
# The agent reads /etc/hypercore/hypercore.toml whatever PREFIX is; the
# config is installed only where none is, so an edited one survives.
PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin
MANDIR ?= $(PREFIX)/share/man
UNITDIR ?= $(PREFIX)/lib/systemd/system
COMPLETIONDIR ?= $(PREFIX)/share/bash-completion/completions
CONFDIR := /etc/hypercore
# Where generated pages and the package go (a test builds into its own);
# PKG_BIN: the binary installed, by default the one this build makes (a
# test names an absolute path to package a binary as it is, unrebuilt).
PKG_BIN ?= $(BIN)
DIST ?= $(BUILD)/dist
DEBDIR ?= $(BUILD)
DEB_ARCH = $(shell dpkg --print-architecture)
DEB = $(DEBDIR)/hypercore_$(VERSION)_$(DEB_ARCH).deb

# Man pages, completion and the default config come from the binary's own
# option tables (hypercore help --man ...), so they never disagree with --help.
$(DIST)/.stamp: $(PKG_BIN)
	$(call msg,GEN,$(DIST))
	$(Q)rm -rf $(DIST)/man && mkdir -p $(DIST)/man
	$(Q)set -e; for g in "" $$($(PKG_BIN) help --man-groups); do \
		n=hypercore$${g:+-$$g}; \
		$(PKG_BIN) help --man $$g > $(DIST)/man/$$n.8; \
		gzip -9n -f $(DIST)/man/$$n.8; \
	done
	$(Q)$(PKG_BIN) help --bash-completion > $(DIST)/hypercore.bash
	$(Q)$(PKG_BIN) help --config > $(DIST)/hypercore.toml
	$(Q)touch $@

install: $(PKG_BIN) $(DIST)/.stamp
	$(call msg,INSTALL,$(DESTDIR)$(PREFIX))
	$(Q)install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(UNITDIR) $(DESTDIR)$(MANDIR)/man8 \
		$(DESTDIR)$(COMPLETIONDIR) $(DESTDIR)$(CONFDIR)
	$(Q)install -m 0755 $(PKG_BIN) $(DESTDIR)$(BINDIR)/hypercore
	$(Q)sed 's|@BINDIR@|$(BINDIR)|g' packaging/hypercore.service.in \
		> $(DESTDIR)$(UNITDIR)/hypercore.service
	$(Q)chmod 0644 $(DESTDIR)$(UNITDIR)/hypercore.service
	$(Q)install -m 0644 $(DIST)/man/*.8.gz $(DESTDIR)$(MANDIR)/man8/
	$(Q)install -m 0644 $(DIST)/hypercore.bash $(DESTDIR)$(COMPLETIONDIR)/hypercore
	$(Q)test -e $(DESTDIR)$(CONFDIR)/hypercore.toml || \
		install -m 0644 $(DIST)/hypercore.toml $(DESTDIR)$(CONFDIR)/hypercore.toml

# The package: /usr, units in /lib/systemd/system (bookworm's place), the
# binary stripped; Depends computed by packaging/mkdeb.sh.
deb: $(PKG_BIN) $(DIST)/.stamp
	$(Q)rm -rf $(DIST)/deb-root
	$(Q)$(MAKE) --no-print-directory install BUILD=$(BUILD) DIST=$(abspath $(DIST)) \
		DESTDIR=$(abspath $(DIST)/deb-root) PREFIX=/usr UNITDIR=/lib/systemd/system
	$(Q)strip --strip-unneeded --remove-section=.comment --remove-section=.note \
		$(DIST)/deb-root/usr/bin/hypercore
	$(call msg,DEB,$(DEB))
	$(Q)packaging/mkdeb.sh $(DIST)/deb-root $(DEBDIR) $(VERSION) >/dev/null

lint-deb: deb
	lintian --info --display-info $(DEB)

clean:
	rm -rf build

-include $(shell find $(OBJ) $(BUILD)/bpf -name '*.d' 2>/dev/null)
