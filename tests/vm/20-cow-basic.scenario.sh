#!/usr/bin/env bash
# Copy-on-write basics: a snapshot keeps reading the origin's data as of its
# creation while the origin is overwritten (sector-sized, byte-unaligned,
# chunk-straddling and many-chunk writes), writes to the snapshot show up in
# the snapshot only, and the status line accounts for every chunk exactly:
# "<allocated>/<COW size> <metadata>" in sectors.  For persistent stores
# allocated = header + metadata areas + data chunks and metadata = header +
# areas; for transient ones allocated = data chunks and metadata = 0.
# Runs for P, PO and N stores over a range of chunk sizes.
# shellcheck disable=SC2046 # random_ranges lists are split on purpose
set -u -o pipefail
. "${BASH_SOURCE[0]%/*}/lib.sh"
. "${BASH_SOURCE[0]%/*}/dmsnap.sh"
. "${BASH_SOURCE[0]%/*}/cow.sh"

cow_seed 20

# "TYPE:CHUNK" pairs; each round takes a fresh snapshot of the origin.
# The default has every store type and every chunk size; a round takes
# ~10 s under TCG on an idle host.  COW_MATRIX (passed in through
# VM_PASS_ENV) changes the set, e.g. "P:16 PO:8 PO:1024 N:16 N:64 N:1024".
matrix=${COW_MATRIX:-"P:8 P:64 P:1024 PO:16 N:8"}

load_test_modules
check make_ramdisks 2 32 || bail "ramdisks"
cow_load_dmsnap

osize=$((16 * MiB))
cow=/dev/ram1
cow_sectors=$(blockdev --getsz $cow)
cow_t=$(devt $cow)
check dmsetup create cow-real --table "0 $((osize / 512)) linear /dev/ram0 0" || bail "real"
real=/dev/mapper/cow-real
real_t=$(devt $real)
check cowpy fill $real /tmp/origin.model
check origin_create cow-origin $real || bail "origin"
origin=/dev/mapper/cow-origin snap=/dev/mapper/cow-snap
expect_content $origin /tmp/origin.model "origin reads the data written to its device"

# fresh_chunk: the last chunk no write has touched since track_reset.
fresh_chunk() {
	local c
	for ((c = osize / cb - 1; c >= 0; c--)); do
		[[ -n ${TRACK[$c]:-} ]] || { echo $c; return; }
	done
	echo 0
}

for round in $matrix; do
	type=${round%:*} chunk=${round#*:}
	cb=$((chunk * 512)) # chunk size in bytes
	start=$SECONDS
	diag "--- $type store, chunk $chunk sectors"

	# LVM zeroes the start of a new COW: magic 0 means "new snapshot".
	dd if=/dev/zero of=$cow bs=4k count=1 oflag=direct status=none
	cp /tmp/origin.model /tmp/snap.model
	track_reset "$chunk"
	if ! check snap_create cow-snap cow-origin $real $cow "$type" "$chunk"; then
		continue
	fi
	expect_eq "$(dmsetup table cow-snap)" \
		"0 $((osize / 512)) snapshot $real_t $cow_t $type $chunk" "$type/$chunk: table line"
	expect_eq "$(snap_status cow-snap)" "$(expected_usage "${type:0:1}" "$chunk" 0 "$cow_sectors")" \
		"$type/$chunk: status of the new snapshot"
	expect_content $snap /tmp/snap.model "$type/$chunk: new snapshot reads the origin's data"

	# Origin writes of every shape: one-sector writes at odd sectors, across
	# a chunk boundary, byte-unaligned (buffered) ones inside a chunk and
	# across a chunk boundary, exactly one chunk, many chunks in one write,
	# random ones, and one to a chunk copied already.
	check_as "$type/$chunk: origin writes, one sector each" \
		mw_sectors $origin /tmp/origin.model 1 3
	check_as "$type/$chunk: origin writes, across a chunk boundary" \
		mw_sectors $origin /tmp/origin.model $((chunk * 5 - 1)) 2
	check_as "$type/$chunk: origin writes of all shapes" mw $origin /tmp/origin.model \
		$((chunk * 9 * 512 + 1536)):512 \
		12345:1000 \
		$((cb * 13 - 100)):300 \
		$((cb * 20)):$cb \
		$((MiB + 3 * 512)):$((2 * MiB + 5 * 512)) \
		$(random_ranges $osize 24 $((64 * 1024))) \
		512:1536
	expect_content $origin /tmp/origin.model "$type/$chunk: origin reads what was written to it" \
		$snap /tmp/snap.model "$type/$chunk: snapshot still reads the data of its creation" \
		$real /tmp/origin.model "$type/$chunk: origin writes reach the origin's device"
	expect_eq "$(snap_status cow-snap)" \
		"$(expected_usage "${type:0:1}" "$chunk" ${#TRACK[@]} "$cow_sectors")" \
		"$type/$chunk: status counts ${#TRACK[@]} copied chunks"

	# Snapshot writes: to a chunk copied already, to fresh chunks (one
	# sector and byte-unaligned, which must copy the rest of the chunk
	# first, and a whole chunk), across many chunks, random ones.
	cp /tmp/origin.model /tmp/origin.saved
	c=$(fresh_chunk)
	check_as "$type/$chunk: snapshot write, one sector of fresh chunk $c" \
		mw_sectors $snap /tmp/snap.model $((c * chunk + chunk / 2 + 1)) 1
	c=$(fresh_chunk)
	check_as "$type/$chunk: snapshot write, 2000 bytes inside fresh chunk $c" \
		mw $snap /tmp/snap.model $((c * cb + 777)):2000
	c=$(fresh_chunk)
	check_as "$type/$chunk: snapshot write, all of fresh chunk $c" \
		mw $snap /tmp/snap.model $((c * cb)):$cb
	check_as "$type/$chunk: snapshot writes of all shapes" mw $snap /tmp/snap.model \
		1024:512 \
		$((4 * MiB - 512)):$((MiB + 1024)) \
		$(random_ranges $osize 8 $((32 * 1024)))
	expect_content $snap /tmp/snap.model "$type/$chunk: snapshot reads its own writes" \
		$origin /tmp/origin.saved "$type/$chunk: snapshot writes leave the origin alone"
	expect_eq "$(snap_status cow-snap)" \
		"$(expected_usage "${type:0:1}" "$chunk" ${#TRACK[@]} "$cow_sectors")" \
		"$type/$chunk: status counts ${#TRACK[@]} chunks after snapshot writes"

	# Origin writes over chunks the snapshot wrote must not disturb them.
	check_as "$type/$chunk: origin writes over chunks the snapshot wrote" \
		mw $origin /tmp/origin.model $((4 * MiB - 2 * cb)):$((MiB + 4 * cb)) 1024:512
	expect_content $snap /tmp/snap.model "$type/$chunk: snapshot keeps its writes under origin writes" \
		$origin /tmp/origin.model "$type/$chunk: origin reads its latest writes"
	expect_eq "$(snap_status cow-snap)" \
		"$(expected_usage "${type:0:1}" "$chunk" ${#TRACK[@]} "$cow_sectors")" \
		"$type/$chunk: status counts ${#TRACK[@]} chunks at the end"

	check snap_remove cow-snap cow-origin
	expect_content $origin /tmp/origin.model "$type/$chunk: origin intact after the snapshot is gone"
	diag "$type/$chunk took $((SECONDS - start)) s"
done

check dmsetup remove cow-origin
check dmsetup remove cow-real
check rmmod dm_snapshot
finish
