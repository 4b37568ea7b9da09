#!/usr/bin/env bash
# snapshot-merge at the dmsetup level, checked by content (whole devices read
# with O_DIRECT against models):
#  1. direct merge (LVM's deferred merge): snapshot-merge created on a COW
#     with origin and snapshot writes; it finishes with allocated ==
#     metadata and the origin holds exactly the snapshot's data; a finished
#     COW re-created as snapshot-merge or snapshot is empty;
#  2. online merge with handover (lvconvert --merge on an active origin):
#     snapshot-merge preloaded on the origin, error on the snapshot;
#  3. I/O while merging, on a COW slowed down by dm-delay: writes to merged
#     and unmerged chunks and reads during the merge;
#  4. an interrupted merge (suspended and removed half-way) resumes where it
#     stopped; the half-merged COW reads right as a plain snapshot;
#  5. other snapshots of the origin keep their data through the merge (the
#     merge copies origin chunks to their COWs first); only one merge;
#  6. errors: N stores cannot merge; an I/O error ends the merge with
#     "Merge failed", the device stays usable and a new table finishes it;
#  7. discards to the merge device (with discard_zeroes_cow, on loop
#     devices) complete and change nothing; flushes work.
# shellcheck disable=SC2046 # random_ranges lists are split on purpose
set -u -o pipefail
. "${BASH_SOURCE[0]%/*}/lib.sh"
. "${BASH_SOURCE[0]%/*}/dmsnap.sh"
. "${BASH_SOURCE[0]%/*}/cow.sh"

cow_seed 29
_T0=$(date +%s.%N); pass() { _tap_n=$((_tap_n + 1)); echo "ok $_tap_n - $* [$(echo "$(date +%s.%N) - $_T0" | bc)]"; }

load_test_modules
check make_ramdisks 5 32 || bail "ramdisks"
cow_load_dmsnap

osize=$((16 * MiB)) size=$((16 * 2048))
check dmsetup create mg-real --table "0 $size linear /dev/ram0 0" || bail "real"
real=/dev/mapper/mg-real origin=/dev/mapper/mg-origin snap=/dev/mapper/mg-snap
real_t=$(devt $real)
check cowpy fill $real /tmp/origin.model

# zero_cow DEV: a new COW (LVM zeroes the first 4 KiB).
zero_cow() {
	dd if=/dev/zero of="$1" bs=4k count=1 oflag=direct status=none
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

# cow_size NAME: the size in sectors of the COW in NAME's table.
cow_size() {
	local t
	read -r -a t <<<"$(dmsetup table "$1")"
	cat "/sys/dev/block/${t[4]}/size"
}

# merge_wait NAME TIMEOUT: poll the status of snapshot-merge NAME until
# allocated == metadata (returns 0), a status other than "A/T M" (1) or
# TIMEOUT seconds (2).  Sets MW_STATUS (the last status), MW_FIRST (the
# first), MW_POLLS, MW_UP (allocated growing from one poll to the next) and
# MW_BAD (statuses whose total is not the COW's size).
merge_wait() {
	local name=$1 end=$((SECONDS + $2)) total s a prev=
	total=$(cow_size "$name")
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

# merge_done NAME CHUNK DESC [TIMEOUT]: wait for the merge to finish; every
# status seen must have been "A/T M" with T the COW's size and A never
# growing, the last one the empty store's: header and one metadata area.
merge_done() {
	local name=$1 chunk=$2 desc=$3 rc=0
	merge_wait "$name" "${4:-90}" || rc=$?
	case $rc in
	0) pass "$desc: merge finished (first status '$MW_FIRST', $MW_POLLS polls)" ;;
	1) fail "$desc: merge stopped with status '$MW_STATUS'" ;;
	*) fail "$desc: merge not finished in time, status '$MW_STATUS'" ;;
	esac
	expect_eq "$MW_STATUS" "$(expected_usage P "$chunk" 0 "$(cow_size "$name")")" \
		"$desc: final status: allocated == metadata"
	expect_eq "$MW_BAD$MW_UP" "" "$desc: statuses had the COW size as total, allocated never grew"
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
cow=/dev/ram1 cow_t=$(devt /dev/ram1)
cow_sectors=$(blockdev --getsz $cow)
zero_cow $cow
check origin_create mg-origin $real || bail "origin"
cp /tmp/origin.model /tmp/snap.model
check snap_create mg-snap mg-origin $real $cow P 8 || bail "snapshot"
track_reset 8
# A 2 MiB run gives 512 consecutive exceptions (merged in few large
# copies), the random writes scattered ones.
check_as "1: origin writes" mw $origin /tmp/origin.model $((MiB + 512)):$((2 * MiB)) \
	$(random_ranges $osize 24 $((64 * 1024)))
