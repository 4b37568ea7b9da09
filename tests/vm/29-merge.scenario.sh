#!/usr/bin/env bash
# snapshot-merge at the dmsetup level, checked by content (whole devices read
# with O_DIRECT against models):
#  1. direct merge (LVM's deferred merge): snapshot-merge constructed on a
#     COW with origin and snapshot writes finishes with allocated ==
#     metadata, and the origin then holds exactly the snapshot's data; a
#     merged COW is empty when used again;
#  2. online merge with handover (lvconvert --merge on an active origin):
#     snapshot-merge preloaded on the origin, error on the snapshot;
#  3. I/O while merging, on a COW slowed down by dm-delay: discards (with
#     discard_zeroes_cow: they complete and change nothing), writes to
#     merged and unmerged chunks, flushes, reads;
#  4. an interrupted merge (suspended and removed half-way) resumes where it
#     stopped; the half-merged COW reads right as a plain snapshot;
#  5. other snapshots of the origin keep their data through the merge (the
#     merge copies origin chunks to their COWs first); one merge at a time;
#  6. errors: N stores cannot merge; an I/O error ends the merge with
#     "Merge failed", the device stays usable and a new table finishes it.
# On ramdisks the in-tree module merges thousands of chunks before the
# first poll of the status: the merge is watched at work only with the
# slow COW (3, 4).  Under TCG every process costs, so devices are created without the
# suspend/resume dance where nothing depends on it (a snapshot table before
# its origin's, removals without writes in flight).
# shellcheck disable=SC2046 # random_ranges lists are split on purpose
set -u -o pipefail
. "${BASH_SOURCE[0]%/*}/lib.sh"
. "${BASH_SOURCE[0]%/*}/dmsnap.sh"
. "${BASH_SOURCE[0]%/*}/cow.sh"

cow_seed 29

load_test_modules
check make_ramdisks 3 32 || bail "ramdisks"
cow_load_dmsnap

# The origin and the slow COW are loop devices over tmpfs files: discards
# reach a snapshot-merge device only when all its devices take them.  The
# other COWs are ramdisks.
truncate -s 16M /tmp/mg-origin.img
truncate -s 32M /tmp/mg-cow.img
lo0=$(losetup --show -f /tmp/mg-origin.img) || bail "losetup"
lo1=$(losetup --show -f /tmp/mg-cow.img) || bail "losetup"

osize=$((16 * MiB)) size=$((16 * 2048))
check dmsetup create mg-real --table "0 $size linear $lo0 0" || bail "real"
real=/dev/mapper/mg-real origin=/dev/mapper/mg-origin snap=/dev/mapper/mg-snap
real_t=$(devt $real)
check cowpy fill $real /tmp/origin.model

# zero_cow DEV: a new COW (LVM zeroes the first 4 KiB).
zero_cow() {
	dd if=/dev/zero of="$1" bs=4k count=1 oflag=direct status=none
}

# snap_first NAME COW STORE CHUNK: a snapshot of the real device created
# before its origin (then origin_create), so the origin's first resume sees
# its chunk size without a suspend.
snap_first() {
	dmsetup create "$1" --table "0 $size snapshot $real $2 $3 $4"
}

# merge_create NAME COW CHUNK [FEATURE ARGS...]: snapshot-merge of COW into
# the real device, constructed directly (it reads the COW itself).
merge_create() {
	local name=$1 cow=$2 chunk=$3
	shift 3
	dmsetup create "$name" --table "0 $size snapshot-merge $real $cow P $chunk${*:+ $*}"
}

# merge_handover ORIGIN SNAP COW CHUNK: what lvconvert --merge does with the
# origin and snapshot active: preload ORIGIN with snapshot-merge on the
# snapshot's COW (the handover destination) and SNAP with error, suspend
# both, resume the origin (it takes the snapshot's exceptions over and
# starts merging; the snapshot must be suspended then), then the snapshot.
# Resuming SNAP first would destroy the handover source and cancel it.
merge_handover() {
	dmsetup load "$1" --table "0 $size snapshot-merge $real $3 P $4" || return
	dmsetup load "$2" --table "0 $size error" || return
	dmsetup suspend "$2" || return
	dmsetup suspend "$1" || return
	dmsetup resume "$1" || return
	dmsetup resume "$2"
}

