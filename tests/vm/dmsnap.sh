# shellcheck shell=bash
# Helpers for scenarios that test dm-snapshot.ko (ours or the in-tree one).
# Source after lib.sh.

# load_dmsnap: insert the module under test ($DMSNAP_KO, built by make).
load_dmsnap() {
	[[ -n ${DMSNAP_KO:-} && -f $DMSNAP_KO ]] || bail "DMSNAP_KO not set or missing: '${DMSNAP_KO:-}'"
	modprobe dm-mod || bail "modprobe dm-mod"
	check insmod "$DMSNAP_KO" || bail "module does not load"
}

# target_version NAME: the version `dmsetup targets` reports for NAME.
target_version() {
	dmsetup targets | awk -v t="$1" '$1 == t { print $2 }'
}

# devt DEV: "maj:min" of a block device node.
devt() {
	printf '%d:%d\n' "0x$(stat -c %t "$1")" "0x$(stat -c %T "$1")"
}

# expect_table_error "TABLE LINE" "ERROR TEXT": loading the line must fail,
# the kernel log must carry the error text device-mapper prints for the
# target's ti->error, and no device may be left behind.  The text matches
# whole, or as the prefix of "TEXT: detail": where the in-tree driver has
# only a generic message this module adds what exactly is wrong.
expect_table_error() {
	local table=$1 want=$2 out log
	dmesg -C
	if out=$(dmsetup create dmsnap_bad --table "0 $(table_len "$table") $table" 2>&1); then
		fail "accepted bad table: $table"
		dmsetup remove dmsnap_bad
		return 1
	fi
	log=$(dmesg)
	if grep -qF -- ": $want (" <<<"$log" || grep -qF -- ": $want: " <<<"$log"; then
		pass "refused with '$want': $table"
	else
		fail "wrong error for: $table"
		diag "expected: $want" "kernel log:" "$log"
		return 1
	fi
	if dmsetup info dmsnap_bad >/dev/null 2>&1; then
		fail "device left behind after refused table: $table"
		dmsetup remove dmsnap_bad
		return 1
	fi
}

# table_len "TABLE": a target length for a line whose first word after the
# target name is the origin device (its size), else 8 sectors.
table_len() {
	local words
	read -r -a words <<<"$1"
	if [[ ${#words[@]} -ge 2 && -b ${words[1]} ]]; then
		blockdev --getsz "${words[1]}"
	elif [[ ${#words[@]} -ge 2 && ${words[1]} == *:* ]]; then
		blockdev --getsz "/dev/block/${words[1]}" 2>/dev/null || echo 8
	else
		echo 8
	fi
}
