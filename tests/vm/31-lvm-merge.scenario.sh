#!/usr/bin/env bash
# LVM2 snapshot merges and the rest of LVM's snapshot life cycle, with
# Debian's lvm2 on a brd PV, data checked by content:
#  - lvconvert --merge of an unopened snapshot while its origin is active
#    (started online: snapshot-merge handed over from the live snapshot),
#    alone and with a second snapshot that keeps its own data;
#  - lvconvert --merge deferred because the origin (mounted ext4, or held
#    open) or the snapshot (held open) is in use, then started by
#    activation (vgchange -ay; lvchange -ay --poll n, which loads
#    snapshot-merge directly from the COW but leaves LVM's part of the merge
#    to a later lvchange --poll y) or by lvchange --refresh (snapshot-merge
#    loaded in place, as lvconvert does online);
#  - ext4 on the origin with the snapshot mounted read-only (noload) while
#    the origin's files change;
#  - a snapshot that overflows: lvs and dmsetup report it invalid, the
#    origin works on, lvremove cleans up;
#  - dmeventd extending a snapshot that crosses
#    activation/snapshot_autoextend_threshold.
#
# How LVM behaves in this guest (lvm2 2.03.16): lvmpolld is not running, so
# every command that polls warns "Failed to connect to lvmpolld. Proceeding
# with polling without using lvmpolld." and polls itself, in a forked
# background process for --background, activation and --refresh (only
# the kernel merges until a poller sees the merge done and then removes the
# snapshot LV and reloads the origin).  "lvconvert --startpoll vg/lv" is
# refused for a merging snapshot origin ("Command on LV vg/lv does not
# accept LV type linear."); lvchange --poll y does the job.  dmeventd is not
# started by hand: with activation/monitoring=1 the first lvcreate -s starts
# /sbin/dmeventd (it lives in the writable /run: dmeventd.pid,
# dmeventd-client, dmeventd-server) and registers every snapshot with it.
. "${BASH_SOURCE[0]%/*}/lib.sh"
. "${BASH_SOURCE[0]%/*}/dmsnap.sh"
. "${BASH_SOURCE[0]%/*}/cow.sh"

load_test_modules
modprobe ext4 || bail "modprobe ext4"
make_ramdisks 1 192
cow_load_dmsnap
cow_seed 31
export LVM_SUPPRESS_FD_WARNINGS=1

# lvfield LV FIELDS: lvs fields of vg/LV, "|" between them, no padding.
lvfield() {
	lvs --noheadings --separator '|' -o "$2" "vg/$1" 2>/dev/null | sed 's/^ *//'
}
# lv_gone LV: vg/LV (hidden or not) no longer exists.
lv_gone() { ! lvs "vg/$1" >/dev/null 2>&1; }
# vg_lvs: "name attr" of every LV of vg, hidden ones included, in one
# line, sorted by name ("[hidden]" ones first).
vg_lvs() { lvs -a --noheadings -o lv_name,lv_attr vg | LC_ALL=C sort | xargs; }
# dm_target NAME: the target type of the first table line of a dm device.
dm_target() { dmsetup table "$1" 2>/dev/null | awk 'NR == 1 { print $3 }'; }
# merge_finished NAME: the snapshot-merge device NAME has no chunks left to
# merge (status "<allocated>/<total> <metadata>" with allocated == metadata).
merge_finished() {
	local s
	s=$(snap_status "$1") || return
	[[ $s =~ ^([0-9]+)/[0-9]+\ ([0-9]+)$ ]] && ((BASH_REMATCH[1] == BASH_REMATCH[2]))
}
# wait_for SECONDS CMD...: run CMD every half second until it succeeds;
# fails when SECONDS pass first.
wait_for() {
	local end=$((SECONDS + $1))
	shift
	until "$@"; do
		((SECONDS < end)) || return 1
		sleep 0.5
	done
}
# expect_wait SECONDS DESC CMD...: a check that CMD comes true in time.
expect_wait() {
	local secs=$1 desc=$2 t0=$SECONDS
	shift 2
	if wait_for "$secs" "$@"; then
		pass "$desc (after ~$((SECONDS - t0)) s)"
	else
		fail "$desc (not within $secs s)"
		diag "$(lvs -a vg 2>&1)" "$(dmsetup table 2>&1)" "$(dmsetup status 2>&1)"
		return 1
	fi
}
# expect_grep TEXT OUTPUT DESC: OUTPUT contains the fixed string TEXT.
expect_grep() {
	if grep -qF -- "$1" <<<"$2"; then
		pass "$3"
	else
		fail "$3"
		diag "missing: $1" "output:" "$2"
		return 1
	fi
}

