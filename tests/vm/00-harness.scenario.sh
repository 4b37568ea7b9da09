#!/usr/bin/env bash
# Self-test of the VM harness: the right kernel booted, the environment that
# vm-run promises is there, and the block devices and dm targets the real
# scenarios build on work.
set -u -o pipefail
# shellcheck source=tests/vm/lib.sh
. "${BASH_SOURCE[0]%/*}/lib.sh"

MiB=$((1024 * 1024))

# --- the VM itself -----------------------------------------------------------
expect_eq "$(uname -r)" "${VM_KERNEL_RELEASE:-unset}" \
	"guest runs the booted image's release (${VM_KERNEL_RELEASE:-unset})"
if [[ ${VM_KERNEL:-} =~ ^[0-9]+\.[0-9]+$ ]]; then
	expect_eq "$(uname -r | cut -d . -f 1,2)" "$VM_KERNEL" "guest kernel is of the requested series"
fi
check test -x scripts/vm-run # run-scenarios starts us in the repository
expect_eq "${DM_DISABLE_UDEV:-}" 1 "DM_DISABLE_UDEV=1 is set"
check touch /tmp/probe /run/probe /etc/lvm/probe

# --- test devices ------------------------------------------------------------
check load_test_modules || bail "cannot load the test modules"
check make_ramdisks 2 64 || bail "cannot create ramdisks"
for dev in /dev/ram0 /dev/ram1; do
	expect_eq "$(blockdev --getsize64 "$dev")" $((64 * MiB)) "$dev has 64 MiB"
done
check test ! -e /dev/ram2

check test -b /dev/nullb0
check test -d /sys/kernel/config/nullb

truncate -s 32M /tmp/loop.img
if loopdev=$(losetup --find --show /tmp/loop.img); then
	pass "losetup on a tmpfs file: $loopdev"
	expect_eq "$(blockdev --getsize64 "$loopdev")" $((32 * MiB)) "$loopdev has 32 MiB"
	check losetup -d "$loopdev"
else
	fail "losetup on a tmpfs file"
fi

targets=$(dmsetup targets | awk '{ print $1 }')
for t in linear error zero flakey delay log-writes; do
	if grep -qx -- "$t" <<<"$targets"; then
		pass "dm target $t is available"
	else
		fail "dm target $t is available"
		diag "dmsetup targets:" "$targets"
	fi
done

# --- device-mapper round trip ------------------------------------------------
# A 32 MiB linear map starting 1 MiB into ram0, so the offset is checked too.
check dmsetup create harness-linear --table "0 $((32 * 2048)) linear /dev/ram0 2048" ||
	bail "cannot create a linear target"
lin=/dev/mapper/harness-linear
check test -b $lin
expect_eq "$(blockdev --getsize64 $lin)" $((32 * MiB)) "linear target has 32 MiB"
head -c 16M /dev/urandom >/tmp/pattern
check dd if=/tmp/pattern of=$lin bs=1M oflag=direct status=none
expect_eq "$(dd if=$lin bs=1M count=16 iflag=direct status=none | md5sum)" \
	"$(md5sum </tmp/pattern)" "data reads back through the linear target"
check cmp -n 16M -i 0:1M /tmp/pattern /dev/ram0
check dmsetup remove harness-linear
check test ! -e $lin
expect_fail dmsetup info harness-linear

check dmsetup create harness-zero --table "0 2048 zero"
check cmp -n 1M /dev/mapper/harness-zero /dev/zero
check dmsetup create harness-error --table "0 2048 error"
expect_fail dd if=/dev/mapper/harness-error of=/dev/null bs=4k count=1 iflag=direct status=none
check dmsetup remove harness-zero harness-error

# LVM must work without udev (DM_DISABLE_UDEV) and with a writable /etc/lvm.
check pvcreate -q /dev/ram1
check vgcreate -q harnessvg /dev/ram1
check lvcreate -q -y -L 16M -n lv harnessvg
check test -b /dev/harnessvg/lv
check vgremove -q -f harnessvg
check pvremove -q /dev/ram1

finish
