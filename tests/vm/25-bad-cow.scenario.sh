#!/usr/bin/env bash
# Crafted COW devices.  A well-formed one (header, one metadata area, three
# exceptions) activates and reads as its exceptions say.  Corrupt ones are
# refused with "Failed to read snapshot metadata" and the reason in the
# kernel log, leave no device behind, and are not written to: bad magic, an
# unknown version, bad chunk sizes in the header.  A header marked invalid
# activates as "Invalid".
#
# Stricter than the in-tree module (checked only for our module, or with
# COW_STRICT=1; the in-tree module fails these and they are reported as
# skipped): exceptions pointing outside the COW device, or at a chunk that
# holds metadata (a metadata area), two exceptions for one origin chunk or
# on one COW chunk are refused; a new COW too small for its first metadata
# area is refused without being written to.
set -u -o pipefail
. "${BASH_SOURCE[0]%/*}/lib.sh"
. "${BASH_SOURCE[0]%/*}/dmsnap.sh"
. "${BASH_SOURCE[0]%/*}/cow.sh"

load_test_modules
check make_ramdisks 2 16 || bail "ramdisks"
cow_load_dmsnap

strict=${COW_STRICT:-auto}
if [[ $strict == auto ]]; then
	is_our_module && strict=1 || strict=0
fi
diag "strict checks: $strict"

O=/dev/ram0 C=/dev/ram1
cow_sectors=$(blockdev --getsz $C) # 32768: 4096 chunks of 8 sectors
check cowpy fill $O /tmp/origin.model
dd if=/dev/zero of=$C bs=1M count=16 oflag=direct status=none

# craft MAGIC VALID VERSION CHUNK [OLD:NEW]...: write a header and metadata
# area 0 (8-sector chunks: area 0 is chunk 1, area 1 would be chunk 258).
craft() {
	python3 -I -S -c '
import os, struct, sys
magic, valid, version, chunk = (int(x, 0) for x in sys.argv[1:5])
hdr = struct.pack("<IIII", magic, valid, version, chunk).ljust(4096, b"\0")
area = b"".join(struct.pack("<QQ", *(int(x) for x in e.split(":")))
                for e in sys.argv[5:]).ljust(4096, b"\0")
fd = os.open("/dev/ram1", os.O_RDWR)
os.pwrite(fd, hdr, 0)
os.pwrite(fd, area, 4096)
os.fsync(fd)
' "$@"
}
SNAP_MAGIC=0x70416e53

# Data chunks 2, 3 and 4, to be mapped to origin chunks 0, 5 and 4095.
rand_file /tmp/data.bin $((3 * 4096))
check dd if=/tmp/data.bin of=$C bs=4096 seek=2 oflag=direct conv=notrunc status=none
cp /tmp/origin.model /tmp/snap.model
dd if=/tmp/data.bin of=/tmp/snap.model bs=4096 count=1 skip=0 seek=0 conv=notrunc status=none
dd if=/tmp/data.bin of=/tmp/snap.model bs=4096 count=1 skip=1 seek=5 conv=notrunc status=none
dd if=/tmp/data.bin of=/tmp/snap.model bs=4096 count=1 skip=2 seek=4095 conv=notrunc status=none
good=(0:2 5:3 4095:4)

# --- a well-formed COW -----------------------------------------------------------
check craft $SNAP_MAGIC 1 1 8 "${good[@]}"
md5=$(dev_md5 $C)
check dmsetup create bad-snap --table "0 $(blockdev --getsz $O) snapshot $O $C P 8" || bail "crafted COW refused"
expect_eq "$(snap_status bad-snap)" "40/$cow_sectors 16" "status of the crafted COW: 3 exceptions"
expect_content /dev/mapper/bad-snap /tmp/snap.model "snapshot reads the crafted exceptions"
check dmsetup remove bad-snap
expect_eq "$(dev_md5 $C)" "$md5" "activation did not write to the COW"

# refused NAME [ERROR-IN-LOG]: a table on the crafted COW is refused, with
# ERROR-IN-LOG (if given) in the kernel log, and the COW is not written to.
refused() {
	local md5
	md5=$(dev_md5 $C)
	expect_table_error "snapshot $O $C P 8" "Failed to read snapshot metadata" &&
		[[ -n $2 ]] && expect_kmsg "$2" "$1: kernel log says '$2'"
	expect_eq "$(dev_md5 $C)" "$md5" "$1: COW unchanged"
}

# --- refused by every module ----------------------------------------------------
check craft $SNAP_MAGIC 1 1 8 "${good[@]}"
printf XXXX | dd of=$C bs=4 count=1 conv=notrunc,fsync status=none
expect_eq "$(dd if=$C bs=512 count=1 iflag=direct status=none | head -c 4)" XXXX "magic overwritten with XXXX"
refused "bad magic" "Invalid or corrupt snapshot"

check craft $SNAP_MAGIC 1 2 8 "${good[@]}"
refused "version 2" "unable to handle snapshot disk version 2"

