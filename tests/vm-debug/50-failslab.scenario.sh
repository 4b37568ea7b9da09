#!/usr/bin/env bash
# Allocation failures (failslab) aimed at this module while origin and
# snapshot I/O run (debug kernel only: it needs CONFIG_FAILSLAB and its
# debugfs).  Failures are injected into every slab allocation a chosen
# writer makes inside its write system calls (task filter), which is where
# the module allocates pending exceptions for the chunks the writes break.
# The snapshot must be invalidated cleanly, saying "Unable to allocate
# exception", the origin must keep its data and keep working, and nothing
# may crash or leak (the VM runner scans the log for KASAN, lockdep and
# kmemleak reports).  Prints how many failures were injected.
. "${BASH_SOURCE[0]%/*}/../vm/lib.sh"
. "${BASH_SOURCE[0]%/*}/../vm/dmsnap.sh"
. "${BASH_SOURCE[0]%/*}/../vm/cow.sh"

F=/sys/kernel/debug/failslab
load_test_modules
make_ramdisks 2 64
cow_load_dmsnap
[[ -d $F ]] || bail "no $F: not a kernel with CONFIG_FAILSLAB and its debugfs"
is_our_module || bail "this scenario targets this project's module (in-tree allocates elsewhere)"
cow_seed 5050

O=/dev/ram0 C=/dev/ram1
size=$(blockdev --getsz $O)
rand_file /tmp/origin.model $((size * 512))
check dd if=/tmp/origin.model of=$O bs=1M oflag=direct status=none
check origin_create origin $O
check snap_create snap origin $O $C P 8
save_dev /dev/mapper/snap /tmp/snap.model

# writer DEV OFFSET COUNT FAIL: COUNT 4 KiB O_DIRECT writes of fresh data at
# OFFSET (bytes), with failslab aimed at this process during the writes if
# FAIL is 1.  Applies each write that succeeded to /tmp/origin.model when
# DEV is the origin; prints the number of failed writes.
writer() {
	python3 -I -S - "$@" <<'PY'
import mmap, os, sys
dev, off, count, fail = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1"
fd = os.open(dev, os.O_WRONLY | os.O_DIRECT)
buf = mmap.mmap(-1, 4096)
model = open("/tmp/origin.model", "r+b") if dev.endswith("origin") else None
# Opened once, before any failure: while make-it-fail is set, every slab
# allocation of this process fails, opening a file included.  Nothing but
# the pwrite runs in that window (a failed allocation in the 9p client,
# say while Python loads a module, would break the guest's root).
mif = os.open("/proc/self/make-it-fail", os.O_WRONLY) if fail else -1
def make_it_fail(v):
    os.lseek(mif, 0, os.SEEK_SET)
    os.write(mif, v)
errors = 0
for i in range(count):
    data = os.urandom(4096)
    buf.seek(0); buf.write(data)
    at = off + i * 4096
    ok = True
    if fail:
        make_it_fail(b"1")
    try:
        os.pwrite(fd, buf, at)
    except OSError:
        ok = False
    if fail:
        make_it_fail(b"0")
    if ok and model:
        model.seek(at); model.write(data)
    errors += not ok
print(errors)
PY
}

# Background I/O that is not targeted: snapshot readers, origin writers on
# a separate range (their model updates are made by writer itself).
reader_loop() {
	local end=$((SECONDS + 60))
	while ((SECONDS < end)) && [[ ! -e /tmp/stop ]]; do
		dd if=/dev/mapper/snap of=/dev/null bs=64k count=64 iflag=direct status=none 2>/dev/null
	done
}
reader_loop &
rpid=$!

echo N >$F/ignore-gfp-wait     # our allocations may sleep (GFP_NOIO)
echo Y >$F/task-filter         # only processes with make-it-fail set
echo 100 >$F/probability
echo 1 >$F/interval
echo 0 >$F/space
echo 1 >$F/verbose
budget=100000
echo $budget >$F/times

# Untargeted origin writes meanwhile: they make exceptions normally.
check_as "untargeted origin writes before the failures" writer /dev/mapper/origin $((8 * 1024 * 1024)) 64 0
# Targeted writes to chunks the snapshot has not copied yet.
failed_writes=$(writer /dev/mapper/origin $((32 * 1024 * 1024)) 32 1)
echo 0 >$F/probability
injected=$((budget - $(cat $F/times)))
diag "failslab injected $injected allocation failures; $failed_writes targeted writes failed"
((injected > 0)) && pass "failslab injected failures ($injected)" || fail "failslab injected nothing"

touch /tmp/stop
wait "$rpid"

expect_eq "$(snap_status snap)" "Invalid" "snapshot invalidated by the failed allocation"
expect_kmsg "Invalidating snapshot: Unable to allocate exception." "the kernel log names the allocation failure"
check read_fails /dev/mapper/snap

# The origin keeps working and holds every write that succeeded.
check_as "origin writes after the failures" writer /dev/mapper/origin $((16 * 1024 * 1024)) 64 0
expect_eq "$(dev_md5 /dev/mapper/origin)" "$(file_md5 /tmp/origin.model)" "origin holds exactly the writes that succeeded"

check snap_remove snap origin
check dmsetup remove origin
# A fresh snapshot on the invalidated COW comes back Invalid (the header
# said so on disk before any uncopied origin write went through).
check dmsetup create snap2 --table "0 $size snapshot $O $C P 8"
expect_eq "$(snap_status snap2)" "Invalid" "invalid state is persistent"
check dmsetup remove snap2
check rmmod dm_snapshot
finish