check pvcreate -q /dev/ram0 || bail "pvcreate"
check vgcreate -q vg /dev/ram0 || bail "vgcreate"
LV_BYTES=$((32 * MiB))

# --- 1. online merge ----------------------------------------------------------
check lvcreate -q -y -Zn -L 32M -n lv vg || bail "lvcreate"
cowpy fill /dev/vg/lv /tmp/lv.model
check lvcreate -q -y -s -L 16M -n s1 vg/lv || bail "lvcreate -s s1"
cp /tmp/lv.model /tmp/s1.model
# shellcheck disable=SC2046 # one range per word
check_as "write to the snapshot s1" mw /dev/vg/s1 /tmp/s1.model $(random_ranges $LV_BYTES 12 $((512 * 1024)))
# shellcheck disable=SC2046
check_as "write to the origin after s1" mw /dev/vg/lv /tmp/lv.model $(random_ranges $LV_BYTES 12 $((512 * 1024)))
expect_content /dev/vg/lv /tmp/lv.model "origin holds its writes" \
	/dev/vg/s1 /tmp/s1.model "s1 holds its writes over the old origin"

# -i +30: the background poller waits 30 s before its first look, which
# leaves the snapshot-merge table in place long enough to be seen (10 s
# was not enough for the debug kernel on a loaded host: lvs already showed
# the merged LV).
out=$(lvconvert --merge --background -i +30 vg/s1 2>&1)
expect_eq "$?" 0 "lvconvert --merge --background vg/s1 (origin active, not open)" || diag "$out"
expect_grep "Merging of volume vg/s1 started." "$out" "lvconvert says the merge started"
diag "lvconvert --merge --background:" "$out"
expect_eq "$(dm_target vg-lv)" "snapshot-merge" "origin's table is snapshot-merge during the merge"
expect_eq "$(vg_lvs)" "[s1] Swi-a-s--- lv Owi-a-s---" "lvs -a: merging origin (O), hidden merging snapshot (S)"
expect_content /dev/vg/lv /tmp/s1.model "origin reads the snapshot's data during the merge"
# On a slow guest (the debug kernel) the poller may have finished and
# reloaded the origin as linear before this first look.
merge_done_or_finished() { merge_finished vg-lv || [[ $(dm_target vg-lv) == linear ]]; }
expect_wait 60 "the kernel finishes the merge" merge_done_or_finished
expect_wait 60 "the background poller removes s1" lv_gone s1
expect_eq "$(dm_target vg-lv)" "linear" "origin's table is linear again"
expect_eq "$(vg_lvs)" "lv -wi-a-----" "lvs -a: only the origin is left, a plain LV again"
expect_content /dev/vg/lv /tmp/s1.model "origin holds exactly s1's data after the merge"
cp /tmp/s1.model /tmp/lv.model

# A second snapshot keeps its own data while another one merges.
check lvcreate -q -y -s -L 16M -n s2 vg/lv || bail "lvcreate -s s2"
cp /tmp/lv.model /tmp/s2.model
# shellcheck disable=SC2046
check_as "write to the origin after s2" mw /dev/vg/lv /tmp/lv.model $(random_ranges $LV_BYTES 8 $((256 * 1024)))
check lvcreate -q -y -s -L 16M -n keep vg/lv || bail "lvcreate -s keep"
cp /tmp/lv.model /tmp/keep.model
# shellcheck disable=SC2046
check_as "write to the snapshot s2" mw /dev/vg/s2 /tmp/s2.model $(random_ranges $LV_BYTES 12 $((512 * 1024)))
# shellcheck disable=SC2046
check_as "write to the origin after keep" mw /dev/vg/lv /tmp/lv.model $(random_ranges $LV_BYTES 8 $((256 * 1024)))
out=$(lvconvert --merge -i 1 vg/s2 2>&1)
expect_eq "$?" 0 "lvconvert --merge -i 1 vg/s2 (foreground, with snapshot keep present)" || diag "$out"
expect_grep "vg/lv: Merged: 100.00%" "$out" "lvconvert polled the merge to 100%"
diag "lvconvert --merge -i 1:" "$out"
expect_eq "$(vg_lvs)" "keep swi-a-s--- lv owi-a-s---" "lvs -a: s2 is gone, keep is left"
expect_eq "$(dm_target vg-lv)" "snapshot-origin" "origin's table: snapshot-origin (keep remains)"
expect_content /dev/vg/lv /tmp/s2.model "origin holds exactly s2's data after the merge" \
	/dev/vg/keep /tmp/keep.model "keep still holds its own data"
