#!/usr/bin/env bash
# Concurrency.  Phase 1: four fio jobs (libaio, O_DIRECT, iodepth 8, mixed
# block sizes, partial and chunk-straddling) write the origin while a fio
# random reader, an O_DIRECT compare loop and a buffered reader read the
# snapshot.  Every read of the snapshot, during and after, must return the
# pre-snapshot image; the origin must end up exactly as the same fio job
# leaves a scratch copy of it (fio's data and offsets are deterministic: a
# fixed seed, refilled unscrambled buffers, every block written once), and
# the COW holds every chunk.  Phase 2: on a fresh snapshot, fio writes the
# origin and the snapshot at the same time; both end up as the same jobs
# leave scratch copies.
set -u -o pipefail
. "${BASH_SOURCE[0]%/*}/lib.sh"
. "${BASH_SOURCE[0]%/*}/dmsnap.sh"
. "${BASH_SOURCE[0]%/*}/cow.sh"

load_test_modules
check make_ramdisks 4 32 || bail "ramdisks"
cow_load_dmsnap

osize=$((16 * MiB)) size=$((16 * 2048)) chunk=16
check dmsetup create fio-real --table "0 $size linear /dev/ram0 0" || bail "real"
check dmsetup create fio-scratch1 --table "0 $size linear /dev/ram2 0" || bail "scratch1"
check dmsetup create fio-scratch2 --table "0 $size linear /dev/ram3 0" || bail "scratch2"
real=/dev/mapper/fio-real origin=/dev/mapper/fio-origin snap=/dev/mapper/fio-snap
scratch1=/dev/mapper/fio-scratch1 scratch2=/dev/mapper/fio-scratch2
cow=/dev/ram1 cow_sectors=$(blockdev --getsz /dev/ram1)
check cowpy fill $real /tmp/image0
check origin_create fio-origin $real || bail "origin"

# fio_write DEV SEED JOBS SPAN LOG: JOBS writers, job i covering
# [i*SPAN, i*SPAN + 4 MiB) of DEV, each block once, deterministic data.
fio_write() {
	fio --output="$5" --name=w --filename="$1" --ioengine=libaio --direct=1 \
		--iodepth=8 --rw=randwrite --bssplit=4k/50:16k/30:64k/20 \
		--blockalign=4k --size=4m --offset_increment="$4" --numjobs="$3" \
		--randrepeat=1 --randseed="$2" --refill_buffers=1 --scramble_buffers=0 \
		--verify=0
}

# fio_ok LOG: no job reported an error.
fio_ok() {
	grep -q 'err= 0' "$1" && ! grep -qE 'err= *[1-9-]' "$1"
}

# --- phase 1: origin writers, snapshot readers -----------------------------------
dd if=/tmp/image0 of=$scratch1 bs=1M oflag=direct status=none
check fio_write $scratch1 1234 4 4m /tmp/fio-scratch1.log
check fio_ok /tmp/fio-scratch1.log
save_dev $scratch1 /tmp/image1

dd if=/dev/zero of=$cow bs=4k count=1 oflag=direct status=none
check snap_create fio-snap fio-origin $real $cow P $chunk || bail "snapshot"

fio --output=/tmp/fio-read.log --name=r --filename=$snap --ioengine=libaio --direct=1 \
	--iodepth=4 --rw=randread --bssplit=4k/40:8k/20:64k/40 --numjobs=2 \
	--time_based --runtime=600 &
reader=$!
touch /tmp/writing
(
	while [[ -e /tmp/writing ]]; do
		cowpy cmp $snap /tmp/image0
	done
) >/tmp/cmp.log 2>&1 &
comparer=$!
(
	while [[ -e /tmp/writing ]]; do
		md5sum <$snap | cut -c 1-32
		blockdev --flushbufs $snap
	done
) >/tmp/buffered.log 2>&1 &
buffered=$!

start=$SECONDS
check fio_write $origin 1234 4 4m /tmp/fio-origin.log
diag "phase 1 writers took $((SECONDS - start)) s"
rm /tmp/writing
wait $comparer
expect_eq $? 0 "compare loop ended"
wait $buffered
expect_eq $? 0 "buffered reader loop ended"
kill $reader
wait $reader
check fio_ok /tmp/fio-origin.log
check fio_ok /tmp/fio-read.log
diag "$(grep -E '^ +(read|write):' /tmp/fio-origin.log /tmp/fio-read.log)"

n=$(grep -c . /tmp/cmp.log)
expect_eq "$(grep -vc '^same$' /tmp/cmp.log)" 0 "all $n O_DIRECT passes over the snapshot during the writes read the image"
grep -v '^same$' /tmp/cmp.log | head -n 5 | while read -r l; do diag "$l"; done
want=$(file_md5 /tmp/image0)
n=$(grep -c . /tmp/buffered.log)
expect_eq "$(grep -vc "^$want$" /tmp/buffered.log)" 0 "all $n buffered passes over the snapshot during the writes read the image"
check test "$n" -ge 1
expect_content $snap /tmp/image0 "snapshot reads the pre-snapshot image after the writes" \
	$origin /tmp/image1 "origin = what the writers left on a scratch copy" \
	$real /tmp/image1 "origin device = what the writers left on a scratch copy"
expect_eq "$(snap_status fio-snap)" "$(expected_usage P $chunk $((osize / chunk / 512)) "$cow_sectors")" \
	"every chunk copied once"
check snap_remove fio-snap fio-origin

# --- phase 2: origin and snapshot writers at once --------------------------------
# Origin: 4 jobs over all of it; snapshot: 2 jobs over [0,4M) and [8M,12M).
dd if=/tmp/image1 of=$scratch1 bs=1M oflag=direct status=none
dd if=/tmp/image1 of=$scratch2 bs=1M oflag=direct status=none
check fio_write $scratch1 77 4 4m /tmp/fio-scratch1.log
check fio_write $scratch2 99 2 8m /tmp/fio-scratch2.log
save_dev $scratch1 /tmp/image2-origin
save_dev $scratch2 /tmp/image2-snap

dd if=/dev/zero of=$cow bs=4k count=1 oflag=direct status=none
check snap_create fio-snap fio-origin $real $cow P $chunk || bail "snapshot 2"
start=$SECONDS
fio_write $origin 77 4 4m /tmp/fio-origin.log &
w1=$!
fio_write $snap 99 2 8m /tmp/fio-snap.log &
w2=$!
wait $w1
expect_eq $? 0 "fio on the origin exits 0"
wait $w2
expect_eq $? 0 "fio on the snapshot exits 0"
diag "phase 2 writers took $((SECONDS - start)) s"
check fio_ok /tmp/fio-origin.log
check fio_ok /tmp/fio-snap.log
expect_content $origin /tmp/image2-origin "origin = what its writers left on a scratch copy" \
	$snap /tmp/image2-snap "snapshot = what its writers left on a scratch copy"
expect_eq "$(snap_status fio-snap)" "$(expected_usage P $chunk $((osize / chunk / 512)) "$cow_sectors")" \
	"every chunk copied once"

# Both survive re-creation of the snapshot.
check snap_remove fio-snap fio-origin
check snap_create fio-snap fio-origin $real $cow P $chunk
expect_content $snap /tmp/image2-snap "snapshot content after re-creation"

check snap_remove fio-snap fio-origin
check dmsetup remove fio-origin
check dmsetup remove fio-real fio-scratch1 fio-scratch2
finish
