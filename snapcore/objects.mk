# SPDX-License-Identifier: GPL-2.0
# Objects of the C++ core, shared by Kbuild (module) and CMakeLists.txt (host).
snapcore-objs := abi_entry.o area_reader.o chunk_map.o disk_format.o exception_table.o \
	origin.o origin_registry.o persistent_store.o persistent_store_merge.o \
	snapshot.o snapshot_handover.o snapshot_io.o snapshot_merge.o \
	table_args.o text.o
