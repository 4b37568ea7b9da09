# shellcheck shell=bash
# Helpers for the copy-on-write scenarios (tests/vm/2N-*.scenario.sh).
# Source after lib.sh and dmsnap.sh.
#
# Conventions: a "model" is a file in /tmp holding what a device must read
# back; every write goes to the device and to its model, and checks compare
# whole devices with their models by checksum, read with O_DIRECT so that no
# page cache can hide what the target returns.  Sizes and offsets are bytes
# unless a name says sectors.

# shellcheck disable=SC2034 # used by the scenarios
MiB=$((1024 * 1024))

# --- modules -----------------------------------------------------------------

# intree_ko: path of the running kernel's own dm-snapshot module (possibly
# compressed, e.g. dm-snapshot.ko.xz on Debian's 6.12).
intree_ko() {
	local f
	for f in /lib/modules/"$(uname -r)"/kernel/drivers/md/dm-snapshot.ko*; do
		[[ -f $f ]] && { echo "$f"; return 0; }
	done
	return 1
}

# ko_insmod PATH: insmod a module file.  Compressed modules are decompressed
# to /tmp first: Debian's kmod loads its 6.12 .ko.xz files itself, but that
# depends on how kmod (and the kernel) were built.
ko_insmod() {
	local ko=$1 plain
	case $ko in
	*.ko) insmod "$ko"; return ;;
	*.xz) plain=/tmp/$(basename "$ko" .xz); xz -dc "$ko" >"$plain" || return ;;
	*.zst) plain=/tmp/$(basename "$ko" .zst); zstd -dcq "$ko" >"$plain" || return ;;
	*.gz) plain=/tmp/$(basename "$ko" .gz); gzip -dc "$ko" >"$plain" || return ;;
	*) insmod "$ko"; return ;;
	esac
	insmod "$plain"
}

# load_snap_deps: what dm-snapshot.ko links against (insmod does not resolve
# dependencies; the in-tree module needs dm-bufio, which is modular).
load_snap_deps() {
	modprobe dm-mod && modprobe dm-bufio
}

# cow_load_dmsnap: load_dmsnap, but with dm-bufio loaded first and
# compressed DMSNAP_KO files accepted (the in-tree module on some kernels).
# cow_seed DEFAULT: seed bash's RANDOM with $COW_SEED or DEFAULT and say
# which, so a failing run can be repeated exactly.
cow_seed() {
	local seed=${COW_SEED:-$1}
	RANDOM=$seed
	diag "random seed $seed"
}

cow_load_dmsnap() {
	[[ -n ${DMSNAP_KO:-} && -f $DMSNAP_KO ]] || bail "DMSNAP_KO not set or missing: '${DMSNAP_KO:-}'"
	load_snap_deps || bail "cannot load dm-mod/dm-bufio"
	check ko_insmod "$DMSNAP_KO" || bail "module does not load: $DMSNAP_KO"
}

# is_our_module [KO]: true when KO (default $DMSNAP_KO) is this project's
# module, which declares MODULE_VERSION; the in-tree one declares none.
is_our_module() {
	[[ -n $(modinfo -F version "${1:-$DMSNAP_KO}" 2>/dev/null) ]]
}

# --- content -----------------------------------------------------------------

# Under TCG every process costs a lot, and dd|md5sum of a device through a
# pipe is slower still, so the content work is done by one python3 process
# per call (python3 comes from the host's root, like every other tool).
#
#   cowpy md5 PATH                  checksum (block devices read with O_DIRECT)
#   cowpy cmp PATH MODEL...         for each pair a line "same", or a report
#                                   of the differing 4 KiB blocks or of the
#                                   read error; exit 0 when all are the same
#   cowpy write DEV MODEL OFF:LEN.. fresh random data at each byte range, to
#                                   DEV and MODEL; sector-aligned ranges with
#                                   O_DIRECT, others buffered then fsynced
#   cowpy sectors DEV MODEL SEC N   N one-sector O_DIRECT writes from SEC
#   cowpy fill DEV MODEL            random data over all of DEV, MODEL created
# "write" and "sectors" stop at the first failed write (exit 1; stderr names
# the failed range and how many were written before it); ranges written
# before it are in MODEL, the failed one not.
_COWPY='
import hashlib, mmap, os, stat, sys

