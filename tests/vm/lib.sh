# shellcheck shell=bash
# Helpers for tests/vm/*.scenario.sh, which run as root inside the test VM
# (scripts/vm/run-scenarios boots one VM per scenario).  Source it with
#
#	. "${BASH_SOURCE[0]%/*}/lib.sh"
#
# Output is TAP: one "ok N - ..." / "not ok N - ..." line per check, details
# of a failure as "# ..." lines, and the plan plus a summary from finish.
# Scenarios should not use "set -e": a failed check returns 1 (so that
# "check ... || bail ..." works) and must not end the scenario.

_tap_n=0
_tap_failed=0

# diag LINE...: print TAP diagnostics.
diag() {
	[[ -z $* ]] || printf '%s\n' "$@" | sed 's/^/# /'
}

# pass DESC / fail DESC: record one check.
pass() {
	_tap_n=$((_tap_n + 1))
	echo "ok $_tap_n - $*"
}

fail() {
	_tap_n=$((_tap_n + 1))
	_tap_failed=$((_tap_failed + 1))
	echo "not ok $_tap_n - $*"
	return 1
}

# check CMD...: passes when CMD succeeds; its output is shown only on failure.
check() {
	local out rc
	if out=$("$@" 2>&1); then
		pass "$*"
	else
		rc=$?
		fail "$* (exit $rc)"
		diag "$out"
		return 1
	fi
}

# expect_fail CMD...: passes when CMD fails.
expect_fail() {
	local out
	if out=$("$@" 2>&1); then
		fail "expected to fail: $*"
		diag "$out"
		return 1
	fi
	pass "fails as expected: $*"
}

# expect_eq ACTUAL EXPECTED DESC
expect_eq() {
	if [[ $1 == "$2" ]]; then
		pass "$3"
	else
		fail "$3"
		diag "expected: '$2'" "got: '$1'"
		return 1
	fi
}

# finish: print the plan and a summary; exit 1 when any check failed.
finish() {
	echo "1..$_tap_n"
	echo "# $((_tap_n - _tap_failed)) passed, $_tap_failed failed"
	exit $((_tap_failed > 0))
}

# bail MSG: stop the scenario when the following checks cannot make sense.
bail() {
	fail "bail out: $*"
	finish
}

# load_test_modules: the block devices and dm targets scenarios build on,
# and configfs for null_blk devices made to measure.  brd is left to
# make_ramdisks, since its size is fixed at load time.
load_test_modules() {
	local m
	for m in dm-mod dm-zero dm-flakey dm-delay dm-log-writes loop null_blk; do
		modprobe "$m" || return
	done
	mountpoint -q /sys/kernel/config ||
		mount -t configfs configfs /sys/kernel/config
}

# make_ramdisks N SIZE_MB: (re)load brd with /dev/ram0 .. /dev/ram<N-1>.
make_ramdisks() {
	if [[ -d /sys/module/brd ]]; then
		rmmod brd || return
	fi
	modprobe brd rd_nr="$1" rd_size=$(($2 * 1024)) max_part=0
}