# Snapshot writes, on chunks the origin writes copied and on others.
check_as "1: snapshot writes of whole chunks" mw $snap /tmp/snap.model \
	$((6 * MiB)):$((256 * 1024)) $((MiB)):8192 $((9 * MiB + 4096)):4096
check_as "1: snapshot writes of partial chunks" mw $snap /tmp/snap.model \
	1000:5000 $((MiB + 4096 + 512)):1024 $((12 * MiB + 100)):50 $(random_ranges $osize 8 3000)
expect_content $snap /tmp/snap.model "1: snapshot content before the merge" \
	$origin /tmp/origin.model "1: origin content before the merge"
expect_eq "$(snap_status mg-snap)" "$(expected_usage P 8 ${#TRACK[@]} "$cow_sectors")" \
	"1: snapshot status: ${#TRACK[@]} exceptions"
check snap_remove mg-snap mg-origin
check dmsetup remove mg-origin
check merge_create mg-origin $cow 8 || bail "snapshot-merge"
expect_eq "$(dmsetup table mg-origin)" "0 $size snapshot-merge $real_t $cow_t P 8" \
	"1: table line: snapshot-merge <origin> <cow> P 8"
merge_done mg-origin 8 "1: direct merge"
expect_content $origin /tmp/snap.model "1: the merge device reads the snapshot's data" \
	$real /tmp/snap.model "1: the origin device holds the snapshot's data"
check_as "1: writes to the merge device after the merge" mw $origin /tmp/snap.model \
	$(random_ranges $osize 6 $((32 * 1024)))
expect_content $real /tmp/snap.model "1: they go to the origin device"
expect_eq "$(snap_status mg-origin)" "$(expected_usage P 8 0 "$cow_sectors")" \
	"1: status unchanged by them"

# A finished COW has nothing left: as snapshot-merge again, and as snapshot.
check dmsetup remove mg-origin
check merge_create mg-origin $cow 8
expect_eq "$(snap_status mg-origin)" "$(expected_usage P 8 0 "$cow_sectors")" \
	"1: snapshot-merge re-created on the merged COW: allocated == metadata"
expect_content $origin /tmp/snap.model "1: and reads the origin"
check dmsetup remove mg-origin
check origin_create mg-origin $real
check snap_create mg-snap mg-origin $real $cow P 8
expect_eq "$(snap_status mg-snap)" "$(expected_usage P 8 0 "$cow_sectors")" \
	"1: snapshot on the merged COW: allocated == metadata"
expect_content $snap /tmp/snap.model "1: and reads the origin"
cp /tmp/snap.model /tmp/origin.model
check snap_remove mg-snap mg-origin

# ==== 2. online merge with handover, 64-sector chunks ========================
zero_cow $cow
cp /tmp/origin.model /tmp/snap.model
check snap_create mg-snap mg-origin $real $cow P 64 || bail "snapshot"
check_as "2: origin writes" mw $origin /tmp/origin.model $((4 * MiB)):$((1536 * 1024)) \
	$(random_ranges $osize 16 $((96 * 1024)))
