#!/usr/bin/env bash
# The module loads, registers the three targets at the in-tree versions,
# refuses every malformed table line with its specific error, reports table
# lines exactly as loaded (devices as maj:min), and unloads cleanly.
. "${BASH_SOURCE[0]%/*}/lib.sh"
. "${BASH_SOURCE[0]%/*}/dmsnap.sh"

load_test_modules
make_ramdisks 2 16
load_dmsnap

expect_eq "$(target_version snapshot-origin)" "v1.9.0" "snapshot-origin v1.9.0 registered"
expect_eq "$(target_version snapshot)" "v1.16.0" "snapshot v1.16.0 registered"
expect_eq "$(target_version snapshot-merge)" "v1.5.0" "snapshot-merge v1.5.0 registered"
expect_eq "$(cat /sys/module/dm_snapshot/version 2>/dev/null)" \
	"$(modinfo -F version "$DMSNAP_KO")" "module is ours (MODULE_VERSION)"

O=/dev/ram0 C=/dev/ram1
OT=$(devt $O) CT=$(devt $C)

# A 4 KiB-sector device for block-size checks.
truncate -s 16M /tmp/big-sector.img
L=$(losetup --sector-size 4096 --show -f /tmp/big-sector.img) || bail "losetup"

expect_table_error "snapshot-origin" "origin: incorrect number of arguments"
expect_table_error "snapshot-origin $O $C" "origin: incorrect number of arguments"
expect_table_error "snapshot-origin /dev/nonexistent" "Cannot get target device"
expect_table_error "snapshot $O $C P" "requires 4 or more arguments"
expect_table_error "snapshot $O $C P 8 3 a b c" "Invalid number of feature arguments"
expect_table_error "snapshot $O $C P 8 2 discard_zeroes_cow" "Invalid number of feature arguments"
expect_table_error "snapshot $O $C P 8 x" "Invalid number of feature arguments"
expect_table_error "snapshot $O $C P 8 1 bogus" "Unrecognised feature requested"
expect_table_error "snapshot $O $C P 8 1 discard_passdown_origin" \
	"discard_passdown_origin feature depends on discard_zeroes_cow"
expect_table_error "snapshot $O $C P 8 0 junk" "Unexpected arguments after the feature list"
expect_table_error "snapshot /dev/nonexistent $C X 8" "Cannot get origin device"
expect_table_error "snapshot $O /dev/nonexistent P 8" "Cannot get COW device"
expect_table_error "snapshot $O $O P 8" "COW device cannot be the same as origin device"
expect_table_error "snapshot $O $OT P 8" "COW device cannot be the same as origin device"
expect_table_error "snapshot $O $C X 8" "Couldn't create exception store: Exception store type is not P or N"
expect_table_error "snapshot $O $C PX 8" "Couldn't create exception store: Unsupported exception store option"
expect_table_error "snapshot $O $C Nq 8" "Couldn't create exception store: Unsupported exception store option"
expect_table_error "snapshot $O $C P abc" "Couldn't create exception store: Invalid chunk size"
expect_table_error "snapshot $O $C P -8" "Couldn't create exception store: Invalid chunk size"
expect_table_error "snapshot $O $C P 12" "Couldn't create exception store: Chunk size is not a power of 2"
expect_table_error "snapshot $O $L P 4" \
	"Couldn't create exception store: Chunk size is not a multiple of device blocksize"
expect_table_error "snapshot $L $C P 4" \
	"Couldn't create exception store: Chunk size is not a multiple of device blocksize"
expect_table_error "snapshot $O $C P 8388608" "Couldn't create exception store: Chunk size is too high"
expect_table_error "snapshot $O $C N 0" "Chunk size not set"
expect_table_error "snapshot-merge $O $C N 8" "Snapshot exception store does not support snapshot-merge."

# Table lines come back exactly as LVM compares them: devices as maj:min,
# store type upper case, chunk size in sectors.
size=$(blockdev --getsz $O)
check dmsetup create dmsnap_origin --table "0 $size snapshot-origin $O"
expect_eq "$(dmsetup table dmsnap_origin)" "0 $size snapshot-origin $OT" "origin table line"
expect_eq "$(dmsetup status dmsnap_origin)" "0 $size snapshot-origin " "origin status is empty"
check dmsetup create dmsnap_snap --table "0 $size snapshot $O $C p 8"
expect_eq "$(dmsetup table dmsnap_snap)" "0 $size snapshot $OT $CT P 8" "snapshot table line"
cow_size=$(blockdev --getsz $C)
expect_eq "$(dmsetup status dmsnap_snap)" "0 $size snapshot 16/$cow_size 16" \
	"new persistent store: header and first area allocated"
# A second table on the same COW is a handover destination: it may not
# resume while the source is live, and a third is refused outright.
dmesg -C
expect_fail dmsetup create dmsnap_snap2 --table "0 $size snapshot $O $C P 8"
check grep -q "Unable to perform snapshot handover until source is suspended." <(dmesg)
dmsetup remove dmsnap_snap2 >/dev/null 2>&1
check dmsetup reload dmsnap_snap --table "0 $size snapshot $OT $CT P 8"
expect_table_error "snapshot $O $C P 8" "Snapshot cow pairing for exception table handover failed"
check dmsetup resume dmsnap_snap
expect_eq "$(dmsetup table dmsnap_snap)" "0 $size snapshot $OT $CT P 8" "table after handover"
expect_eq "$(dmsetup status dmsnap_snap)" "0 $size snapshot 16/$cow_size 16" "status after handover"
# snapshot-merge on that COW is a handover destination too (LVM's online
# merge): it may not resume while the source is live.
dmesg -C
expect_fail dmsetup create dmsnap_merge --table "0 $size snapshot-merge $O $C P 8"
check grep -q "Unable to perform snapshot handover until source is suspended." <(dmesg)
dmsetup remove dmsnap_merge >/dev/null 2>&1

# The COW now has a header saying chunk size 8: it wins over the table's.
check dmsetup remove dmsnap_snap
dmesg -C
check dmsetup create dmsnap_snap --table "0 $size snapshot $OT $CT Po 16"
expect_eq "$(dmsetup table dmsnap_snap)" "0 $size snapshot $OT $CT PO 8" "PO table line, header chunk size"
check grep -q "chunk size 8 in device metadata overrides table chunk size of 16" <(dmesg)
check dmsetup remove dmsnap_snap
check dmsetup create dmsnap_snap --table "0 $size snapshot $OT $CT n 32"
expect_eq "$(dmsetup table dmsnap_snap)" "0 $size snapshot $OT $CT N 32" "N table line"

# The module is pinned while tables use it.
expect_fail rmmod dm_snapshot
check dmsetup remove dmsnap_snap
check dmsetup remove dmsnap_origin
losetup -d "$L"
check rmmod dm_snapshot
expect_eq "$(dmsetup targets | grep -c '^snapshot')" "0" "targets gone after unload"

finish
