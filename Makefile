# SPDX-License-Identifier: GPL-2.0
#
# Front door.  `make` builds dm-snapshot.ko against the installed Debian
# headers (6.1 by default); KVER= or KDIR= selects another kernel.
#   make              module for KVER (default: newest installed 6.1 Debian kernel)
#   make KVER=6.12    module for the newest installed 6.12 kernel
#   make unit         host build of the C++ core and its unit tests (CMake)
#   make check        every test suite, ending with "N passed, N failed"
#   make demo         boot a VM and show the module at work

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

.PHONY: all module clean unit check demo

all: module

module:
	@test -d "$(KDIR)" || { echo "no kernel headers at $(KDIR) (run scripts/setup)"; exit 1; }
	$(MAKE) -C $(KDIR) M=$(src) CXX=$(CXX) modules

unit:
	$(src)/scripts/run-unit-tests

check:
	$(src)/scripts/check

demo:
	ko=$$($(src)/scripts/build-module $(KVER) | tail -n1) && \
	DMSNAP_KO=$$ko VM_PASS_ENV=DMSNAP_KO $(src)/scripts/vm-run --kernel $(KVER) -- $(src)/scripts/demo-guest

clean:
	@for d in /lib/modules/*/build; do \
		[ -d "$$d" ] && $(MAKE) -s -C "$$d" M=$(src) clean >/dev/null 2>&1 && break; \
	done; true
	rm -rf $(src)/build $(src)/.tmp_versions