check_as "2: snapshot writes" mw $snap /tmp/snap.model $((8 * MiB)):$((128 * 1024)) \
	$((4 * MiB + 32768)):32768 777:3000 $((4 * MiB + 70000)):9000 $(random_ranges $osize 8 20000)
expect_content $snap /tmp/snap.model "2: snapshot content before the merge" \
	$origin /tmp/origin.model "2: origin content before the merge"
check merge_handover mg-origin mg-snap $cow 64 || bail "handover"
expect_content $origin /tmp/snap.model "2: the merge device reads the snapshot's data from the start"
diag "2: status after that read: $(snap_status mg-origin)"
expect_eq "$(dmsetup table mg-origin)" "0 $size snapshot-merge $real_t $cow_t P 64" \
	"2: table line of the merge device"
check read_fails $snap
merge_done mg-origin 64 "2: online merge"
expect_content $origin /tmp/snap.model "2: the merge device reads the snapshot's data" \
	$real /tmp/snap.model "2: the origin device holds the snapshot's data"
# Then LVM drops the snapshot and gives the origin its old table back.
check dmsetup remove mg-snap
check dmsetup reload mg-origin --table "0 $size snapshot-origin $real"
check dmsetup suspend mg-origin
check dmsetup resume mg-origin
expect_eq "$(dmsetup table mg-origin)" "0 $size snapshot-origin $real_t" "2: origin table restored"
expect_content $origin /tmp/snap.model "2: origin content after the merge target is gone"
cp /tmp/snap.model /tmp/origin.model

# ==== 3. I/O while merging; 4. an interrupted merge resumes =================
# The COW goes through dm-delay: no delay while the snapshot is filled,
# 20 ms per I/O while the merge is watched (a merge step costs a COW read
# and a COW commit, about 60 ms), none again to let it finish.
dcow=/dev/mapper/mg-dcow dcow_len=$(blockdev --getsz /dev/ram2)
check dmsetup create mg-dcow --table "0 $dcow_len delay /dev/ram2 0 0" || bail "delay"
set_delay() {
	dmsetup reload mg-dcow --table "0 $dcow_len delay /dev/ram2 0 $1" &&
		dmsetup suspend mg-dcow && dmsetup resume mg-dcow
}
zero_cow $dcow
cp /tmp/origin.model /tmp/snap.model
check snap_create mg-snap mg-origin $real $dcow P 8 || bail "snapshot"
track_reset 8
# Every other chunk of the first 4.7 MiB: 600 exceptions that are not
# consecutive, 600 merge steps, in 3 metadata areas.
ranges=()
for ((i = 0; i < 600; i++)); do ranges+=("$((i * 8192)):4096"); done
check_as "3: origin writes to 600 chunks" mw $origin /tmp/origin.model "${ranges[@]}"
check_as "3: snapshot writes" mw $snap /tmp/snap.model $((10 * MiB)):20000 \
	$((2 * 8192 + 1000)):200 $(random_ranges $osize 8 12000)
expect_content $snap /tmp/snap.model "3: snapshot content before the merge"
start=$(snap_status mg-snap)
expect_eq "$start" "$(expected_usage P 8 ${#TRACK[@]} "$dcow_len")" \
	"3: snapshot status: ${#TRACK[@]} exceptions"
check snap_remove mg-snap mg-origin
check dmsetup remove mg-origin
check set_delay 20
check merge_create mg-origin $dcow 8 || bail "snapshot-merge"
# Wait for 40 chunks to be merged.
wait_alloc mg-origin $(($(alloc "$start") - 40 * 8)) 60
expect_eq $? 0 "3: the merge makes progress (status '$MW_STATUS')"
# The in-tree module merges from the last exception back: by now the
# snapshot writes and the highest origin-written chunks are merged, the low
# ones not.  Writes to both, to chunks without exceptions, partial ones.
check_as "3: writes to the merge device while it merges" mw $origin /tmp/snap.model \
	0:4096 $((2 * 8192 + 512)):1024 $((598 * 8192)):4096 $((596 * 8192 + 100)):300 \
	$((3 * 4096)):4096 $((10 * MiB)):8192 $(random_ranges $osize 12 20000)
