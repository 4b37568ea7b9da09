# SPDX-License-Identifier: GPL-2.0
#
# Front door.  `make` builds dm-snapshot.ko against the installed Debian
# headers (6.1 by default); KVER= or KDIR= selects another kernel.
#   make              module for KVER (default: newest installed 6.1 Debian kernel)
#   make KVER=6.12    module for the newest installed 6.12 kernel
#   make unit         host build of the C++ core and its unit tests (CMake)
#   make check        every test suite, ending with "N passed, N failed"
#   make check-full   make check plus every scenario on the debug kernel and
#                     on 6.12 (slow; see README, Tests)
#   make demo         boot a VM and show the module at work
#   make bench        benchmark against the in-tree dm-snapshot in one VM boot
#                     (build/bench/<time>/: table, CSV, chart); BENCH_ROUNDS=,
#                     BENCH_SMOKE=1 (1 round, tiny sizes), see scripts/bench
#   make install      build, install into /lib/modules/<release>/updates/ (which
#                     depmod prefers to kernel/), run depmod; INSTALL_MOD_PATH=
#                     stages under another root (depmod -b), DEPMOD=: skips depmod
#   make dkms-src     copy the module sources and dkms.conf to DKMS_SRC (default
#                     /usr/src/dm-snapshot-cxx-<MODULE_VERSION>) for `dkms install`

SHELL := /bin/bash
src := $(CURDIR)

# KVER may be a series ("6.1", "6.12") or a full release ("6.1.0-56-amd64").
KVER ?= 6.1
kver_full = $(shell $(src)/scripts/kernel-release $(KVER))
KDIR ?= /lib/modules/$(kver_full)/build
CXX ?= g++
ifeq ($(origin CXX),default)
CXX := g++
endif

# The release the headers in KDIR are for (uname -r, the vermagic), which
# depmod needs; modules_install gets it right by itself (Debian's headers
# set KERNELRELEASE in .kernelvariables).  Not `make kernelrelease`: from
# Debian's 6.1 headers, that prints the upstream "6.1.NNN".
kdir_release = $(shell sed -n 's/^.define UTS_RELEASE "\(.*\)"$$/\1/p' $(KDIR)/include/generated/utsrelease.h)
# Relative to the repository, not to KDIR, where kbuild runs.
mod_path = $(if $(INSTALL_MOD_PATH),$(abspath $(INSTALL_MOD_PATH)))
DEPMOD ?= depmod

# MODULE_VERSION of dm-snap.c, which dkms.conf reads the same way.
version := $(shell sed -n 's/^MODULE_VERSION("\(.*\)");$$/\1/p' $(src)/dm-snap.c)
DKMS_SRC ?= /usr/src/dm-snapshot-cxx-$(version)
# What a DKMS build needs, and nothing else (no build products, no tests).
dkms_files = Kbuild cxx.mk Makefile dkms.conf LICENSE scripts/kernel-release \
	$(notdir $(wildcard $(src)/*.c $(src)/*.h)) snapcore/objects.mk \
	$(patsubst $(src)/%,%,$(wildcard $(src)/snapcore/*.cpp $(src)/snapcore/*.hpp \
		$(src)/snapcore/ktl/*.hpp))

.PHONY: all module install dkms-src clean unit check check-full demo bench

all: module

module:
	@test -d "$(KDIR)" || { echo "no kernel headers at $(KDIR) (run scripts/setup)"; exit 1; }
	$(MAKE) -C $(KDIR) M=$(src) CXX=$(CXX) modules

# Debian's headers carry no signing key and no System.map: kbuild's signing
# step is switched off (under Secure Boot, use DKMS, which signs with its
# MOK) and kbuild's depmod, which skips itself with a warning, is replaced
# by ours.  6.12 installs the module xz-compressed, as its own modules are.
install: module
	@release='$(kdir_release)'; test -n "$$release" || \
		{ echo "no kernel release in $(KDIR)/include/generated/utsrelease.h"; exit 1; }
	$(MAKE) -C $(KDIR) M=$(src) CXX=$(CXX) \
		INSTALL_MOD_PATH=$(mod_path) INSTALL_MOD_DIR=updates CONFIG_MODULE_SIG_ALL= \
		modules_install
	$(DEPMOD) $(if $(mod_path),-b $(mod_path)) -a $(kdir_release)

dkms-src:
	@test -n "$(version)" || { echo "no MODULE_VERSION in dm-snap.c"; exit 1; }
	mkdir -p $(DKMS_SRC)
	cd $(src) && cp --parents $(dkms_files) $(DKMS_SRC)/

unit:
	$(src)/scripts/run-unit-tests

check:
	$(src)/scripts/check

check-full:
	$(src)/scripts/check --full

demo:
	ko=$$($(src)/scripts/build-module $(KVER) | tail -n1) && \
	DMSNAP_KO=$$ko VM_PASS_ENV=DMSNAP_KO $(src)/scripts/vm-run --kernel $(KVER) -- $(src)/scripts/demo-guest

bench:
	$(src)/scripts/bench --kernel $(KVER) $(if $(filter 1,$(BENCH_SMOKE)),--smoke)

clean:
	@for d in /lib/modules/*/build; do \
		[ -d "$$d" ] && $(MAKE) -s -C "$$d" M=$(src) clean >/dev/null 2>&1 && break; \
	done; true
	rm -rf $(src)/build $(src)/.tmp_versions