# merge_wait NAME TOTAL TIMEOUT: poll the status of snapshot-merge NAME until
# allocated == metadata (returns 0), a status other than "A/T M" (1) or
# TIMEOUT seconds (2).  Sets MW_STATUS (the last status), MW_FIRST (the
# first), MW_POLLS, MW_UP (allocated growing from one poll to the next) and
# MW_BAD (statuses whose total is not TOTAL, the COW's size).
merge_wait() {
	local name=$1 total=$2 end=$((SECONDS + $3)) s a prev=''
	MW_FIRST='' MW_POLLS=0 MW_UP='' MW_BAD=''
	while :; do
		s=$(snap_status "$name") || s="(no status)"
		MW_STATUS=$s
		[[ -n $MW_FIRST ]] || MW_FIRST=$s
		MW_POLLS=$((MW_POLLS + 1))
		[[ $s =~ ^([0-9]+)/([0-9]+)\ ([0-9]+)$ ]] || return 1
		a=${BASH_REMATCH[1]}
		[[ ${BASH_REMATCH[2]} == "$total" ]] || MW_BAD+=" '$s'"
		[[ -z $prev ]] || ((a <= prev)) || MW_UP+=" $prev->$a"
		prev=$a
		((a == BASH_REMATCH[3])) && return 0
		((SECONDS < end)) || return 2
		sleep 0.2
	done
}

# merge_done NAME CHUNK TOTAL DESC: wait for the merge to finish; every
# status seen must have been "A/T M" with T the COW's size TOTAL and A never
# growing, the last one the empty store's: header and one metadata area.
merge_done() {
	local rc=0 want
	want=$(expected_usage P "$2" 0 "$3")
	merge_wait "$1" "$3" 90 || rc=$?
	if ((rc == 0)) && [[ $MW_STATUS == "$want" && -z $MW_BAD$MW_UP ]]; then
		pass "$4: merge finished: '$MW_STATUS' (first status '$MW_FIRST', $MW_POLLS polls)"
		return 0
	fi
	fail "$4: merge finished with allocated == metadata"
	case $rc in
	1) diag "the merge stopped with status '$MW_STATUS'" ;;
	2) diag "not finished in time, status '$MW_STATUS'" ;;
	*) diag "final status '$MW_STATUS', expected '$want'" ;;
	esac
	[[ -z $MW_BAD ]] || diag "statuses with a wrong total:$MW_BAD"
	[[ -z $MW_UP ]] || diag "allocated grew:$MW_UP"
	return 1
}

# wait_alloc NAME LIMIT TIMEOUT: poll until NAME's allocated sectors are at
# most LIMIT while the merge is still running (0); the merge finished or
# failed first (1); timeout (2).  MW_STATUS is the last status.
wait_alloc() {
	local end=$((SECONDS + $3)) s
	while :; do
		s=$(snap_status "$1") || s="(no status)"
		MW_STATUS=$s
		[[ $s =~ ^([0-9]+)/[0-9]+\ ([0-9]+)$ ]] || return 1
		((BASH_REMATCH[1] > BASH_REMATCH[2])) || return 1
		((BASH_REMATCH[1] <= $2)) && return 0
		((SECONDS < end)) || return 2
		sleep 0.2
	done
}

# merging STATUS: STATUS is "A/T M" with A > M: chunks left to merge.
merging() {
	[[ $1 =~ ^([0-9]+)/[0-9]+\ ([0-9]+)$ ]] && ((BASH_REMATCH[1] > BASH_REMATCH[2]))
}

# expect_merging STATUS DESC: check that STATUS says the merge is running.
expect_merging() {
	if merging "$1"; then
		pass "$2 (status '$1')"
	else
		fail "$2 (status '$1')"
	fi
}

# alloc STATUS: the allocated sectors of an "A/T M" status.
alloc() {
	echo "${1%%/*}"
}

# ==== 1. direct merge, 8-sector chunks =======================================
cow=/dev/ram0 cow_t=$(devt /dev/ram0)
cow_sectors=$(blockdev --getsz $cow)
zero_cow $cow
cp /tmp/origin.model /tmp/snap.model
check snap_first mg-snap $cow P 8 || bail "snapshot"
check origin_create mg-origin $real || bail "origin"
# A 2 MiB run gives over 500 consecutive exceptions (merged in a few large
# copies), the random writes scattered ones.
check_as "1: origin writes" mw $origin /tmp/origin.model $((MiB + 512)):$((2 * MiB)) \
	$(random_ranges $osize 24 $((64 * 1024)))
# Snapshot writes of whole and partial chunks, on chunks the origin writes
# copied and on others.
check_as "1: snapshot writes" mw $snap /tmp/snap.model \
	$((6 * MiB)):$((256 * 1024)) $((MiB)):8192 $((9 * MiB + 4096)):4096 \
	1000:5000 $((MiB + 4096 + 512)):1024 $((12 * MiB + 100)):50 $(random_ranges $osize 8 3000)