BLK = 1 << 20

def is_blk(path):
    return stat.S_ISBLK(os.stat(path).st_mode)

def size_of(fd):
    return os.lseek(fd, 0, os.SEEK_END)

def blocks(path):
    """Yield the content of PATH in 1 MiB pieces (O_DIRECT for devices)."""
    direct = is_blk(path)
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECT if direct else 0))
    try:
        size = size_of(fd)
        buf = mmap.mmap(-1, BLK)
        off = 0
        while off < size:
            n = os.preadv(fd, [buf], off)
            if n <= 0:
                raise OSError("short read at %d" % off)
            yield buf[:n]
            off += n
    finally:
        os.close(fd)

def md5(path):
    h = hashlib.md5()
    for b in blocks(path):
        h.update(b)
    print(h.hexdigest())

def cmp1(path, model):
    bad, first, total = 0, [], 0
    try:
        with open(model, "rb") as m:
            for b in blocks(path):
                mb = m.read(len(b))
                if b == mb:
                    total += len(b)
                    continue
                for i in range(0, len(b), 4096):
                    if b[i:i + 4096] != mb[i:i + 4096]:
                        bad += 1
                        if len(first) < 10:
                            first.append((total + i) // 4096)
                total += len(b)
            rest = len(m.read())
    except OSError as e:
        return "cannot read %s: %s" % (path, e)
    if rest:
        return "%s is %d bytes shorter than %s" % (path, rest, model)
    if bad:
        return ("%d of %d 4 KiB blocks differ; the first ones: %s"
                % (bad, total // 4096, first))
    return "same"

def cmp(pairs):
    rc = 0
    for i in range(0, len(pairs), 2):
        r = cmp1(pairs[i], pairs[i + 1])
        print(r, flush=True)
        if r != "same":
            rc = 1
    return rc

def open_rw(path, direct):
    return os.open(path, os.O_RDWR | (os.O_DIRECT if direct else 0))

def write(dev, model, ranges):
    dfd = open_rw(dev, True)
    bfd = open_rw(dev, False)
    mfd = os.open(model, os.O_RDWR)
    for done, r in enumerate(ranges):
        off, ln = (int(x) for x in r.split(":"))
        data = os.urandom(ln)
        try:
            if off % 512 == 0 and ln % 512 == 0:
                buf = mmap.mmap(-1, (ln + 4095) & ~4095)
                buf[:ln] = data
                with memoryview(buf) as mv:
                    n = os.pwritev(dfd, [mv[:ln]], off)
                buf.close()
            else:
                n = os.pwrite(bfd, data, off)
                os.fsync(bfd)
            if n != ln:
                raise OSError("short write: %d" % n)
        except OSError as e:
            print("write %s to %s failed after %d ranges: %s" % (r, dev, done, e),
                  file=sys.stderr)
            return 1
        os.pwrite(mfd, data, off)
    return 0

def sectors(dev, model, sec, n):
    dfd = open_rw(dev, True)
    mfd = os.open(model, os.O_RDWR)
    buf = mmap.mmap(-1, 4096)
    for s in range(sec, sec + n):
        data = os.urandom(512)
        buf[:512] = data
        try:
            with memoryview(buf) as mv:
                os.pwritev(dfd, [mv[:512]], s * 512)
        except OSError as e:
            print("write of sector %d to %s failed: %s" % (s, dev, e), file=sys.stderr)
            return 1
        os.pwrite(mfd, data, s * 512)
    return 0

def fill(dev, model):
    fd = open_rw(dev, True)
    size = size_of(fd)
    buf = mmap.mmap(-1, BLK)
    with open(model, "wb") as m:
        for off in range(0, size, BLK):
            data = os.urandom(min(BLK, size - off))
            buf[:len(data)] = data
            with memoryview(buf) as mv:
                os.pwritev(fd, [mv[:len(data)]], off)
            m.write(data)
    return 0

cmd, args = sys.argv[1], sys.argv[2:]
if cmd == "md5":
    md5(args[0]); rc = 0
elif cmd == "cmp":
    rc = cmp(args)
elif cmd == "write":
    rc = write(args[0], args[1], args[2:])
elif cmd == "sectors":
    rc = sectors(args[0], args[1], int(args[2]), int(args[3]))
elif cmd == "fill":
    rc = fill(args[0], args[1])
else:
    print("cowpy: unknown command " + cmd, file=sys.stderr); rc = 2
sys.exit(rc)
'

cowpy() {
	python3 -I -S -c "$_COWPY" "$@"
}

# dev_md5 DEV / file_md5 FILE: checksum of a whole device (O_DIRECT) or file.
dev_md5() {
	cowpy md5 "$1"
}

file_md5() {
	cowpy md5 "$1"
}

# save_dev DEV FILE: copy a device's content (O_DIRECT) to FILE.
save_dev() {
	dd if="$1" of="$2" bs=1M iflag=direct status=none
}

# expect_content DEV MODEL DESC [DEV MODEL DESC]...: each DEV reads back
# exactly its MODEL (whole device); one check per triple, one process.
expect_content() {
	local pairs=() descs=() lines out i rc=0
	while (($# >= 3)); do
		pairs+=("$1" "$2")
		descs+=("$3")
		shift 3
	done
	out=$(cowpy cmp "${pairs[@]}" 2>&1)
	mapfile -t lines <<<"$out"
	for i in "${!descs[@]}"; do
		if [[ ${lines[i]:-} == same ]]; then
			pass "${descs[i]}"
		else
			fail "${descs[i]}" || rc=1
			diag "${pairs[2 * i]} vs ${pairs[2 * i + 1]}: ${lines[i]:-}"
			((${#lines[@]} == ${#descs[@]})) || diag "$out"
		fi
	done
	return $rc
}

# --- writes that keep a model ------------------------------------------------

# Chunks touched by writes since track_reset, for the expected COW usage:
# TRACK holds the chunk numbers, TRACK_CHUNK the chunk size in bytes.
# shellcheck disable=SC2034 # read by the scenarios
declare -A TRACK=()
TRACK_CHUNK=0

# track_reset CHUNK_SECTORS: forget the touched chunks; count in CHUNK_SECTORS.
track_reset() {
	TRACK=()
	TRACK_CHUNK=$(($1 * 512))
}

# track_range OFF LEN: note the chunks [OFF, OFF+LEN) overlaps.
track_range() {
	local c
	((TRACK_CHUNK > 0)) || return 0
	for ((c = $1 / TRACK_CHUNK; c <= ($1 + $2 - 1) / TRACK_CHUNK; c++)); do
		TRACK[$c]=1
	done
}

# mw DEV MODEL OFF:LEN...: fresh random data to each byte range of DEV and
# MODEL (see cowpy write), tracking the chunks of the ranges written.
mw() {
	local dev=$1 model=$2 r rc
	shift 2
	cowpy write "$dev" "$model" "$@"
	rc=$?
	((rc == 0)) || return $rc
	for r in "$@"; do
		track_range "${r%:*}" "${r#*:}"
	done
}

# mw_sectors DEV MODEL SECTOR COUNT: COUNT one-sector O_DIRECT writes.
mw_sectors() {
	cowpy sectors "$@" || return
	track_range $(($3 * 512)) $(($4 * 512))
}

# random_ranges SIZE N MAXLEN: N "OFF:LEN" ranges of random sector-aligned
# offsets and random lengths of 1..MAXLEN bytes rounded up to sectors, all
# inside [0, SIZE).  Uses $RANDOM (seed it for reproducible runs).
random_ranges() {
	local size=$1 n=$2 maxlen=$3 i off len
	for ((i = 0; i < n; i++)); do
		len=$(((RANDOM * 32768 + RANDOM) % maxlen + 1))
		len=$(((len + 511) / 512 * 512))
		off=$(((RANDOM * 32768 + RANDOM) % ((size - len) / 512 + 1) * 512))
		echo "$off:$len"
	done
}

# --- device-mapper plumbing --------------------------------------------------

# origin_create NAME DEV: a snapshot-origin over DEV.
origin_create() {
	dmsetup create "$1" --table "0 $(blockdev --getsz "$2") snapshot-origin $2"
}

# snap_create NAME ORIGIN_NAME TABLE_ARGS...: a snapshot created the way LVM
# does it (the origin suspended meanwhile, so that the origin's resume sees
# the new chunk size).  TABLE_ARGS: "<origin dev> <cow dev> P|PO|N <chunk>".
snap_create() {
	local name=$1 oname=$2 rc=0
	shift 2
	dmsetup suspend "$oname" || return
	dmsetup create "$name" --table "0 $(blockdev --getsz "$1") snapshot $*" || rc=$?
	dmsetup resume "$oname" || return
	return $rc
}

# snap_remove NAME ORIGIN_NAME: remove a snapshot with its origin suspended.
snap_remove() {
	local rc=0
	dmsetup suspend "$2" || return
	dmsetup remove "$1" || rc=$?
	dmsetup resume "$2" || return
	return $rc
}

# snap_status NAME: the snapshot's status after "<start> <len> snapshot ".
snap_status() {
	local s
	s=$(dmsetup status "$1") || return
	echo "${s#* * * }"
}

# table_chunk NAME: the chunk size in the snapshot's table line.
table_chunk() {
	local t
	t=$(dmsetup table "$1") || return
	read -r -a t <<<"$t"
	echo "${t[6]}"
}

# expected_usage P|N CHUNK_SECTORS EXCEPTIONS COW_SECTORS: the status line
# a store with EXCEPTIONS exceptions allocated in order must report.
# Persistent: chunk 0 is the header, then metadata areas of CHUNK*512/16
# exceptions, each followed by its data chunks; allocated counts all chunks
# up to the next free one, metadata the header plus every area started.
expected_usage() {
	local type=$1 chunk=$2 e=$3 total=$4 epa areas
	if [[ $type == N ]]; then
		echo "$((e * chunk))/$total 0"
		return
	fi
	epa=$((chunk * 512 / 16))
	areas=$((e / epa + 1))
	echo "$(((1 + areas + e) * chunk))/$total $(((1 + areas) * chunk))"
}

# kmsg_has TEXT: the kernel log contains TEXT (fixed string).
kmsg_has() {
	dmesg | grep -qF -- "$1"
}

# expect_kmsg TEXT DESC
expect_kmsg() {
	if kmsg_has "$1"; then
		pass "$2"
	else
		fail "$2"
		diag "kernel log lacks: $1" "last lines:" "$(dmesg | tail -n 15)"
		return 1
	fi
}

# read_fails DEV: reading DEV with O_DIRECT fails (e.g. an invalid snapshot).
read_fails() {
	! dd if="$1" of=/dev/null bs=4k count=1 iflag=direct status=none 2>/dev/null
}

# rand_file FILE BYTES: fresh random data.
rand_file() {
	head -c "$2" /dev/urandom >"$1"
}

# check_as DESC CMD...: check, reported under DESC rather than the command
# line (which for mw can be long).  CMD runs in the current shell, so that
# mw's chunk tracking is kept.
check_as() {
	local desc=$1 rc
	shift
	"$@" >/tmp/check_as.out 2>&1
	rc=$?
	if ((rc == 0)); then
		pass "$desc"
	else
		fail "$desc (exit $rc)"
		diag "$*" "$(cat /tmp/check_as.out)"
		return 1
	fi
}
