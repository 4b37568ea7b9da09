#!/usr/bin/env bash
# LVM2 end to end with this module: lvcreate -s (several snapshots, chunk
# sizes 4k..512k), lvs attributes and percentages, lvextend of a snapshot
# while origin writes continue, vgchange -an/-ay keeping snapshot data,
# lvremove restoring the origin's plain table.  Data checked by content.
. "${BASH_SOURCE[0]%/*}/lib.sh"
. "${BASH_SOURCE[0]%/*}/dmsnap.sh"
. "${BASH_SOURCE[0]%/*}/cow.sh"

load_test_modules
make_ramdisks 1 160
cow_load_dmsnap
export LVM_SUPPRESS_FD_WARNINGS=1

sum() { md5sum <"$1" | cut -d' ' -f1; }
lvfield() { lvs --noheadings -o "$2" "vg/$1" | tr -d ' '; }

check pvcreate -q /dev/ram0 || bail "pvcreate"
check vgcreate -q vg /dev/ram0 || bail "vgcreate"
check lvcreate -q -y -Zn -L 32M -n lv vg || bail "lvcreate"
dd if=/dev/urandom of=/dev/vg/lv bs=1M count=32 oflag=direct status=none
t0=$(sum /dev/vg/lv)

check lvcreate -q -y -s -L 16M -c 4k -n s4k vg/lv || bail "lvcreate -s 4k"
snap_table=$(dmsetup table vg-s4k)
expect_eq "$(awk '{print $3, $6, $7}' <<<"$snap_table")" "snapshot P 8" "snapshot table loaded by LVM: P, 4k chunks"
expect_eq "$(lvfield s4k lv_attr | cut -c1-7)" "swi-a-s" "lvs: active snapshot"
expect_eq "$(lvfield lv lv_attr | cut -c1-7)" "owi-a-s" "lvs: origin"

dd if=/dev/urandom of=/dev/vg/lv bs=1M count=4 seek=3 oflag=direct status=none
t1=$(sum /dev/vg/lv)
check lvcreate -q -y -s -L 16M -c 64k -n s64k vg/lv
dd if=/dev/urandom of=/dev/vg/lv bs=64k count=20 seek=100 oflag=direct status=none
check lvcreate -q -y -s -L 16M -c 512k -n s512k vg/lv
t2=$(sum /dev/vg/lv)
dd if=/dev/urandom of=/dev/vg/lv bs=4k count=300 seek=2000 oflag=direct status=none
t3=$(sum /dev/vg/lv)

expect_eq "$(sum /dev/vg/s4k)" "$t0" "4k snapshot holds the data of its time"
expect_eq "$(sum /dev/vg/s64k)" "$t1" "64k snapshot holds the data of its time"
expect_eq "$(sum /dev/vg/s512k)" "$t2" "512k snapshot holds the data of its time"
pct=$(lvfield s4k data_percent)
[[ $pct != "0.00" && -n $pct ]] && pass "lvs data_percent of a used snapshot: $pct" ||
	fail "lvs data_percent of a used snapshot: '$pct'"
expect_eq "$(lvfield s4k snap_percent)" "$pct" "snap_percent equals data_percent"

# lvextend reloads only the -cow device; the snapshot sees the new size.
# Origin writes go on meanwhile (to chunks s4k already holds, so that its
# usage can only fall; s64k and s512k copy them).
head -c $((4 * 1024 * 1024)) /dev/urandom >/tmp/bg.bin
dd if=/dev/vg/lv of=/tmp/lv.img bs=1M iflag=direct status=none
dd if=/tmp/bg.bin of=/tmp/lv.img bs=1M seek=3 conv=notrunc status=none
dd if=/tmp/bg.bin of=/dev/vg/lv bs=64k seek=48 oflag=direct status=none &
bg=$!
check lvextend -q -L +8M vg/s4k
check wait "$bg"
t3=$(sum /tmp/lv.img)
expect_eq "$(sum /dev/vg/lv)" "$t3" "origin holds the writes made during lvextend"
expect_eq "$(sum /dev/vg/s4k)" "$t0" "4k snapshot unchanged by writes during lvextend"
expect_eq "$(sum /dev/vg/s64k)" "$t1" "64k snapshot unchanged by writes during lvextend"
expect_eq "$(sum /dev/vg/s512k)" "$t2" "512k snapshot unchanged by writes during lvextend"
expect_eq "$(lvfield s4k lv_size)" "24.00m" "lvextend: new size"
total=$(dmsetup status vg-s4k | awk '{split($4, a, "/"); print a[2]}')
expect_eq "$total" "$((24 * 2048))" "snapshot status total follows the grown COW"
pct2=$(lvfield s4k data_percent)
awk -v a="$pct2" -v b="$pct" 'BEGIN { exit !(a < b) }' &&
	pass "data_percent fell after lvextend ($pct -> $pct2)" ||
	fail "data_percent did not fall after lvextend ($pct -> $pct2)"

check vgchange -q -an vg
check vgchange -q -ay vg
expect_eq "$(sum /dev/vg/s4k)" "$t0" "4k snapshot data survives deactivation"
expect_eq "$(sum /dev/vg/s512k)" "$t2" "512k snapshot data survives deactivation"
expect_eq "$(sum /dev/vg/lv)" "$t3" "origin data survives deactivation"

check lvremove -q -y vg/s4k vg/s64k vg/s512k
expect_eq "$(dmsetup table vg-lv | awk '{print $3}')" "linear" "origin back to a plain linear table"
expect_eq "$(sum /dev/vg/lv)" "$t3" "origin data after removing the snapshots"
check vgremove -q -y vg
check pvremove -q /dev/ram0

finish
