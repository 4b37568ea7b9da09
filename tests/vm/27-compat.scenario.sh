#!/usr/bin/env bash
# On-disk compatibility with the in-tree module, both ways, in one boot:
# COWs written by module A ($DMSNAP_KO) activate under module B (the running
# kernel's own dm-snapshot) with the same content and status, take more
# writes there, and come back to A the same way.  Covered: a persistent
# store spanning several metadata areas with origin and snapshot writes, a
# partly filled last area continued by the other module, the chunk size in
# the header, and the invalid flag.  When DMSNAP_KO is the in-tree module
# this checks self-compatibility.
# shellcheck disable=SC2046 # random_ranges lists are split on purpose
set -u -o pipefail
. "${BASH_SOURCE[0]%/*}/lib.sh"
. "${BASH_SOURCE[0]%/*}/dmsnap.sh"
. "${BASH_SOURCE[0]%/*}/cow.sh"

cow_seed 27

load_test_modules
check make_ramdisks 3 32 || bail "ramdisks"
[[ -n ${DMSNAP_KO:-} && -f $DMSNAP_KO ]] || bail "DMSNAP_KO not set or missing: '${DMSNAP_KO:-}'"
INTREE_KO=$(intree_ko) || bail "no in-tree dm-snapshot module for $(uname -r)"
diag "module A: $DMSNAP_KO" "module B: $INTREE_KO"
load_snap_deps || bail "cannot load dm-mod/dm-bufio"

osize=$((16 * MiB)) size=$((16 * 2048))
check dmsetup create compat-real --table "0 $size linear /dev/ram0 0" || bail "real"
# Big COW: ram1 (32 MiB).  Small COW, to be invalidated: 1 MiB of ram2.
check dmsetup create compat-smallcow --table "0 2048 linear /dev/ram2 0" || bail "small COW"
real=/dev/mapper/compat-real origin=/dev/mapper/compat-origin
big=/dev/mapper/compat-big small=/dev/mapper/compat-small
big_cow=/dev/ram1 small_cow=/dev/mapper/compat-smallcow
big_sectors=$(blockdev --getsz $big_cow)
dd if=/dev/zero of=$big_cow bs=4k count=1 oflag=direct status=none
dd if=/dev/zero of=$small_cow bs=4k count=1 oflag=direct status=none
check cowpy fill $real /tmp/origin.model

# activate KO: load KO and create the origin and both snapshots from the
# COWs as they are (the big one with table chunk size 8: from the second
# activation on, the header's 16 must win).
activate() {
	check ko_insmod "$1" || bail "cannot load $1"
	check origin_create compat-origin $real || bail "origin"
	check snap_create compat-big compat-origin $real $big_cow P "${2:-8}" || bail "big snapshot"
	check snap_create compat-small compat-origin $real $small_cow P 8 || bail "small snapshot"
}

# deactivate: remove the tables and unload the module.
deactivate() {
	check snap_remove compat-big compat-origin
	check snap_remove compat-small compat-origin
	check dmsetup remove compat-origin
	check rmmod dm_snapshot
}

# writes TAG: origin and snapshot writes, the origin's enough to invalidate
# the small snapshot the first time.
writes() {
	check_as "$1: origin writes" mw $origin /tmp/origin.model \
		$(random_ranges $osize 24 $((64 * 1024))) $((RANDOM % 64 * 4096 + 512)):$((5 * MiB))
	check_as "$1: snapshot writes" mw $big /tmp/big.model \
		$(random_ranges $osize 12 $((16 * 1024))) 3333:4444
}

# same_state TAG: what the current module shows matches what was recorded.
same_state() {
	expect_eq "$(table_chunk compat-big)" 16 "$1: big snapshot's chunk size is the header's"
	expect_eq "$(snap_status compat-big)" "$big_status" "$1: same status of the big snapshot"
	expect_eq "$(snap_status compat-small)" Invalid "$1: small snapshot still Invalid"
	expect_content $big /tmp/big.model "$1: same big snapshot content" \
		$origin /tmp/origin.model "$1: same origin content"
	check read_fails $small
}

# --- A creates --------------------------------------------------------------------
diag "--- A creates"
cp /tmp/origin.model /tmp/big.model
check ko_insmod "$DMSNAP_KO" || bail "cannot load $DMSNAP_KO"
check origin_create compat-origin $real || bail "origin"
check snap_create compat-big compat-origin $real $big_cow P 16 || bail "big snapshot"
check snap_create compat-small compat-origin $real $small_cow P 8 || bail "small snapshot"
track_reset 16
writes "A"
expect_eq "$(snap_status compat-small)" Invalid "A: small snapshot invalidated"
big_status=$(snap_status compat-big)
expect_eq "$big_status" "$(expected_usage P 16 ${#TRACK[@]} "$big_sectors")" \
	"A: big snapshot status: ${#TRACK[@]} exceptions"
expect_content $big /tmp/big.model "A: big snapshot content"
deactivate

# --- B reads, writes --------------------------------------------------------------
diag "--- B reads what A wrote"
activate "$INTREE_KO"
same_state "A->B"
writes "B"
big_status=$(snap_status compat-big)
expect_eq "$big_status" "$(expected_usage P 16 ${#TRACK[@]} "$big_sectors")" \
	"B: big snapshot status: ${#TRACK[@]} exceptions"
deactivate

# --- A reads, writes --------------------------------------------------------------
diag "--- A reads what B wrote"
activate "$DMSNAP_KO"
same_state "B->A"
writes "A again"
big_status=$(snap_status compat-big)
expect_eq "$big_status" "$(expected_usage P 16 ${#TRACK[@]} "$big_sectors")" \
	"A again: big snapshot status: ${#TRACK[@]} exceptions"
deactivate

# --- B reads once more --------------------------------------------------------------
diag "--- B reads what A wrote on top"
activate "$INTREE_KO" 0
same_state "A->B again"
deactivate

check dmsetup remove compat-real compat-smallcow
finish