expect_content $snap /tmp/snap.model "1: snapshot content before the merge" \
	$origin /tmp/origin.model "1: origin content before the merge"
check dmsetup remove mg-origin
check dmsetup remove mg-snap
check merge_create mg-origin $cow 8 || bail "snapshot-merge"
expect_eq "$(dmsetup table mg-origin)" "0 $size snapshot-merge $real_t $cow_t P 8" \
	"1: table line: snapshot-merge <origin> <cow> P 8"
merge_done mg-origin 8 "$cow_sectors" "1: direct merge"
expect_content $origin /tmp/snap.model "1: the merge device reads the snapshot's data" \
	$real /tmp/snap.model "1: the origin device holds the snapshot's data"
check_as "1: writes to the merge device after the merge" mw $origin /tmp/snap.model \
	$(random_ranges $osize 6 $((32 * 1024)))
# A merged COW has nothing left.
check dmsetup remove mg-origin
check merge_create mg-origin $cow 8
expect_eq "$(snap_status mg-origin)" "$(expected_usage P 8 0 "$cow_sectors")" \
	"1: snapshot-merge constructed again on the merged COW: allocated == metadata"
expect_content $origin /tmp/snap.model "1: it reads the origin, with the writes after the merge" \
	$real /tmp/snap.model "1: the writes after the merge went to the origin device"
check dmsetup remove mg-origin
cp /tmp/snap.model /tmp/origin.model

# ==== 2. online merge with handover, 64-sector chunks ========================
zero_cow $cow
cp /tmp/origin.model /tmp/snap.model
check snap_first mg-snap $cow P 64 || bail "snapshot"
check origin_create mg-origin $real || bail "origin"
check_as "2: origin writes" mw $origin /tmp/origin.model $((4 * MiB)):$((1536 * 1024)) \
	$(random_ranges $osize 16 $((96 * 1024)))
check_as "2: snapshot writes" mw $snap /tmp/snap.model $((8 * MiB)):$((128 * 1024)) \
	$((4 * MiB + 32768)):32768 777:3000 $((4 * MiB + 70000)):9000 $(random_ranges $osize 8 20000)
check merge_handover mg-origin mg-snap $cow 64 || bail "handover"
expect_content $origin /tmp/snap.model "2: the merge device reads the snapshot's data from the start"
expect_eq "$(dmsetup table mg-origin)" "0 $size snapshot-merge $real_t $cow_t P 64" \
	"2: table line of the merge device"
check read_fails $snap
merge_done mg-origin 64 "$cow_sectors" "2: online merge"
expect_content $origin /tmp/snap.model "2: the merge device reads the snapshot's data" \
	$real /tmp/snap.model "2: the origin device holds the snapshot's data"
check dmsetup remove mg-snap
check dmsetup remove mg-origin
cp /tmp/snap.model /tmp/origin.model

# ==== 3. I/O while merging; 4. an interrupted merge resumes =================
# This module merges up to 64 runs per metadata write
# (snapshot_merge_batch); one run per write, as in-tree, keeps this merge
# slow enough to be seen running and caught half-way.
merge_batch=/sys/module/dm_snapshot/parameters/snapshot_merge_batch
[[ ! -w $merge_batch ]] || echo 1 >$merge_batch
# The COW goes through dm-delay: reads take 100 ms, which slows the merge
# (each step reads its chunks from the COW) but not the snapshot's writes;
# no delay at all to let the merge finish.
dcow=/dev/mapper/mg-dcow dcow_len=$(blockdev --getsz "$lo1")
check dmsetup create mg-dcow --table "0 $dcow_len delay $lo1 0 100 $lo1 0 0" || bail "delay"
set_delay() {
	dmsetup reload mg-dcow --table "0 $dcow_len delay $lo1 0 $1 $lo1 0 0" &&
		dmsetup suspend mg-dcow && dmsetup resume mg-dcow
}
cp /tmp/origin.model /tmp/snap.model
check snap_first mg-snap $dcow P 8 || bail "snapshot"
check origin_create mg-origin $real || bail "origin"
track_reset 8
# Every other chunk of the first 2.5 MiB: 320 exceptions that are not
# consecutive, 320 merge steps (about 9 a second), in 2 metadata areas.
ranges=()
for ((i = 0; i < 320; i++)); do ranges+=("$((i * 8192)):4096"); done
check_as "3: origin writes to 320 chunks" mw $origin /tmp/origin.model "${ranges[@]}"
check_as "3: snapshot writes" mw $snap /tmp/snap.model $((10 * MiB)):20000 \
	$((2 * 8192 + 1000)):200 $(random_ranges $osize 8 12000)
