# SPDX-License-Identifier: GPL-2.0
# Objects of the C++ core, shared by Kbuild (module) and CMakeLists.txt (host).
snapcore-objs := abi_entry.o disk_format.o origin.o snapshot.o table_args.o text.o
