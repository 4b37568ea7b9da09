#!/usr/bin/env bash
# A full COW.  An origin write that finds no room invalidates the snapshot:
# status "Invalid", snapshot I/O fails, the origin works on, the kernel log
# says why, a table event is raised, and the invalid flag is persisted in
# the header (still "Invalid" after re-creation).  With "PO", a snapshot
# write that finds no room fails and sets "Overflow" instead: the snapshot
# stays readable, further snapshot writes fail; an origin write that needs
# room still invalidates.  Overflow is not persisted.  With "P", a snapshot
# write that finds no room invalidates.  A transient store invalidates too.
#
# Capacity of a 1 MiB COW with 8-sector (4 KiB) chunks: 256 chunks; a
# persistent store spends one on the header and one on the metadata area
# (256 exceptions would fit), leaving 254; a transient one uses all 256.
# shellcheck disable=SC2046 # random_ranges lists are split on purpose
set -u -o pipefail
. "${BASH_SOURCE[0]%/*}/lib.sh"
. "${BASH_SOURCE[0]%/*}/dmsnap.sh"
. "${BASH_SOURCE[0]%/*}/cow.sh"

cow_seed 23

load_test_modules
check make_ramdisks 2 32 || bail "ramdisks"
cow_load_dmsnap

osize=$((16 * MiB)) size=$((16 * 2048)) cowsz=2048
check dmsetup create full-real --table "0 $size linear /dev/ram0 0" || bail "real"
real=/dev/mapper/full-real origin=/dev/mapper/full-origin snap=/dev/mapper/full-snap
check cowpy fill $real /tmp/origin.model
check origin_create full-origin $real || bail "origin"
# Four 1 MiB COWs side by side on ram1, zeroed: A, B, C, D.
dd if=/dev/zero of=/dev/ram1 bs=1M count=4 oflag=direct status=none
i=0
for c in A B C D; do
	check dmsetup create full-cow$c --table "0 $cowsz linear /dev/ram1 $((i * cowsz))"
	i=$((i + 1))
done

events() {
	dmsetup info -c --noheadings -o events "$1"
}

# header_valid COW: the "valid" word of the on-disk header.
header_valid() {
	dd if="$1" bs=512 count=1 iflag=direct status=none | od -An -tu4 -j 4 -N 4 | tr -d ' '
}

# chunk_ranges FIRST COUNT: one range per 4 KiB chunk, alternately the whole
# chunk and 1 KiB in its middle (which needs the rest of the chunk copied).
chunk_ranges() {
	local k
	for ((k = $1; k < $1 + $2; k++)); do
		if ((k % 2)); then
			echo "$((k * 4096 + 1536)):1024"
		else
			echo "$((k * 4096)):4096"
		fi
	done
}

# written_before_failure OUTPUT: how many ranges cowpy wrote before failing.
written_before_failure() {
	sed -n 's/.*failed after \([0-9]*\) ranges.*/\1/p' <<<"$1"
}

# --- A: P, origin writes overflow the COW ---------------------------------------
diag "--- A: P store, origin writes overflow"
cp /tmp/origin.model /tmp/snap.model
check snap_create full-snap full-origin $real /dev/mapper/full-cowA P 8 || bail "snapshot A"
check_as "origin write of 200 chunks" mw $origin /tmp/origin.model 0:$((200 * 4096))
expect_eq "$(snap_status full-snap)" "$(expected_usage P 8 200 $cowsz)" "200 of 254 chunks used"
expect_content $snap /tmp/snap.model "snapshot intact with 200 chunks used"
ev=$(events full-snap)
dmesg -C
check_as "origin write of 512 more chunks succeeds" mw $origin /tmp/origin.model \
	$((4 * MiB)):$((2 * MiB))
expect_eq "$(snap_status full-snap)" "Invalid" "status is Invalid"
expect_kmsg "Invalidating snapshot: Unable to allocate exception." "kernel log says why"
check test "$(events full-snap)" -gt "$ev"
check read_fails $snap
expect_fail dd if=/dev/zero of=$snap bs=4k count=1 seek=3000 oflag=direct status=none
expect_content $origin /tmp/origin.model "origin reads all its writes" \
	$real /tmp/origin.model "origin device has all the writes"
check_as "origin writes after invalidation" mw $origin /tmp/origin.model \
	$(random_ranges $osize 8 $((64 * 1024))) 1234:5678
expect_content $origin /tmp/origin.model "origin reads its writes after invalidation"
expect_eq "$(header_valid /dev/mapper/full-cowA)" 0 "header marks the COW invalid"

check snap_remove full-snap full-origin
dmesg -C
check snap_create full-snap full-origin $real /dev/mapper/full-cowA P 8
expect_eq "$(snap_status full-snap)" "Invalid" "still Invalid after re-creation"
expect_kmsg "Snapshot is marked invalid." "kernel log says the COW is marked invalid"
check read_fails $snap
check_as "origin writes with an invalid snapshot" mw $origin /tmp/origin.model \
	$(random_ranges $osize 4 $((64 * 1024)))
expect_content $origin /tmp/origin.model "origin works with an invalid snapshot"
check snap_remove full-snap full-origin