start=$(snap_status mg-snap)
expect_eq "$start" "$(expected_usage P 8 ${#TRACK[@]} "$dcow_len")" \
	"3: snapshot status: ${#TRACK[@]} exceptions"
check dmsetup remove mg-origin
check dmsetup remove mg-snap
check merge_create mg-origin $dcow 8 1 discard_zeroes_cow || bail "snapshot-merge"
expect_eq "$(dmsetup table mg-origin)" \
	"0 $size snapshot-merge $real_t $(devt $dcow) P 8 1 discard_zeroes_cow" \
	"3: table line with discard_zeroes_cow"
# Wait for 24 chunks to be merged.
wait_alloc mg-origin $(($(alloc "$start") - 24 * 8)) 60
expect_eq $? 0 "3: the merge makes progress (status '$MW_STATUS')"
# The in-tree module merges from the last exception back: by now the
# snapshot writes and the highest origin-written chunks are merged, the low
# ones not.  A discard of the whole device (ignored while merging); writes
# to both kinds of chunks, to chunks without exceptions, partial ones; a
# flush.
check blkdiscard $origin
check_as "3: writes to the merge device while it merges" mw $origin /tmp/snap.model \
	0:4096 $((2 * 8192 + 512)):1024 $((318 * 8192)):4096 $((316 * 8192 + 100)):300 \
	$((3 * 4096)):4096 $((10 * MiB)):8192 $(random_ranges $osize 12 20000)
check sync $origin
expect_content $origin /tmp/snap.model "3: the merge device reads the writes back, the discard changed nothing"
expect_merging "$(snap_status mg-origin)" "3: the merge was still running"

# 4: suspend it half-way; it stops and stays stopped.
check dmsetup suspend mg-origin
mid=$(snap_status mg-origin)
if merging "$mid" && (($(alloc "$mid") < $(alloc "$start"))); then
	pass "4: suspended half-way: $mid (started at $start)"
else
	fail "4: suspended half-way: $mid (started at $start)"
fi
sleep 0.5
expect_eq "$(snap_status mg-origin)" "$mid" "4: no merging while suspended"
check dmsetup remove mg-origin
# The half-merged COW as a plain snapshot: same numbers, same data.
check snap_first mg-snap $dcow P 8
expect_eq "$(snap_status mg-snap)" "$mid" "4: a snapshot on the half-merged COW has the same status"
expect_content $snap /tmp/snap.model "4: and reads the merge device's data"
check dmsetup remove mg-snap
check merge_create mg-origin $dcow 8 1 discard_zeroes_cow || bail "snapshot-merge again"
s=$(snap_status mg-origin)
if merging "$s" && (($(alloc "$s") <= $(alloc "$mid"))); then
	pass "4: constructed again, it goes on where it stopped: $s"
else
	fail "4: constructed again, it goes on where it stopped: $s (stopped at $mid)"
fi
wait_alloc mg-origin $(($(alloc "$mid") - 8)) 60
expect_eq $? 0 "4: and makes progress (status '$MW_STATUS')"
check set_delay 0
merge_done mg-origin 8 "$dcow_len" "4: resumed merge"
check blkdiscard -o $((MiB)) -l $((2 * MiB)) $origin
check sync $origin
expect_content $origin /tmp/snap.model "4: the merge device reads the snapshot's data and the writes" \
	$real /tmp/snap.model "4: the origin device holds them"
check dmsetup remove mg-origin
cp /tmp/snap.model /tmp/origin.model

[[ ! -w $merge_batch ]] || echo 64 >$merge_batch

# ==== 5. other snapshots of the origin survive the merge =====================
# snap1 (16-sector chunks) merges; snap2 (64) and snap3 (8) stay active and
# must keep their data: merging a chunk overwrites the origin, which must
# first be copied to their COWs, in their own chunk sizes.
for c in /dev/ram0 /dev/ram1 /dev/ram2; do zero_cow $c; done
cp /tmp/origin.model /tmp/snap1.model
check snap_first mg-snap1 /dev/ram0 P 16 || bail "snap1"
check origin_create mg-origin $real || bail "origin"
check_as "5: origin writes A" mw $origin /tmp/origin.model $((2 * MiB)):$((MiB)) \
	$(random_ranges $osize 16 $((64 * 1024)))
