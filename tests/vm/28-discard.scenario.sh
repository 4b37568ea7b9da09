#!/usr/bin/env bash
# Discard features: with discard_zeroes_cow, discarding whole chunks of the
# snapshot zeroes their copies on the COW device (the snapshot then reads
# zeros there) and discarding chunks without a copy changes nothing; the
# origin is untouched.  discard_passdown_origin also discards the origin.
. "${BASH_SOURCE[0]%/*}/lib.sh"
. "${BASH_SOURCE[0]%/*}/dmsnap.sh"
. "${BASH_SOURCE[0]%/*}/cow.sh"

load_test_modules
cow_load_dmsnap
# Loop devices over tmpfs files: they take discards (dm offers discard
# only when the devices under a table do) and read zeros after one.
for i in 0 1 2; do
	truncate -s 16M /tmp/dz$i.img
	dev[$i]=$(losetup --show -f /tmp/dz$i.img) || bail "losetup"
done

sum_range() { dd if="$1" bs=64k skip="$2" count="$3" iflag=direct status=none | md5sum | cut -d' ' -f1; }
zeros64k=$(head -c 65536 /dev/zero | md5sum | cut -d' ' -f1)
O=${dev[0]} size=$(blockdev --getsz ${dev[0]})

dd if=/dev/urandom of=$O bs=1M count=16 oflag=direct status=none
orig_a=$(sum_range $O 0 1) orig_b=$(sum_range $O 128 1) orig_c=$(sum_range $O 16 1)

check dmsetup create dz-origin --table "0 $size snapshot-origin $O" || bail "origin"
check dmsetup create dz-snap --table "0 $size snapshot $O ${dev[1]} P 8 1 discard_zeroes_cow" || bail "snapshot"
check dmsetup suspend dz-origin
check dmsetup resume dz-origin
expect_eq "$(dmsetup table dz-snap | cut -d' ' -f4-)" "$(devt $O) $(devt ${dev[1]}) P 8 1 discard_zeroes_cow" \
	"table line lists the feature"

# Give chunks 0..255 (the first MiB) copies on the COW device.
dd if=/dev/urandom of=/dev/mapper/dz-origin bs=1M count=1 oflag=direct status=none
origin_a=$(sum_range /dev/mapper/dz-origin 0 1)
expect_eq "$(sum_range /dev/mapper/dz-snap 0 1)" "$orig_a" "snapshot keeps the old first 64k"

check blkdiscard -o 0 -l 65536 /dev/mapper/dz-snap
expect_eq "$(sum_range /dev/mapper/dz-snap 0 1)" "$zeros64k" "discarded copied chunks read zeros"
expect_eq "$(sum_range /dev/mapper/dz-snap 16 1)" "$orig_c" "copied chunks next to them keep their data"
check blkdiscard -o $((128 * 65536)) -l 65536 /dev/mapper/dz-snap
expect_eq "$(sum_range /dev/mapper/dz-snap 128 1)" "$orig_b" "discarding chunks without a copy changes nothing"
expect_eq "$(sum_range /dev/mapper/dz-origin 0 1)" "$origin_a" "the origin is untouched"
expect_eq "$(sum_range $O 128 1)" "$orig_b" "the origin device is untouched"
check dmsetup remove dz-snap

# Passdown: the origin device is discarded too.
check dmsetup create dz-snap2 --table "0 $size snapshot $O ${dev[2]} P 8 2 discard_zeroes_cow discard_passdown_origin"
check dmsetup suspend dz-origin
check dmsetup resume dz-origin
expect_eq "$(dmsetup table dz-snap2 | cut -d' ' -f6-)" "P 8 2 discard_zeroes_cow discard_passdown_origin" \
	"table line lists both features"
check blkdiscard -o $((128 * 65536)) -l 65536 /dev/mapper/dz-snap2
expect_eq "$(sum_range $O 128 1)" "$zeros64k" "passdown discarded the origin range"
check dmsetup remove dz-snap2
check dmsetup remove dz-origin
for i in 0 1 2; do losetup -d "${dev[$i]}"; done
finish