check lvremove -q -y vg/keep
expect_eq "$(dm_target vg-lv)" "linear" "origin's table linear after removing keep"
cp /tmp/s2.model /tmp/lv.model

# --- 2. merge deferred because the snapshot is open, run by vgchange -ay ------
check lvcreate -q -y -s -L 16M -n s3 vg/lv || bail "lvcreate -s s3"
cp /tmp/lv.model /tmp/s3.model
# shellcheck disable=SC2046
check_as "write to the snapshot s3" mw /dev/vg/s3 /tmp/s3.model $(random_ranges $LV_BYTES 12 $((512 * 1024)))
exec 3</dev/vg/s3
out=$(lvconvert --merge vg/s3 2>&1)
expect_eq "$?" 0 "lvconvert --merge vg/s3 with s3 held open" || diag "$out"
diag "lvconvert --merge, snapshot open:" "$out"
expect_grep "Delaying merge since snapshot is open." "$out" "lvconvert delays the merge (snapshot open)"
expect_grep "Merging of snapshot vg/s3 will occur on next activation of vg/lv." "$out" \
	"lvconvert says the merge occurs on the next activation"
exec 3<&-
expect_eq "$(dm_target vg-lv)" "snapshot-origin" "deferred: origin still snapshot-origin"
expect_eq "$(vg_lvs)" "[s3] Swi-a-s--- lv Owi-a-s---" "deferred: lvs -a shows the merge pending"
expect_eq "$(lvfield s3 lv_merging)" "merging" "deferred: lv_merging of s3"
check vgchange -q -an vg
expect_eq "$(dmsetup ls | grep -c '^vg-')" 0 "vgchange -an removed all vg devices"
out=$(vgchange -ay vg 2>&1)
expect_eq "$?" 0 "vgchange -ay vg starts the deferred merge" || diag "$out"
diag "vgchange -ay:" "$out"
expect_wait 60 "the merge completes and s3 is removed" lv_gone s3
expect_eq "$(dm_target vg-lv)" "linear" "origin's table linear after the activation merge"
expect_content /dev/vg/lv /tmp/s3.model "origin holds exactly s3's data"
cp /tmp/s3.model /tmp/lv.model

# --- 3. merge deferred because the origin is held open, run by --refresh -----
check lvcreate -q -y -s -L 16M -n s4 vg/lv || bail "lvcreate -s s4"
cp /tmp/lv.model /tmp/s4.model
# shellcheck disable=SC2046
check_as "write to the snapshot s4" mw /dev/vg/s4 /tmp/s4.model $(random_ranges $LV_BYTES 12 $((512 * 1024)))
exec 3</dev/vg/lv
out=$(lvconvert --merge vg/s4 2>&1)
expect_eq "$?" 0 "lvconvert --merge vg/s4 with the origin held open" || diag "$out"
expect_grep "Delaying merge since origin is open." "$out" "lvconvert delays the merge (origin open)"
exec 3<&-
# With the origin closed, a refresh reloads it as snapshot-merge in place
# and starts a background poller.
out=$(lvchange --refresh vg/lv 2>&1)
expect_eq "$?" 0 "lvchange --refresh vg/lv starts the deferred merge" || diag "$out"
expect_wait 60 "the merge completes and s4 is removed" lv_gone s4
expect_eq "$(dm_target vg-lv)" "linear" "origin's table linear after the refresh merge"
expect_content /dev/vg/lv /tmp/s4.model "origin holds exactly s4's data"
cp /tmp/s4.model /tmp/lv.model

# --- 4. ext4 on the origin, snapshot mounted read-only ------------------------
mkdir -p /tmp/mo /tmp/ms /tmp/files
check lvcreate -q -y -Zn -L 32M -n fs vg || bail "lvcreate fs"
check mkfs.ext4 -q -F /dev/vg/fs || bail "mkfs.ext4"
check mount /dev/vg/fs /tmp/mo || bail "mount origin"
for f in a b c; do
	rand_file "/tmp/files/$f.0" $(((RANDOM % 512 + 64) * 1024))
	cp "/tmp/files/$f.0" "/tmp/mo/$f"