cp /tmp/origin.model /tmp/snap2.model
check snap_create mg-snap2 mg-origin $real /dev/ram1 P 64 || bail "snap2"
check_as "5: origin writes B" mw $origin /tmp/origin.model $((2 * MiB + 40000)):70000 \
	$(random_ranges $osize 12 $((64 * 1024)))
cp /tmp/origin.model /tmp/snap3.model
check snap_create mg-snap3 mg-origin $real /dev/ram2 P 8 || bail "snap3"
check_as "5: origin writes C" mw $origin /tmp/origin.model $(random_ranges $osize 12 $((64 * 1024)))
check_as "5: snap1 writes" mw /dev/mapper/mg-snap1 /tmp/snap1.model $((12 * MiB)):$((MiB)) \
	$((2 * MiB + 8192)):16384 4000:3000 $(random_ranges $osize 8 20000)
check merge_handover mg-origin mg-snap1 /dev/ram0 16 || bail "handover"
expect_table_error "snapshot-merge $real /dev/ram1 P 64" "A snapshot is already merging."
check_as "5: writes to the merge device" mw $origin /tmp/snap1.model \
	$(random_ranges $osize 8 $((64 * 1024)))
merge_done mg-origin 16 "$cow_sectors" "5: merge of snap1"
expect_content $origin /tmp/snap1.model "5: the merge device reads snap1's data" \
	$real /tmp/snap1.model "5: the origin device holds snap1's data" \
	/dev/mapper/mg-snap2 /tmp/snap2.model "5: snap2 keeps its data" \
	/dev/mapper/mg-snap3 /tmp/snap3.model "5: snap3 keeps its data"
for d in mg-origin mg-snap1 mg-snap2 mg-snap3; do check dmsetup remove $d; done
cp /tmp/snap1.model /tmp/origin.model

# ==== 6. errors ==============================================================
expect_table_error "snapshot-merge $real /dev/ram0 N 8" \
	"Snapshot exception store does not support snapshot-merge."
# A transient snapshot cannot hand over to snapshot-merge either.
zero_cow /dev/ram0
check snap_first mg-snap /dev/ram0 N 8
expect_table_error "snapshot-merge $real /dev/ram0 P 8" \
	"Snapshot exception store does not support snapshot-merge."
check dmsetup remove mg-snap

# An I/O error ends the merge: the origin's first MiB becomes an error
# segment before the merge starts.  Exceptions there and elsewhere.
zero_cow $dcow
cp /tmp/origin.model /tmp/snap.model
check snap_first mg-snap $dcow P 8 || bail "snapshot"
check origin_create mg-origin $real || bail "origin"
check_as "6: origin writes" mw $origin /tmp/origin.model $(random_ranges $MiB 6 20000) \
	$((8 * MiB)):$((MiB)) $(random_ranges $osize 8 20000)
check_as "6: snapshot writes" mw $snap /tmp/snap.model $((MiB / 2)):5000 $((9 * MiB + 512)):512
check dmsetup remove mg-origin
check dmsetup remove mg-snap
check_as "6: error segment over the origin's first MiB" dmsetup reload mg-real --table "0 2048 error
2048 $((size - 2048)) linear $lo0 2048"
check dmsetup suspend mg-real
check dmsetup resume mg-real
dmesg -C
check merge_create mg-origin $dcow 8 || bail "snapshot-merge"
merge_wait mg-origin "$dcow_len" 60
expect_eq "$MW_STATUS" "Merge failed" "6: an origin write error fails the merge"
expect_kmsg "shutting down merge" "6: the kernel log says why"
check dmsetup reload mg-real --table "0 $size linear $lo0 0"
check dmsetup suspend mg-real
check dmsetup resume mg-real
check_as "6: writes to the failed merge device" mw $origin /tmp/snap.model \
	$(random_ranges $osize 8 20000)
expect_content $origin /tmp/snap.model "6: the failed merge device reads the snapshot's data and the writes"
expect_eq "$(snap_status mg-origin)" "Merge failed" "6: the status stays 'Merge failed'"
check dmsetup remove mg-origin
check merge_create mg-origin $dcow 8
merge_done mg-origin 8 "$dcow_len" "6: the merge constructed again after the failure"
expect_content $origin /tmp/snap.model "6: the merge device reads the snapshot's data" \
	$real /tmp/snap.model "6: the origin device holds it"

for d in mg-origin mg-dcow mg-real; do check dmsetup remove $d; done
losetup -d "$lo0" "$lo1"
finish