expect_content $origin /tmp/snap.model "3: the merge device reads them back while it merges"
s=$(snap_status mg-origin)
expect_merging "$s" "3: the merge was still running"

# 4: suspend it half-way; it stops and stays stopped.
check dmsetup suspend mg-origin
mid=$(snap_status mg-origin)
if merging "$mid" && (($(alloc "$mid") < $(alloc "$start"))); then
	pass "4: suspended half-way: $mid (started at $start)"
else
	fail "4: suspended half-way: $mid (started at $start)"
fi
sleep 1
expect_eq "$(snap_status mg-origin)" "$mid" "4: no merging while suspended"
check dmsetup remove mg-origin
check set_delay 0
# The half-merged COW as a plain snapshot: same numbers, same data.
check dmsetup create mg-snap --table "0 $size snapshot $real $dcow P 8"
expect_eq "$(snap_status mg-snap)" "$mid" "4: a snapshot on the half-merged COW has the same status"
expect_content $snap /tmp/snap.model "4: and reads the merge device's data"
check dmsetup remove mg-snap
check set_delay 20
check merge_create mg-origin $dcow 8 || bail "snapshot-merge again"
s=$(snap_status mg-origin)
if merging "$s" && (($(alloc "$s") <= $(alloc "$mid"))); then
	pass "4: re-created, it resumes where it stopped: $s"
else
	fail "4: re-created, it resumes where it stopped: $s (stopped at $mid)"
fi
wait_alloc mg-origin $(($(alloc "$mid") - 8)) 60
expect_eq $? 0 "4: and makes progress (status '$MW_STATUS')"
check set_delay 0
merge_done mg-origin 8 "4: resumed merge"
expect_content $origin /tmp/snap.model "4: the merge device reads the snapshot's data with the writes" \
	$real /tmp/snap.model "4: the origin device holds them"
check dmsetup remove mg-origin
cp /tmp/snap.model /tmp/origin.model

# ==== 5. other snapshots of the origin survive the merge =====================
# snap1 (16-sector chunks) merges; snap2 (64) and snap3 (8) stay active and
# must keep their data: merging a chunk overwrites the origin, which must
# first be copied to their COWs, in their own chunk sizes.
check origin_create mg-origin $real || bail "origin"
for c in /dev/ram1 /dev/ram3 /dev/ram4; do zero_cow $c; done
cp /tmp/origin.model /tmp/snap1.model
check snap_create mg-snap1 mg-origin $real /dev/ram1 P 16 || bail "snap1"
check_as "5: origin writes A" mw $origin /tmp/origin.model $((2 * MiB)):$((MiB)) \
	$(random_ranges $osize 16 $((64 * 1024)))
cp /tmp/origin.model /tmp/snap2.model
check snap_create mg-snap2 mg-origin $real /dev/ram3 P 64 || bail "snap2"
check_as "5: origin writes B" mw $origin /tmp/origin.model $((2 * MiB + 40000)):70000 \
	$(random_ranges $osize 12 $((64 * 1024)))
cp /tmp/origin.model /tmp/snap3.model
check snap_create mg-snap3 mg-origin $real /dev/ram4 P 8 || bail "snap3"
check_as "5: origin writes C" mw $origin /tmp/origin.model $(random_ranges $osize 12 $((64 * 1024)))
check_as "5: snap1 writes" mw /dev/mapper/mg-snap1 /tmp/snap1.model $((12 * MiB)):$((MiB)) \
	$((2 * MiB + 8192)):16384 4000:3000 $(random_ranges $osize 8 20000)