done
sync
check lvcreate -q -y -s -L 16M -n fsnap vg/fs || bail "lvcreate -s fsnap (origin mounted)"
rand_file /tmp/files/a.1 $((700 * 1024))
cp /tmp/files/a.1 /tmp/mo/a
rm /tmp/mo/b
rand_file /tmp/files/d.1 $((300 * 1024))
cp /tmp/files/d.1 /tmp/mo/d
sync
check mount -o ro,noload /dev/vg/fsnap /tmp/ms || bail "mount snapshot ro,noload"
# fsfiles DIR A B C D: each of DIR's a..d matches its file, "-" for absent.
fsfiles() {
	local dir=$1 f want
	for f in a b c d; do
		want=$2
		shift
		if [[ $want == - ]]; then
			[[ ! -e $dir/$f ]] || { echo "$dir/$f exists"; return 1; }
		else
			cmp "$want" "$dir/$f" || return
		fi
	done
}
check_as "snapshot: the files of its time (a, b, c; no d)" \
	fsfiles /tmp/ms /tmp/files/a.0 /tmp/files/b.0 /tmp/files/c.0 -
check_as "origin: a rewritten, b deleted, c, d new" \
	fsfiles /tmp/mo /tmp/files/a.1 - /tmp/files/c.0 /tmp/files/d.1
# More origin writes while the snapshot is mounted; reread it from the device.
rand_file /tmp/files/c.2 $((2 * MiB))
cp /tmp/files/c.2 /tmp/mo/c
rand_file /tmp/files/e.2 $((4 * MiB))
cp /tmp/files/e.2 /tmp/mo/e
sync
echo 3 >/proc/sys/vm/drop_caches
check_as "snapshot, reread: still the files of its time, no e" \
	eval 'fsfiles /tmp/ms /tmp/files/a.0 /tmp/files/b.0 /tmp/files/c.0 - && [[ ! -e /tmp/ms/e ]]'
check_as "origin: c rewritten, e new" \
	eval 'fsfiles /tmp/mo /tmp/files/a.1 - /tmp/files/c.2 /tmp/files/d.1 && cmp /tmp/files/e.2 /tmp/mo/e'
check umount /tmp/ms
# A file written into the snapshot itself (mounted read-write).
check mount /dev/vg/fsnap /tmp/ms
rand_file /tmp/files/s.3 $((500 * 1024))
cp /tmp/files/s.3 /tmp/ms/s
check umount /tmp/ms
fsnap_md5=$(dev_md5 /dev/vg/fsnap)

# --- 5. merge deferred because the origin is mounted, run by activation ------
out=$(lvconvert --merge vg/fsnap 2>&1)
expect_eq "$?" 0 "lvconvert --merge vg/fsnap with the origin mounted" || diag "$out"
diag "lvconvert --merge, origin open:" "$out"
expect_grep "Delaying merge since origin is open." "$out" "lvconvert delays the merge (origin open)"
expect_grep "Merging of snapshot vg/fsnap will occur on next activation of vg/fs." "$out" \
	"lvconvert says the merge occurs on the next activation"
expect_eq "$(vg_lvs)" "[fsnap] Swi-a-s--- fs Owi-aos--- lv -wi-a-----" \
	"deferred: lvs -a shows the mounted origin (O) and fsnap (S) merging"
expect_eq "$(dm_target vg-fs)" "snapshot-origin" "deferred: origin still snapshot-origin"
# The origin works on meanwhile; this write is undone by the merge.
rand_file /tmp/files/f.4 $((MiB))
cp /tmp/files/f.4 /tmp/mo/f
sync
check_as "the origin takes a new file f meanwhile" cmp /tmp/files/f.4 /tmp/mo/f
check umount /tmp/mo
check lvchange -q -an vg/fs
expect_eq "$(dmsetup ls | grep -c '^vg-fs')" 0 "lvchange -an removed fs and its snapshot's devices"
# --poll n: activated with the merge running in the kernel but without LVM's
# poller, so the snapshot-merge table stays until polling is asked for.
out=$(lvchange -ay --poll n vg/fs 2>&1)
expect_eq "$?" 0 "lvchange -ay --poll n vg/fs" || diag "$out"
expect_eq "$(dm_target vg-fs)" "snapshot-merge" "activation loads snapshot-merge directly"
expect_eq "$(dev_md5 /dev/vg/fs)" "$fsnap_md5" "origin reads the snapshot's data during the merge"
expect_wait 60 "the kernel finishes the merge" merge_finished vg-fs
expect_eq "$(vg_lvs)" "[fsnap] Swi-a-s--- fs Owi-a-s--- lv -wi-a-----" \
	"without polling LVM still lists the merge"