check craft $SNAP_MAGIC 1 0 8 "${good[@]}"
refused "version 0" "unable to handle snapshot disk version 0"

check craft $SNAP_MAGIC 1 1 12 "${good[@]}"
refused "header chunk size 12" "invalid on-disk chunk size 12: Chunk size is not a power of 2"

check craft $SNAP_MAGIC 1 1 0 "${good[@]}"
refused "header chunk size 0" "invalid on-disk chunk size 0: Chunk size is not a power of 2"

check craft $SNAP_MAGIC 1 1 $((1 << 24)) "${good[@]}"
refused "header chunk size 2^24" "invalid on-disk chunk size 16777216: Chunk size is too high"

# Chunks bigger than the whole COW: metadata area 0 would lie beyond its end
# (the in-tree module finds out by an I/O error).
check craft $SNAP_MAGIC 1 1 65536 "${good[@]}"
refused "header chunk size 65536, the COW has 32768 sectors" ""

# --- a header marked invalid ----------------------------------------------------
check craft $SNAP_MAGIC 0 1 8 "${good[@]}"
md5=$(dev_md5 $C)
dmesg -C
check dmsetup create bad-snap --table "0 $(blockdev --getsz $O) snapshot $O $C P 8"
expect_eq "$(snap_status bad-snap)" "Invalid" "a header marked invalid activates as Invalid"
expect_kmsg "Snapshot is marked invalid." "kernel log says the COW is marked invalid"
check read_fails /dev/mapper/bad-snap
check dmsetup remove bad-snap
expect_eq "$(dev_md5 $C)" "$md5" "invalid COW unchanged"

# --- stricter than in-tree ------------------------------------------------------
# strict_refused NAME: with strict checks the table must be refused and the
# COW left alone; without, whatever happens is reported, and must leave the
# COW alone too (activation of a valid-looking COW does not write).
strict_refused() {
	local md5 out
	md5=$(dev_md5 $C)
	if ((strict)); then
		if out=$(dmsetup create bad-snap --table "0 $(blockdev --getsz $O) snapshot $O $C P 8" 2>&1); then
			fail "$1: refused"
			dmsetup remove bad-snap
		else
			pass "$1: refused"
		fi
		expect_fail dmsetup info bad-snap
	elif dmsetup create bad-snap --table "0 $(blockdev --getsz $O) snapshot $O $C P 8" 2>/dev/null; then
		pass "$1: refused # SKIP accepted: the in-tree module does not check this"
		dmsetup remove bad-snap
	else
		pass "$1: refused # SKIP refused, although strict checks are off"
	fi
	expect_eq "$(dev_md5 $C)" "$md5" "$1: COW unchanged"
}

check craft $SNAP_MAGIC 1 1 8 0:2 5:5000 4095:4
strict_refused "exception beyond the COW device (chunk 5000 of 4096)"
check craft $SNAP_MAGIC 1 1 8 0:2 5:4096 4095:4
strict_refused "exception just beyond the COW device (chunk 4096 of 4096)"
check craft $SNAP_MAGIC 1 1 8 0:2 5:1 4095:4
strict_refused "exception at metadata area 0 (chunk 1)"
check craft $SNAP_MAGIC 1 1 8 0:2 5:258 4095:4
strict_refused "exception at metadata area 1 (chunk 258)"
check craft $SNAP_MAGIC 1 1 8 0:2 5:3 0:4
strict_refused "two exceptions for origin chunk 0"
check craft $SNAP_MAGIC 1 1 8 0:2 5:3 4095:2
strict_refused "two exceptions on COW chunk 2"

# A new COW of one chunk: no room for metadata area 0.  The in-tree module
# refuses it only after writing the header (zeroing area 0 fails).
dd if=/dev/zero of=$C bs=4k count=1 seek=3000 oflag=direct status=none
check dmsetup create bad-tiny --table "0 8 linear $C 24000"
md5=$(dev_md5 /dev/mapper/bad-tiny)
expect_table_error "snapshot $O /dev/mapper/bad-tiny P 8" "Failed to read snapshot metadata"
if ((strict)); then
	expect_eq "$(dev_md5 /dev/mapper/bad-tiny)" "$md5" "one-chunk COW: unchanged"
elif [[ $(dev_md5 /dev/mapper/bad-tiny) == "$md5" ]]; then
	pass "one-chunk COW: unchanged # SKIP (unchanged, although strict checks are off)"
else
	pass "one-chunk COW: unchanged # SKIP the in-tree module writes the header first"
fi
check dmsetup remove bad-tiny

# The well-formed COW still works after all that.
check craft $SNAP_MAGIC 1 1 8 "${good[@]}"
check dmsetup create bad-snap --table "0 $(blockdev --getsz $O) snapshot $O $C P 8"
expect_content /dev/mapper/bad-snap /tmp/snap.model "well-formed COW reads as crafted"
check dmsetup remove bad-snap
finish