check_as "5: snap3 writes" mw /dev/mapper/mg-snap3 /tmp/snap3.model $(random_ranges $osize 4 20000)
expect_content /dev/mapper/mg-snap1 /tmp/snap1.model "5: snap1 content before the merge" \
	/dev/mapper/mg-snap2 /tmp/snap2.model "5: snap2 content before the merge" \
	/dev/mapper/mg-snap3 /tmp/snap3.model "5: snap3 content before the merge" \
	$origin /tmp/origin.model "5: origin content before the merge"
check merge_handover mg-origin mg-snap1 /dev/ram1 16 || bail "handover"
expect_table_error "snapshot-merge $real /dev/ram3 P 64" "A snapshot is already merging."
check_as "5: writes to the merge device" mw $origin /tmp/snap1.model \
	$(random_ranges $osize 8 $((64 * 1024)))
merge_done mg-origin 16 "5: merge of snap1"
expect_content $origin /tmp/snap1.model "5: the merge device reads snap1's data" \
	$real /tmp/snap1.model "5: the origin device holds snap1's data" \
	/dev/mapper/mg-snap2 /tmp/snap2.model "5: snap2 keeps its data" \
	/dev/mapper/mg-snap3 /tmp/snap3.model "5: snap3 keeps its data"
check_as "5: writes after the merge" mw $origin /tmp/snap1.model $((5 * MiB)):$((2 * MiB)) \
	$(random_ranges $osize 8 $((64 * 1024)))
expect_content $real /tmp/snap1.model "5: origin device after writes after the merge" \
	/dev/mapper/mg-snap2 /tmp/snap2.model "5: snap2 keeps its data after them" \
	/dev/mapper/mg-snap3 /tmp/snap3.model "5: snap3 keeps its data after them"
check dmsetup remove mg-snap1
check snap_remove mg-snap2 mg-origin
check snap_remove mg-snap3 mg-origin
check dmsetup remove mg-origin
cp /tmp/snap1.model /tmp/origin.model

# ==== 6. errors ==============================================================
expect_table_error "snapshot-merge $real /dev/ram1 N 8" \
	"Snapshot exception store does not support snapshot-merge."
# A transient snapshot cannot hand over to snapshot-merge either.
check origin_create mg-origin $real || bail "origin"
zero_cow /dev/ram1
check snap_create mg-snap mg-origin $real /dev/ram1 N 8
expect_table_error "snapshot-merge $real /dev/ram1 P 8" \
	"Snapshot exception store does not support snapshot-merge."
check snap_remove mg-snap mg-origin

# An I/O error ends the merge: the origin's first MiB becomes an error
# segment before the merge starts.  Exceptions there and elsewhere.
zero_cow $dcow
cp /tmp/origin.model /tmp/snap.model
check snap_create mg-snap mg-origin $real $dcow P 8 || bail "snapshot"
check_as "6: origin writes" mw $origin /tmp/origin.model $(random_ranges $MiB 6 20000) \
	$((8 * MiB)):$((MiB)) $(random_ranges $osize 8 20000)
check_as "6: snapshot writes" mw $snap /tmp/snap.model $((MiB / 2)):5000 $((9 * MiB + 512)):512
expect_content $snap /tmp/snap.model "6: snapshot content before the merge"
check snap_remove mg-snap mg-origin
check dmsetup remove mg-origin
check dmsetup reload mg-real --table "0 2048 error
2048 $((size - 2048)) linear /dev/ram0 2048"
check dmsetup suspend mg-real
check dmsetup resume mg-real
dmesg -C
check merge_create mg-origin $dcow 8 || bail "snapshot-merge"
merge_wait mg-origin 60
expect_eq "$MW_STATUS" "Merge failed" "6: an origin write error fails the merge"
expect_kmsg "shutting down merge" "6: the kernel log says why"
check dmsetup reload mg-real --table "0 $size linear /dev/ram0 0"
check dmsetup suspend mg-real
check dmsetup resume mg-real
expect_content $origin /tmp/snap.model "6: the failed merge device still reads the snapshot's data"
check_as "6: writes to the failed merge device" mw $origin /tmp/snap.model \
	$(random_ranges $osize 8 20000)
