#!/usr/bin/env bash
# Persistent snapshots survive deactivation: re-created from the same COW
# (snapshot alone, or origin and snapshot both) they read the same data and
# report the same status, and keep working from where they were (new
# exceptions go after the old ones).  A table reload hands the exceptions
# over to the new table.  The chunk size stored in the COW header overrides
# the table's (with a kernel warning), and a table chunk size of 0 takes the
# header's silently; on a new COW it means the default, 32 sectors.
# shellcheck disable=SC2046 # random_ranges lists are split on purpose
set -u -o pipefail
. "${BASH_SOURCE[0]%/*}/lib.sh"
. "${BASH_SOURCE[0]%/*}/dmsnap.sh"
. "${BASH_SOURCE[0]%/*}/cow.sh"

cow_seed 22

load_test_modules
check make_ramdisks 2 32 || bail "ramdisks"
cow_load_dmsnap

osize=$((16 * MiB)) size=$((16 * 2048))
cow=/dev/ram1
cow_sectors=$(blockdev --getsz $cow)
check dmsetup create p-real --table "0 $size linear /dev/ram0 0" || bail "real"
real=/dev/mapper/p-real origin=/dev/mapper/p-origin snap=/dev/mapper/p-snap
real_t=$(devt $real) cow_t=$(devt $cow)
check cowpy fill $real /tmp/origin.model
check origin_create p-origin $real || bail "origin"
dd if=/dev/zero of=$cow bs=4k count=1 oflag=direct status=none

cp /tmp/origin.model /tmp/snap.model
check snap_create p-snap p-origin $real $cow P 16 || bail "snapshot"
track_reset 16
# 6 MiB in one go: 768 exceptions fill the first metadata area (512 per area
# at 16 sectors) and start the second.
check_as "origin writes" mw $origin /tmp/origin.model $((2 * MiB + 512)):$((6 * MiB)) \
	$(random_ranges $osize 16 $((64 * 1024)))
check_as "snapshot writes" mw $snap /tmp/snap.model 1000:5000 $((12 * MiB)):$((512 * 1024)) \
	$(random_ranges $osize 8 $((32 * 1024)))
expect_content $snap /tmp/snap.model "snapshot content before deactivation" \
	$origin /tmp/origin.model "origin content before deactivation"
status=$(snap_status p-snap)
expect_eq "$status" "$(expected_usage P 16 ${#TRACK[@]} "$cow_sectors")" \
	"status before deactivation: ${#TRACK[@]} exceptions"
table="0 $size snapshot $real_t $cow_t P 16"

# --- snapshot deactivated and re-created ---------------------------------------
check snap_remove p-snap p-origin
cow_md5=$(dev_md5 $cow)
check snap_create p-snap p-origin $real $cow P 16 || bail "re-create"
expect_eq "$(dmsetup table p-snap)" "$table" "table line after re-creation"
expect_eq "$(snap_status p-snap)" "$status" "same status after re-creation"
expect_content $snap /tmp/snap.model "same snapshot content after re-creation"
expect_eq "$(dev_md5 $cow)" "$cow_md5" "activation does not write to a valid COW"

# It goes on where it was: new exceptions after the old ones.
check_as "origin writes after re-creation" mw $origin /tmp/origin.model \
	$(random_ranges $osize 12 $((64 * 1024))) 0:$((MiB / 2))
check_as "snapshot writes after re-creation" mw $snap /tmp/snap.model \
	$((15 * MiB)):$((256 * 1024)) $(random_ranges $osize 4 8192)
status=$(snap_status p-snap)
expect_eq "$status" "$(expected_usage P 16 ${#TRACK[@]} "$cow_sectors")" \
	"status after more writes: ${#TRACK[@]} exceptions"
expect_content $snap /tmp/snap.model "snapshot content after more writes" \
	$origin /tmp/origin.model "origin content after more writes"

# --- table reload: exceptions handed over ---------------------------------------
# The new table's chunk size and store option: the chunk size stays the
# store's (16), the O option is taken from the new line.
check dmsetup reload p-snap --table "0 $size snapshot $real_t $cow_t PO 8"
check dmsetup suspend p-snap
check dmsetup resume p-snap
expect_eq "$(dmsetup table p-snap)" "0 $size snapshot $real_t $cow_t PO 16" \
	"table after reload: PO from the new line, chunk size from the store"