out=$(lvchange --poll y vg/fs 2>&1)
expect_eq "$?" 0 "lvchange --poll y vg/fs" || diag "$out"
diag "lvchange --poll y:" "$out"
expect_wait 60 "the poller finishes the merge and removes fsnap" lv_gone fsnap
expect_eq "$(dm_target vg-fs)" "linear" "origin's table linear after the merge"
expect_eq "$(dev_md5 /dev/vg/fs)" "$fsnap_md5" "origin holds exactly the snapshot's data"
check e2fsck -fn /dev/vg/fs
check mount /dev/vg/fs /tmp/mo
check_as "merged origin: the snapshot's files a, b, c and s; d, e, f gone" \
	eval 'fsfiles /tmp/mo /tmp/files/a.0 /tmp/files/b.0 /tmp/files/c.0 - &&
		cmp /tmp/files/s.3 /tmp/mo/s && [[ ! -e /tmp/mo/e && ! -e /tmp/mo/f ]]'
check umount /tmp/mo
check lvremove -q -y vg/fs

# --- 6. overflow --------------------------------------------------------------
dmesg -C
check lvcreate -q -y -s -L 4M -n small vg/lv || bail "lvcreate -s small"
check_as "write 8 MiB to the origin (more than small's 4 MiB COW)" \
	mw /dev/vg/lv /tmp/lv.model "$((4 * MiB)):$((8 * MiB))"
expect_eq "$(snap_status vg-small)" "Invalid" "dmsetup status: Invalid"
expect_kmsg "Invalidating snapshot: Unable to allocate exception." "kernel log says why"
expect_eq "$(lvfield small lv_attr,lv_snapshot_invalid,snap_percent,data_percent)" \
	"swi-I-s---|snapshot invalid|100.00|100.00" "lvs: attr I, lv_snapshot_invalid, snap_percent/data_percent 100.00"
check read_fails /dev/vg/small
expect_content /dev/vg/lv /tmp/lv.model "origin holds the data written past the overflow"
check_as "the origin takes more writes" mw /dev/vg/lv /tmp/lv.model "$((20 * MiB)):$((MiB))"
check lvchange -q -an vg/lv
check lvchange -q -ay vg/lv
expect_eq "$(snap_status vg-small)" "Invalid" "still Invalid after reactivation"
expect_eq "$(lvfield small lv_attr,lv_snapshot_invalid)" "swi-I-s---|snapshot invalid" "lvs: still invalid after reactivation"
expect_content /dev/vg/lv /tmp/lv.model "origin data after reactivation"
check lvremove -q -y vg/small
expect_eq "$(dm_target vg-lv)" "linear" "origin linear after removing the invalid snapshot"
expect_content /dev/vg/lv /tmp/lv.model "origin data after lvremove"

# --- 7. dmeventd autoextend ---------------------------------------------------
check lvcreate -q -y -s -L 8M -n auto vg/lv || bail "lvcreate -s auto"
cp /tmp/lv.model /tmp/auto.model
pid=$(cat /run/dmeventd.pid 2>/dev/null)
if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then
	pass "dmeventd runs (pid $pid), started by LVM"
else
	fail "dmeventd runs (pid file: '$pid')"
fi
expect_eq "$(lvfield auto seg_monitor)" "monitored" "lvs seg_monitor: monitored"
# The guest's /etc/lvm is a tmpfs copy; dmeventd's lvm rereads lvm.conf
# when it changes.  Debian's lvm.conf has an empty activation section.
sed -i '/^activation {/a\
	snapshot_autoextend_threshold = 70\
	snapshot_autoextend_percent = 50' /etc/lvm/lvm.conf
expect_eq "$(lvmconfig activation/snapshot_autoextend_threshold activation/snapshot_autoextend_percent | xargs)" \
	"snapshot_autoextend_threshold=70 snapshot_autoextend_percent=50" "lvm.conf: autoextend at 70%, by 50%"
check_as "write 6 MiB to the origin (fills auto's 8 MiB COW to ~75%)" \
	mw /dev/vg/lv /tmp/lv.model "$((2 * MiB)):$((6 * MiB))"
diag "auto: $(lvfield auto lv_size,data_percent)"
auto_grown() { [[ $(lvfield auto lv_size) != 8.00m ]]; }
expect_wait 45 "dmeventd extends the snapshot" auto_grown
expect_eq "$(lvfield auto lv_size)" "12.00m" "auto grew by 50% to 12 MiB"
diag "auto: $(lvfield auto lv_size,data_percent)"
expect_eq "$(snap_status vg-auto | cut -d' ' -f1 | cut -d/ -f2)" "$((12 * 2048))" \
	"snapshot status total follows the grown COW"
expect_content /dev/vg/auto /tmp/auto.model "auto still holds the data of its time" \
	/dev/vg/lv /tmp/lv.model "origin data"
check lvremove -q -y vg/auto

check vgremove -q -y vg
check pvremove -q /dev/ram0
finish
