#!/usr/bin/env bash
# Completions in interrupt context.  The ramdisks of the other scenarios
# complete every bio inside its submission; here the origin and the COW
# device are null_blk devices (memory-backed) completing from an hrtimer,
# a hard interrupt, as real hardware does.  A snapshot write covering a
# whole chunk is recorded by the module in that interrupt (under its
# irq-safe commit lock) and committed from a work queue; with lockdep
# (scripts/vm/run-scenarios --kernel debug) any lock taken there the wrong
# way is reported, and the harness fails the scenario on it.  Checked by
# content: fio's own verification of what it wrote through the snapshot
# (whole chunks, then parts of chunks), the snapshot's untouched part
# against the pre-snapshot image while fio writes the origin, and all of
# it again after the snapshot is re-created from its COW device.
set -u -o pipefail
. "${BASH_SOURCE[0]%/*}/lib.sh"
. "${BASH_SOURCE[0]%/*}/dmsnap.sh"
. "${BASH_SOURCE[0]%/*}/cow.sh"

load_test_modules
rmmod null_blk || bail "rmmod null_blk"
check modprobe null_blk nr_devices=2 gb=1 memory_backed=1 irqmode=2 \
	completion_nsec=20000 queue_mode=2 || bail "null_blk with timer completions"
cow_load_dmsnap

origin=/dev/nullb0 cow=/dev/nullb1
size=$((32 * 2048)) chunk=8
check dmsetup create irq-real --table "0 $size linear $origin 0" || bail "real"
real=/dev/mapper/irq-real snap=/dev/mapper/irq-snap
check cowpy fill $real /tmp/image0
check origin_create irq-origin $real || bail "origin"
check snap_create irq-snap irq-origin $real $cow P $chunk || bail "snapshot"

# fio_snap NAME BS OFFSET [fio options...]: random writes of 8 MiB at
# OFFSET through the snapshot, then fio reads them back and checks them.
fio_snap() {
	local name=$1 bs=$2 offset=$3
	shift 3
	fio --output="/tmp/fio-$name.log" --name="$name" --filename=$snap --ioengine=libaio \
		--direct=1 --iodepth=16 --rw=randwrite --bs="$bs" --offset="$offset" --size=8m \
		--randrepeat=1 --verify=crc32c --verify_fatal=1 "$@"
}

fio_ok() {
	grep -q 'err= 0' "$1" && ! grep -qE 'err= *[1-9-]' "$1"
}

# Whole chunks: each write is sent straight to the COW device and its
# completion is recorded in the interrupt.
check fio_snap whole 4k 0
check fio_ok /tmp/fio-whole.log
# Parts of chunks: a copy of each chunk first (kcopyd), then the write.
check fio_snap part 2k 8m
check fio_ok /tmp/fio-part.log

# Origin writes beyond: copy-on-write with completions in interrupts too.
fio --output=/tmp/fio-origin.log --name=o --filename=/dev/mapper/irq-origin --ioengine=libaio \
	--direct=1 --iodepth=16 --rw=randwrite --bs=4k --offset=16m --size=16m --numjobs=2 \
	--offset_increment=8m --randrepeat=1 --refill_buffers=1
check fio_ok /tmp/fio-origin.log
dd if=/tmp/image0 of=/tmp/image0-tail bs=1M skip=16 status=none
dd if=$snap of=/tmp/snap-tail bs=1M skip=16 iflag=direct status=none
expect_eq "$(cowpy cmp /tmp/snap-tail /tmp/image0-tail)" same \
	"snapshot keeps the pre-snapshot data under origin writes"

# The COW device holds all of it: re-created, the snapshot verifies again.
check snap_remove irq-snap irq-origin
check snap_create irq-snap irq-origin $real $cow P $chunk || bail "re-created snapshot"
check fio_snap whole 4k 0 --verify_only
check fio_ok /tmp/fio-whole.log
check fio_snap part 2k 8m --verify_only
check fio_ok /tmp/fio-part.log
dd if=$snap of=/tmp/snap-tail bs=1M skip=16 iflag=direct status=none
expect_eq "$(cowpy cmp /tmp/snap-tail /tmp/image0-tail)" same \
	"re-created snapshot keeps the pre-snapshot data"

check snap_remove irq-snap irq-origin
check dmsetup remove irq-origin
check dmsetup remove irq-real
finish