expect_eq "$(snap_status p-snap)" "$status" "same status after reload"
expect_content $snap /tmp/snap.model "same snapshot content after reload"
check_as "origin writes after reload" mw $origin /tmp/origin.model \
	$(random_ranges $osize 12 $((64 * 1024)))
check_as "snapshot writes after reload" mw $snap /tmp/snap.model $(random_ranges $osize 4 8192)
status=$(snap_status p-snap)
expect_eq "$status" "$(expected_usage P 16 ${#TRACK[@]} "$cow_sectors")" \
	"status after writes through the reloaded table: ${#TRACK[@]} exceptions"
expect_content $snap /tmp/snap.model "snapshot content after writes through the reloaded table" \
	$origin /tmp/origin.model "origin content after writes through the reloaded table"

# --- both devices removed and re-created ---------------------------------------
check snap_remove p-snap p-origin
check dmsetup remove p-origin
check test ! -e $origin
check origin_create p-origin $real
check snap_create p-snap p-origin $real $cow P 16
expect_eq "$(dmsetup table p-snap)" "$table" "table line after full re-creation"
expect_eq "$(snap_status p-snap)" "$status" "same status after full re-creation"
expect_content $snap /tmp/snap.model "same snapshot content after full re-creation" \
	$origin /tmp/origin.model "same origin content after full re-creation"

# --- the header's chunk size overrides the table's ------------------------------
check snap_remove p-snap p-origin
dmesg -C
check snap_create p-snap p-origin $real $cow P 8
expect_eq "$(table_chunk p-snap)" 16 "table shows the header's chunk size, 16, not 8"
expect_kmsg "chunk size 16 in device metadata overrides table chunk size of 8" \
	"kernel log explains the override"
expect_eq "$(snap_status p-snap)" "$status" "same status with the overridden chunk size"
expect_content $snap /tmp/snap.model "same snapshot content with the overridden chunk size"
check_as "origin writes with the overridden chunk size" mw $origin /tmp/origin.model \
	$(random_ranges $osize 8 $((64 * 1024)))
status=$(snap_status p-snap)
expect_eq "$status" "$(expected_usage P 16 ${#TRACK[@]} "$cow_sectors")" \
	"status counts 16-sector chunks: ${#TRACK[@]} exceptions"
expect_content $snap /tmp/snap.model "snapshot content after writes with the overridden chunk size"

# Chunk size 0: the header's, without a warning.
check snap_remove p-snap p-origin
dmesg -C
check snap_create p-snap p-origin $real $cow P 0
expect_eq "$(table_chunk p-snap)" 16 "table chunk size 0 takes the header's, 16"
if kmsg_has "overrides table chunk size"; then
	fail "no override warning for table chunk size 0"
	diag "$(dmesg | tail -n 5)"
else
	pass "no override warning for table chunk size 0"
fi
expect_eq "$(snap_status p-snap)" "$status" "same status with chunk size 0"
expect_content $snap /tmp/snap.model "same snapshot content with chunk size 0" \
	$origin /tmp/origin.model "origin content at the end"

# Chunk size 0 on a new COW: the default of 32 sectors.
check snap_remove p-snap p-origin
dd if=/dev/zero of=$cow bs=4k count=1 oflag=direct status=none
cp /tmp/origin.model /tmp/snap.model
check snap_create p-snap p-origin $real $cow P 0
expect_eq "$(table_chunk p-snap)" 32 "chunk size 0 on a new COW means 32"
expect_eq "$(snap_status p-snap)" "64/$cow_sectors 64" "new COW with 32-sector chunks"
track_reset 32
check_as "origin writes with 32-sector chunks" mw $origin /tmp/origin.model \
	$(random_ranges $osize 8 $((64 * 1024)))
expect_eq "$(snap_status p-snap)" "$(expected_usage P 32 ${#TRACK[@]} "$cow_sectors")" \
	"status counts 32-sector chunks: ${#TRACK[@]} exceptions"
expect_content $snap /tmp/snap.model "snapshot with default chunk size"

check snap_remove p-snap p-origin
check dmsetup remove p-origin
check dmsetup remove p-real
finish