# --- B: PO, snapshot writes overflow the COW ------------------------------------
diag "--- B: PO store, snapshot writes overflow"
cp /tmp/origin.model /tmp/snap.model
check snap_create full-snap full-origin $real /dev/mapper/full-cowB PO 8 || bail "snapshot B"
check_as "snapshot writes to 250 chunks" mw $snap /tmp/snap.model $(chunk_ranges 0 250)
expect_eq "$(snap_status full-snap)" "$(expected_usage P 8 250 $cowsz)" "250 of 254 chunks used"
ev=$(events full-snap)
dmesg -C
out=$(cowpy write $snap /tmp/snap.model $(chunk_ranges 250 10) 2>&1)
expect_eq "$(written_before_failure "$out")" 4 \
	"snapshot writes to 10 more chunks: the first 4 fit, the 5th fails"
expect_eq "$(snap_status full-snap)" "Overflow" "status is Overflow"
expect_kmsg "Snapshot overflowed: Unable to allocate exception." "kernel log says why"
expect_content $snap /tmp/snap.model "overflowed snapshot reads its data" \
	$origin /tmp/origin.model "origin unaffected by the overflow"
out=$(cowpy write $snap /tmp/snap.model 8192:4096 2>&1)
expect_eq "$(written_before_failure "$out")" 0 "overflowed snapshot refuses writes to chunks it has"
# An origin write to chunks the snapshot has needs no room.
check_as "origin write to chunks the snapshot has" mw $origin /tmp/origin.model 0:$((16 * 4096))
expect_eq "$(snap_status full-snap)" "Overflow" "still Overflow after origin writes needing no room"
expect_content $snap /tmp/snap.model "overflowed snapshot still reads its data"
diag "table events: $ev before the overflow, $(events full-snap) after"

# Overflow lives in memory only: after re-creation the store is just full.
check snap_remove full-snap full-origin
check snap_create full-snap full-origin $real /dev/mapper/full-cowB PO 8
expect_eq "$(snap_status full-snap)" "$cowsz/$cowsz 16" "after re-creation: full, not Overflow"
expect_content $snap /tmp/snap.model "re-created snapshot reads its data"
check_as "re-created snapshot takes writes to chunks it has" mw $snap /tmp/snap.model 4096:4096 8192:1024
out=$(cowpy write $snap /tmp/snap.model $((300 * 4096)):4096 2>&1)
expect_eq "$(written_before_failure "$out")" 0 "a write to a new chunk fails again"
expect_eq "$(snap_status full-snap)" "Overflow" "Overflow again"

# An origin write that needs room invalidates even a PO snapshot.
ev=$(events full-snap)
dmesg -C
check_as "origin write needing room succeeds" mw $origin /tmp/origin.model $((8 * MiB)):$((64 * 1024))
expect_eq "$(snap_status full-snap)" "Invalid" "origin overflow of a PO snapshot: Invalid"
expect_kmsg "Invalidating snapshot: Unable to allocate exception." "kernel log says why"
check test "$(events full-snap)" -gt "$ev"
check read_fails $snap
expect_content $origin /tmp/origin.model "origin reads all its writes"
check snap_remove full-snap full-origin

# --- C: P, snapshot writes overflow the COW -------------------------------------
diag "--- C: P store, snapshot writes overflow"
cp /tmp/origin.model /tmp/snap.model
check snap_create full-snap full-origin $real /dev/mapper/full-cowC P 8 || bail "snapshot C"
dmesg -C
out=$(cowpy write $snap /tmp/snap.model $(chunk_ranges 100 260) 2>&1)
expect_eq "$(written_before_failure "$out")" 254 "254 chunks fit, the 255th write fails"
expect_eq "$(snap_status full-snap)" "Invalid" "snapshot write overflow of a P snapshot: Invalid"
expect_kmsg "Invalidating snapshot: Unable to allocate exception." "kernel log says why"
check read_fails $snap
expect_content $origin /tmp/origin.model "origin unaffected"
expect_eq "$(header_valid /dev/mapper/full-cowC)" 0 "header marks the COW invalid"
check snap_remove full-snap full-origin

# --- D: N, origin writes overflow the COW ---------------------------------------
diag "--- D: N store, origin writes overflow"
cp /tmp/origin.model /tmp/snap.model
check snap_create full-snap full-origin $real /dev/mapper/full-cowD N 8 || bail "snapshot D"
check_as "origin write of 256 chunks" mw $origin /tmp/origin.model $((MiB)):$((MiB))
expect_eq "$(snap_status full-snap)" "$cowsz/$cowsz 0" "transient store: all 256 chunks used"
expect_content $snap /tmp/snap.model "snapshot intact with the COW full"
dmesg -C
check_as "one more origin chunk" mw $origin /tmp/origin.model $((3 * MiB)):512
expect_eq "$(snap_status full-snap)" "Invalid" "transient store overflow: Invalid"
expect_kmsg "Invalidating snapshot: Unable to allocate exception." "kernel log says why"
check read_fails $snap
expect_content $origin /tmp/origin.model "origin reads all its writes"
check snap_remove full-snap full-origin

check dmsetup remove full-origin
for c in A B C D; do
	check dmsetup remove full-cow$c
done
check dmsetup remove full-real
finish
