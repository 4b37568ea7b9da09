#!/usr/bin/env bash
# lvextend of a snapshot: LVM reloads only the -cow device (a linear map)
# with a bigger table and suspends/resumes it; the snapshot's own table is
# left alone.  The snapshot must see the new size at once (status total) and
# use it: writes that would not have fit before succeed without
# invalidation, new metadata areas go past the old end, and the data
# survives re-creation of the snapshot from the grown COW.
# shellcheck disable=SC2046 # random_ranges lists are split on purpose
set -u -o pipefail
. "${BASH_SOURCE[0]%/*}/lib.sh"
. "${BASH_SOURCE[0]%/*}/dmsnap.sh"
. "${BASH_SOURCE[0]%/*}/cow.sh"

cow_seed 24

load_test_modules
check make_ramdisks 2 32 || bail "ramdisks"
cow_load_dmsnap

osize=$((16 * MiB)) size=$((16 * 2048))
check dmsetup create grow-real --table "0 $size linear /dev/ram0 0" || bail "real"
real=/dev/mapper/grow-real origin=/dev/mapper/grow-origin snap=/dev/mapper/grow-snap
cow=/dev/mapper/grow-cow
check cowpy fill $real /tmp/origin.model
check origin_create grow-origin $real || bail "origin"
dd if=/dev/zero of=/dev/ram1 bs=1M count=16 oflag=direct status=none

# grow_cow SECTORS: what lvextend does to the -cow device.
grow_cow() {
	dmsetup reload grow-cow --table "0 $1 linear /dev/ram1 0" &&
		dmsetup suspend grow-cow && dmsetup resume grow-cow
}

for type in P N; do
	diag "--- $type store, chunk 8"
	# 1 MiB: room for 254 exceptions (P) or 256 (N).
	check dmsetup create grow-cow --table "0 2048 linear /dev/ram1 0" || bail "cow"
	dd if=/dev/zero of=$cow bs=4k count=1 oflag=direct status=none
	cp /tmp/origin.model /tmp/snap.model
	check snap_create grow-snap grow-origin $real $cow $type 8 || bail "snapshot"
	snap_table=$(dmsetup table grow-snap)
	track_reset 8
	check_as "$type: origin writes to 200 chunks" mw $origin /tmp/origin.model 0:$((200 * 4096))
	check_as "$type: snapshot writes to 40 chunks" mw $snap /tmp/snap.model \
		$((8 * MiB)):$((40 * 4096))
	expect_eq "$(snap_status grow-snap)" "$(expected_usage $type 8 240 2048)" \
		"$type: 240 chunks used in 1 MiB"

	# Grow to 8 MiB: 16384 sectors.
	check grow_cow 16384
	expect_eq "$(blockdev --getsz $cow)" 16384 "$type: COW device grown"
	expect_eq "$(dmsetup table grow-snap)" "$snap_table" "$type: snapshot table untouched"
	expect_eq "$(snap_status grow-snap)" "$(expected_usage $type 8 240 16384)" \
		"$type: status total shows the new size at once"

	# 4 MiB more: 1024 chunks, which did not fit before; for P this needs
	# metadata areas 1..4, all beyond the old end.
	check_as "$type: origin writes to 1024 more chunks" mw $origin /tmp/origin.model \
		$((4 * MiB)):$((4 * MiB))
	check_as "$type: snapshot writes to more chunks" mw $snap /tmp/snap.model \
		$((12 * MiB)):$((300 * 1024)) $(random_ranges $osize 8 $((16 * 1024)))
	expect_eq "$(snap_status grow-snap)" "$(expected_usage $type 8 ${#TRACK[@]} 16384)" \
		"$type: ${#TRACK[@]} chunks used in 8 MiB, not invalidated"
	expect_content $snap /tmp/snap.model "$type: snapshot content after growth" \
		$origin /tmp/origin.model "$type: origin content after growth"

	if [[ $type == P ]]; then
		status=$(snap_status grow-snap)
		check snap_remove grow-snap grow-origin
		check snap_create grow-snap grow-origin $real $cow P 8
		expect_eq "$(snap_status grow-snap)" "$status" "P: same status after re-creation"
		expect_content $snap /tmp/snap.model "P: same content after re-creation"
	fi

	# Growing again, the store takes it once more (and also over 24 MiB).
	check grow_cow 49152
	expect_eq "$(snap_status grow-snap)" "$(expected_usage $type 8 ${#TRACK[@]} 49152)" \
		"$type: status total follows a second growth"
	check_as "$type: origin writes to the rest" mw $origin /tmp/origin.model \
		0:$((osize))
	expect_eq "$(snap_status grow-snap)" "$(expected_usage $type 8 4096 49152)" \
		"$type: every chunk of the origin copied"
	expect_content $snap /tmp/snap.model "$type: snapshot content at the end" \
		$origin /tmp/origin.model "$type: origin content at the end"

	check snap_remove grow-snap grow-origin
	check dmsetup remove grow-cow
done

check dmsetup remove grow-origin
check dmsetup remove grow-real
finish