expect_content $origin /tmp/snap.model "6: and reads them back"
expect_eq "$(snap_status mg-origin)" "Merge failed" "6: status stays 'Merge failed'"
check dmsetup remove mg-origin
check merge_create mg-origin $dcow 8
merge_done mg-origin 8 "6: the merge re-created after the failure"
expect_content $origin /tmp/snap.model "6: the merge device reads the snapshot's data" \
	$real /tmp/snap.model "6: the origin device holds it"
check dmsetup remove mg-origin

# ==== 7. discards and flushes ================================================
# Discards reach a snapshot-merge device only with discard_zeroes_cow and
# devices that take discards: loop devices over tmpfs files.  Once merging,
# the in-tree target completes discards without doing anything.  The COW
# goes through dm-delay, to discard and flush during the merge.
for i in 0 1; do
	truncate -s 8M /tmp/mg-l$i.img
	loopdev[i]=$(losetup --show -f /tmp/mg-l$i.img) || bail "losetup"
done
lo=${loopdev[0]} lsize=$(blockdev --getsz ${loopdev[0]})
check dmsetup create mg-ldel --table "0 $lsize delay ${loopdev[1]} 0 0" || bail "delay"
lcow=/dev/mapper/mg-ldel
check cowpy fill $lo /tmp/lorigin.model
check dmsetup create mg-lorigin --table "0 $lsize snapshot-origin $lo" || bail "origin"
cp /tmp/lorigin.model /tmp/lsnap.model
check snap_create mg-lsnap mg-lorigin $lo $lcow P 8 || bail "snapshot"
ranges=()
for ((i = 0; i < 120; i++)); do ranges+=("$((i * 16384)):4096"); done
check_as "7: origin writes to 120 chunks" mw /dev/mapper/mg-lorigin /tmp/lorigin.model "${ranges[@]}"
check_as "7: snapshot writes" mw /dev/mapper/mg-lsnap /tmp/lsnap.model 0:2048 \
	$((4 * MiB)):$((64 * 1024)) $((6 * MiB + 512)):2000
check snap_remove mg-lsnap mg-lorigin
check dmsetup remove mg-lorigin
check dmsetup reload mg-ldel --table "0 $lsize delay ${loopdev[1]} 0 20"
check dmsetup suspend mg-ldel
check dmsetup resume mg-ldel
check dmsetup create mg-lmerge --table "0 $lsize snapshot-merge $lo $lcow P 8 1 discard_zeroes_cow" ||
	bail "snapshot-merge"
lmerge=/dev/mapper/mg-lmerge
expect_eq "$(dmsetup table mg-lmerge)" \
	"0 $lsize snapshot-merge $(devt $lo) $(devt $lcow) P 8 1 discard_zeroes_cow" \
	"7: table line lists the feature"
check blkdiscard $lmerge
check sync $lmerge
s=$(snap_status mg-lmerge)
expect_merging "$s" "7: discard and flush while merging"
expect_content $lmerge /tmp/lsnap.model "7: the discard changed nothing"
check dmsetup reload mg-ldel --table "0 $lsize delay ${loopdev[1]} 0 0"
check dmsetup suspend mg-ldel
check dmsetup resume mg-ldel
merge_done mg-lmerge 8 "7: merge"
check blkdiscard -o $MiB -l $((2 * MiB)) $lmerge
check_as "7: writes after the merge" mw $lmerge /tmp/lsnap.model $(random_ranges $((8 * MiB)) 4 20000)
check sync $lmerge
expect_content $lmerge /tmp/lsnap.model "7: the merge device after discards and flushes" \
	$lo /tmp/lsnap.model "7: the origin device holds the snapshot's data"
check dmsetup remove mg-lmerge
check dmsetup remove mg-ldel
for i in 0 1; do losetup -d "${loopdev[i]}"; done
check dmsetup remove mg-dcow
check dmsetup remove mg-real
finish
