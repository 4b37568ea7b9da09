# SPDX-License-Identifier: GPL-2.0
#
# Compiling C++ under kbuild, for every module of the project (included by
# Kbuild and by the KUnit module's Kbuild).  A module's Kbuild adds pattern
# rules using rule_cxx_o_cpp for its directories of .cpp files.

# g++ gets the kernel's own C flags, so that code generation (mcmodel=kernel,
# retpolines, return thunks, SLS, stack protector, fentry, no SSE, no red
# zone...) matches the C objects exactly and objtool accepts the result.
# Removed: flags that only mean something for C, and the forced includes of
# kernel headers (both the -include words and the paths they take: the core
# never sees a kernel header).

cxx-c-only-flags := -std=gnu11 -std=gnu99 -std=gnu89 \
	-Werror=strict-prototypes -Wstrict-prototypes \
	-Werror=implicit-function-declaration -Werror=implicit-int \
	-Werror=incompatible-pointer-types -Werror=designated-init \
	-Wno-pointer-sign -Wdeclaration-after-statement \
	-Wmissing-prototypes -Wold-style-definition -Wmissing-declarations \
	-Werror=return-type -Wno-old-style-declaration -Wno-override-init \
	-include %/compiler-version.h %/kconfig.h %/compiler_types.h

cxx-flags-y := -std=gnu++17 -fno-exceptions -fno-rtti \
	-fno-threadsafe-statics -fno-use-cxa-atexit -ffreestanding \
	-nostdinc++ -fcheck-new -fno-asynchronous-unwind-tables \
	-Wextra -Wno-unused-parameter -Wno-missing-field-initializers \
	-Wnon-virtual-dtor -Werror \
	-g1

cxx_flags = $(filter-out $(cxx-c-only-flags),$(c_flags)) $(cxx-flags-y)

quiet_cmd_cxx_o_cpp = CXX $(quiet_modtag) $@
      cmd_cxx_o_cpp = $(CXX) $(cxx_flags) -c -o $@ $< $(cmd_objtool)

define rule_cxx_o_cpp
	$(call cmd_and_fixdep,cxx_o_cpp)
	$(call cmd,gen_objtooldep)
	$(call cmd,gen_symversions_c)
endef
