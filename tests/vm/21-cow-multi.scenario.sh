#!/usr/bin/env bash
# Several snapshots of one origin, taken at different times and with
# different stores and chunk sizes: write A, snap1, write B, snap2, write C,
# snap3, write D.  Each snapshot must hold exactly the data of its time,
# writes to one snapshot must show in no other device, and removing one
# snapshot must not disturb the others.
# shellcheck disable=SC2046 # random_ranges lists are split on purpose
set -u -o pipefail
. "${BASH_SOURCE[0]%/*}/lib.sh"
. "${BASH_SOURCE[0]%/*}/dmsnap.sh"
. "${BASH_SOURCE[0]%/*}/cow.sh"

cow_seed 21

load_test_modules
check make_ramdisks 4 32 || bail "ramdisks"
cow_load_dmsnap

osize=$((16 * MiB))
check dmsetup create multi-real --table "0 $((osize / 512)) linear /dev/ram0 0" || bail "real"
real=/dev/mapper/multi-real origin=/dev/mapper/multi-origin
for c in /dev/ram1 /dev/ram2 /dev/ram3; do
	dd if=/dev/zero of=$c bs=4k count=1 oflag=direct status=none
done

# A: the first image.
check cowpy fill $real /tmp/origin.model
check origin_create multi-origin $real || bail "origin"

# snap1: P, 64 sectors.
cp /tmp/origin.model /tmp/snap1.model
check snap_create multi-snap1 multi-origin $real /dev/ram1 P 64 || bail "snap1"

# B: one large write, a few small ones.
check_as "writes B to the origin" mw $origin /tmp/origin.model $((3 * MiB + 512)):$((3 * MiB)) \
	$(random_ranges $osize 12 $((48 * 1024)))
expect_content /dev/mapper/multi-snap1 /tmp/snap1.model "snap1 holds image A after writes B"

# snap2: N, 8 sectors; the origin's chunk size limit drops to 8.
cp /tmp/origin.model /tmp/snap2.model
check snap_create multi-snap2 multi-origin $real /dev/ram2 N 8 || bail "snap2"

# C: overlaps B's large write and chunk 0.
check_as "writes C to the origin" mw $origin /tmp/origin.model $((5 * MiB - 4096)):$((2 * MiB + 1024)) 0:4096 \
	$(random_ranges $osize 12 $((48 * 1024)))
expect_content /dev/mapper/multi-snap1 /tmp/snap1.model "snap1 holds image A after writes C" \
	/dev/mapper/multi-snap2 /tmp/snap2.model "snap2 holds image B after writes C"

# snap3: PO, 1024 sectors.
cp /tmp/origin.model /tmp/snap3.model
check snap_create multi-snap3 multi-origin $real /dev/ram3 PO 1024 || bail "snap3"

# D: everywhere, unaligned ones included.
check_as "writes D to the origin" mw $origin /tmp/origin.model 0:$((osize / 4)) 12345:6789 $((osize - 3000)):2999 \
	$(random_ranges $osize 16 $((64 * 1024)))
expect_content /dev/mapper/multi-snap1 /tmp/snap1.model "snap1 holds image A after writes D" \
	/dev/mapper/multi-snap2 /tmp/snap2.model "snap2 holds image B after writes D" \
	/dev/mapper/multi-snap3 /tmp/snap3.model "snap3 holds image C after writes D" \
	$origin /tmp/origin.model "origin holds image D"

# Writes to each snapshot stay in that snapshot.
check_as "writes to snap1" mw /dev/mapper/multi-snap1 /tmp/snap1.model $((3 * MiB)):$((MiB + 512)) \
	$(random_ranges $osize 6 $((32 * 1024)))
check_as "writes to snap2" mw /dev/mapper/multi-snap2 /tmp/snap2.model 0:8192 $((5 * MiB)):$((MiB))
check_as "writes to snap3" mw /dev/mapper/multi-snap3 /tmp/snap3.model 777:$((600 * 1024)) \
	$(random_ranges $osize 6 $((32 * 1024)))
expect_content /dev/mapper/multi-snap1 /tmp/snap1.model "snap1 = A + its own writes" \
	/dev/mapper/multi-snap2 /tmp/snap2.model "snap2 = B + its own writes" \
	/dev/mapper/multi-snap3 /tmp/snap3.model "snap3 = C + its own writes" \
	$origin /tmp/origin.model "origin unaffected by snapshot writes" \
	$real /tmp/origin.model "origin's device unaffected by snapshot writes"

# Removing the middle snapshot leaves the others working.
check snap_remove multi-snap2 multi-origin
check_as "writes E to the origin" mw $origin /tmp/origin.model $(random_ranges $osize 16 $((96 * 1024))) $((8 * MiB)):$((2 * MiB))
expect_content /dev/mapper/multi-snap1 /tmp/snap1.model "snap1 intact after snap2 is removed" \
	/dev/mapper/multi-snap3 /tmp/snap3.model "snap3 intact after snap2 is removed" \
	$origin /tmp/origin.model "origin holds its latest writes"

for s in multi-snap1 multi-snap3; do
	st=$(snap_status $s)
	if [[ $st =~ ^[0-9]+/[0-9]+\ [0-9]+$ ]]; then
		pass "$s status is numeric: $st"
	else
		fail "$s status is numeric: $st"
	fi
done

check snap_remove multi-snap1 multi-origin
check snap_remove multi-snap3 multi-origin
check dmsetup remove multi-origin
check dmsetup remove multi-real
finish
