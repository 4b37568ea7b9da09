/* SPDX-License-Identifier: GPL-2.0 */
/*
 * dm-snap.h - the plain-C ABI between the kernel shims and the C++ core.
 *
 * Two directions cross this line:
 *
 *   kernel services  (dms_*)       implemented by the C shims dm-snap.c and
 *                                  dm-exception-store.c in the kernel, and by
 *                                  tests/host/fake_kernel.cpp on the host;
 *   core entry points (dmscore_*)  implemented by the C++ core in snapcore/,
 *                                  called by the shims.
 *
 * Rules: no kernel header, no libc header, only builtin types, so the same
 * declarations mean the same thing to gcc in the kernel, g++ in the kernel
 * and g++ on the host.  Handles are opaque pointers; the side that creates a
 * handle is the only side that looks inside it.  Strings passed to
 * dms_target_set_error() must have static storage: device-mapper prints
 * them after the constructor has returned.
 */
#ifndef DM_SNAP_ABI_H
#define DM_SNAP_ABI_H

#ifdef __cplusplus
extern "C" {
#endif

typedef unsigned long long dms_sector_t;	/* 512-byte sectors */
typedef unsigned long long dms_devt_t;		/* encoded as the kernel's dev_t */
typedef __SIZE_TYPE__ dms_size_t;

#define DMS_SECTOR_SHIFT 9

/* Target versions: those of the in-tree 6.1 driver this module replaces. */
#define DMS_ORIGIN_VERSION_MAJOR 1
#define DMS_ORIGIN_VERSION_MINOR 9
#define DMS_ORIGIN_VERSION_PATCH 0
#define DMS_SNAPSHOT_VERSION_MAJOR 1
#define DMS_SNAPSHOT_VERSION_MINOR 16
#define DMS_SNAPSHOT_VERSION_PATCH 0
#define DMS_MERGE_VERSION_MAJOR 1
#define DMS_MERGE_VERSION_MINOR 5
#define DMS_MERGE_VERSION_PATCH 0

/* Errors are negative errno values, as in the kernel. */
#define DMS_ENOMEM 12
#define DMS_EINVAL 22
#define DMS_EIO 5
#define DMS_ENXIO 6
#define DMS_ENOSPC 28
#define DMS_EEXIST 17
#define DMS_EBUSY 16

/* ------------------------------------------------------------------ */
/* Kernel services used by the core                                    */
/* ------------------------------------------------------------------ */

/* Memory.  Zeroed, may sleep, may fail (returns 0). */
void *dms_zalloc(dms_size_t size);
/* The same without starting I/O to reclaim (GFP_NOIO): for the I/O path. */
void *dms_zalloc_noio(dms_size_t size);
void dms_free(void *p);

/* Log levels map to KERN_ERR, KERN_WARNING, KERN_INFO, KERN_DEBUG. */
enum dms_log_level {
	DMS_LOG_ERR = 3,
	DMS_LOG_WARN = 4,
	DMS_LOG_INFO = 6,
	DMS_LOG_DEBUG = 7,
};

/* printk-style, prefixed "device-mapper: snapshots: ". */
void dms_log(int level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* The dm_target being constructed, and the devices it holds. */
struct dms_target;
struct dms_dev;

enum dms_dev_mode {
	DMS_MODE_TABLE = 0,	/* the mode of the table being loaded */
	DMS_MODE_READ = 1,
	DMS_MODE_READ_WRITE = 2,
};

void dms_target_set_error(struct dms_target *ti, const char *static_msg);
int dms_target_get_device(struct dms_target *ti, const char *path,
			  int dms_dev_mode, struct dms_dev **out);
void dms_target_put_device(struct dms_target *ti, struct dms_dev *dev);
/* Length of the target in sectors. */
dms_sector_t dms_target_len(struct dms_target *ti);
/* Whether the target's mapped device is suspended (dm_suspended). */
int dms_target_suspended(struct dms_target *ti);

/* dev_t a table argument names ("maj:min" or a path), 0 if none. */
dms_devt_t dms_lookup_devt(const char *path);
dms_devt_t dms_dev_devt(struct dms_dev *dev);
/* "maj:min", valid while the device is held. */
const char *dms_dev_name(struct dms_dev *dev);
unsigned int dms_dev_logical_block_size(struct dms_dev *dev);
/* Current size; read live, never cached (lvextend grows COW devices). */
dms_sector_t dms_dev_size(struct dms_dev *dev);

/* Synchronous I/O on a held device through dm-io; buf from dms_zalloc(). */
enum dms_io_flags {
	DMS_IO_READ = 0,
	DMS_IO_WRITE = 1,
	DMS_IO_FLUSH = 2,	/* REQ_PREFLUSH: earlier writes are durable first */
	DMS_IO_FUA = 4,		/* REQ_FUA: this write is durable on completion */
	DMS_IO_DONE_ATOMIC = 8,	/* dms_dev_io_async() only: see there */
};
int dms_dev_io_sync(struct dms_dev *dev, unsigned int dms_io_flags,
		    dms_sector_t sector, dms_sector_t count, void *buf);

/*
 * Makes every completed write to dev durable (an empty REQ_PREFLUSH, as
 * blkdev_issue_flush).  Sleeps.  0 or -errno.
 */
int dms_dev_flush(struct dms_dev *dev);

/*
 * Asynchronous I/O on a held device through dm-io; buf from dms_zalloc(),
 * untouched until fn runs.  fn(ctx, error) runs in process context, on the
 * module's work queue, when the I/O is done; error is 0 or -EIO (dm-io
 * reports only which regions failed).  With DMS_IO_DONE_ATOMIC in the
 * flags, fn runs instead where dm-io completes the request: possibly in
 * interrupt context, possibly before dms_dev_io_async() returns (a
 * ramdisk completes in submission); such an fn must not sleep and may only
 * record the result and wake (dms_waiter_wake_after).  That saves a work
 * item and a context switch per I/O.  May sleep: it allocates with
 * GFP_NOIO and dm-io waits on its mempools, so call it from process
 * context without a spinlock held.  Returns 0, or -ENOMEM (or another
 * -errno) if the request cannot be started, in which case fn is not
 * called.
 */
typedef void (*dms_io_done_fn)(void *ctx, int error);
int dms_dev_io_async(struct dms_dev *dev, unsigned int dms_io_flags,
		     dms_sector_t sector, dms_sector_t count, void *buf,
		     dms_io_done_fn fn, void *ctx);

/*
 * Copies through dm-kcopyd (one module-wide client, throttled by the
 * snapshot_copy_throttle parameter): `count` sectors from src at src_sector
 * to each of the ndest destinations (1 to DMS_COPY_MAX_DESTS): the source
 * is read once.  Cannot fail to start.  fn(ctx, read_error,
 * write_error_mask) runs in process context (kcopyd's work queue) when the
 * copy is over: read_error is 1 if reading the source failed, and then no
 * destination was written and the mask is 0; otherwise bit i of
 * write_error_mask is set when writing destination i failed.  May sleep
 * (GFP_NOIO mempool allocations): process context, no spinlock held.
 * Throttling delays the copy, not the caller.
 */
#define DMS_COPY_MAX_DESTS 8
struct dms_copy_dest {
	struct dms_dev *dev;
	dms_sector_t sector;
};
typedef void (*dms_copy_done_fn)(void *ctx, int read_error,
				 unsigned long write_error_mask);
void dms_copy(struct dms_dev *src, dms_sector_t src_sector, dms_sector_t count,
	      const struct dms_copy_dest *dests, unsigned int ndest,
	      dms_copy_done_fn fn, void *ctx);

/* Writes zeros through dm-kcopyd; completes like dms_copy (read_error 0). */
void dms_zero(struct dms_dev *dev, dms_sector_t sector, dms_sector_t count,
	      dms_copy_done_fn fn, void *ctx);

/*
 * Locks.  Sizes vary with the kernel configuration (lockdep), so the shim
 * allocates them; the core holds pointers.  create may sleep (GFP_KERNEL)
 * and returns 0 on failure; destroy accepts 0.  dms_spin_lock() is taken
 * with interrupts enabled and never from interrupt context; a lock also
 * taken in bio completion context (an interrupt, maybe) is always taken
 * with dms_spin_lock_irqsave(), and no other lock is taken while it is
 * held (lockdep: an irq-safe lock must not depend on an irq-unsafe one).
 * A class is taken one way or the other, never both.  Each spinlock
 * belongs to a lockdep class the core names, so that nesting locks of
 * different classes (a stripe, then the allocator) is not taken for
 * recursion; two locks of one class are never held together.
 */
enum dms_lock_class {
	DMS_LOCK_STRIPE = 0,	/* exception-table stripes */
	DMS_LOCK_ALLOC = 1,	/* COW allocation, nested in a stripe lock */
	DMS_LOCK_COMMIT = 2,	/* completed-copy queue (irqsave) */
	DMS_LOCK_MERGE = 3,	/* merging range and held writes, in a stripe lock */
	DMS_LOCK_START = 4,	/* copy jobs waiting for the start worker */
	DMS_LOCK_CLASSES = 5,
};
struct dms_spinlock;
struct dms_spinlock *dms_spinlock_create(unsigned int dms_lock_class);
void dms_spinlock_destroy(struct dms_spinlock *l);
void dms_spin_lock(struct dms_spinlock *l);
void dms_spin_unlock(struct dms_spinlock *l);
void dms_spin_lock_irqsave(struct dms_spinlock *l, unsigned long *flags);
void dms_spin_unlock_irqrestore(struct dms_spinlock *l, unsigned long flags);

struct dms_rwsem;	/* sleeping reader/writer lock */
struct dms_rwsem *dms_rwsem_create(void);
void dms_rwsem_destroy(struct dms_rwsem *l);
void dms_down_read(struct dms_rwsem *l);
void dms_up_read(struct dms_rwsem *l);
void dms_down_write(struct dms_rwsem *l);
void dms_up_write(struct dms_rwsem *l);

/*
 * Work items on the module's work queues (WQ_MEM_RECLAIM: metadata commits
 * must make progress under memory pressure).  create may sleep
 * (GFP_KERNEL) and returns 0 on failure.  dms_work_queue() runs the item
 * on the CPU that queues it (a bound queue: it runs when that CPU's
 * current work sleeps, in the same worker pool); dms_work_queue_away() on
 * any CPU (an unbound queue: it can overlap the queuing thread).  Queuing
 * an already queued item (not yet started) is a no-op; queuing a running
 * item runs it once more.  An item queued one way while it runs after
 * being queued the other way may run twice at once: the core serializes
 * such items itself.  dms_work_queue_on() runs it in the bound pool of the
 * given CPU, as if that CPU had queued it with dms_work_queue(), and
 * returns 1; it returns 0 and queues nothing if that CPU is not online (one
 * going offline meanwhile runs the item on another CPU).  All three never
 * sleep and may be called in any context.
 * destroy (cancel_work_sync) drops a queued instance that has not started,
 * waits for a running one to finish, and stops one that queues itself; it
 * sleeps, so never call it from the item's own fn.  destroy accepts 0.
 * dms_current_cpu() is the CPU the caller runs on, a hint only: the
 * caller may move at once.
 */
struct dms_work;
typedef void (*dms_work_fn)(void *ctx);
struct dms_work *dms_work_create(dms_work_fn fn, void *ctx);
void dms_work_destroy(struct dms_work *w);
void dms_work_queue(struct dms_work *w);
void dms_work_queue_away(struct dms_work *w);
int dms_work_queue_on(struct dms_work *w, int cpu);
int dms_current_cpu(void);

/*
 * Event counters: a sleeping wait for a condition the core re-checks.
 * dms_waiter_wait(w, cond, ctx) sleeps (uninterruptibly, as wait_event)
 * until cond(ctx) is true; cond runs in the waiter's context, possibly
 * several times.  Any thread that may have made it true calls
 * dms_waiter_wake(w), which wakes every waiter and never sleeps.  create
 * may sleep (GFP_KERNEL) and returns 0 on failure; destroy accepts 0 and
 * must not race with a waiter.
 */
struct dms_waiter;
typedef int (*dms_cond_fn)(void *ctx);
struct dms_waiter *dms_waiter_create(void);
void dms_waiter_destroy(struct dms_waiter *w);
void dms_waiter_wait(struct dms_waiter *w, dms_cond_fn cond, void *ctx);
void dms_waiter_wake(struct dms_waiter *w);
/*
 * For a waker whose waiter may free everything once the condition holds
 * (the waiter, and the object fn changes): runs fn(ctx) under the waiter's
 * lock with interrupts off, and wakes every waiter before dropping the
 * lock.  dms_waiter_destroy() takes that lock, so it cannot free w while
 * the waker is still inside; read w before fn makes the condition true.
 * Any context, never sleeps; fn must not sleep or take a lock.
 */
typedef void (*dms_update_fn)(void *ctx);
void dms_waiter_wake_after(struct dms_waiter *w, dms_update_fn fn, void *ctx);

/* Sleeps (msleep: at least ms milliseconds, uninterruptibly). */
void dms_msleep(unsigned int ms);

/*
 * Raise a device-mapper table event (dmeventd listens).  May sleep
 * (dm_table_event takes a mutex): process context, no spinlock held.
 */
void dms_target_event(struct dms_target *ti);

/*
 * Module parameters, read at each use: the current values.
 * snapshot_cow_threshold (default 2048; 0 is allowed, as in-tree).
 */
unsigned int dms_param_cow_threshold(void);
/* snapshot_merge_batch (default 64; the core clamps it to 1..64). */
unsigned int dms_param_merge_batch(void);

/*
 * Bios.  A bio handed to the core by a map call belongs to the core until
 * it is remapped and returned DMS_MAP_REMAPPED, or submitted/ended by the
 * core later.  Each bio carries per_bio_bytes (from the target setup) of
 * per-bio data the core owns while it holds the bio.
 */
struct dms_bio;

enum dms_bio_flags {
	DMS_BIO_WRITE = 1,	/* op_is_write(): also set for discards */
	DMS_BIO_FLUSH = 2,	/* REQ_PREFLUSH */
	DMS_BIO_FUA = 4,
	DMS_BIO_DISCARD = 8,
};

struct dms_bio_info {
	/*
	 * The sector as dm passes it.  Like the in-tree driver, the snapshot
	 * targets treat it as the device sector: their tables start at 0.
	 */
	dms_sector_t sector;
	unsigned int sectors;
	unsigned int flags;	/* dms_bio_flags */
};

/*
 * Only dms_bio_submit() and dms_bio_submit_hooked() may sleep (the block
 * layer may wait for a request); inside a map call they only queue the bio.
 */
void dms_bio_get_info(struct dms_bio *bio, struct dms_bio_info *out);
/*
 * The core's per-bio data: per_bio_bytes must be the value the core put in
 * its target setup.  8-byte aligned; not zeroed by dm.
 */
void *dms_bio_per_data(struct dms_bio *bio, unsigned int per_bio_bytes);
/*
 * Which of the copies of a flush or discard this is, when the target asked
 * for several (num_flush_bios/num_discard_bios > 1): 0, 1, ...
 */
unsigned int dms_bio_target_nr(struct dms_bio *bio);
/* Points the bio at dev, sector (absolute on dev). */
void dms_bio_remap(struct dms_bio *bio, struct dms_dev *dev, dms_sector_t sector);
/*
 * Keeps only the first `sectors` (at most the bio's); dm resubmits the
 * rest.  Map context only, and not for the copies dm sends when
 * num_flush_bios or num_discard_bios is above 1 (dm BUG()s).
 */
void dms_bio_accept_partial(struct dms_bio *bio, unsigned int sectors);
/* Sends a remapped bio the core held (submit_bio_noacct; process context). */
void dms_bio_submit(struct dms_bio *bio);
/*
 * Ends a bio with 0 or -errno (an errno the block layer does not know
 * becomes BLK_STS_IOERR).  A hooked bio gets its original completion back
 * first.  For the snapshot target, dm then calls its end_io, so
 * dmscore_snapshot_end_io() sees this bio too.
 */
void dms_bio_endio(struct dms_bio *bio, int error);
/*
 * Submits a remapped bio (submit_bio_noacct; process context); when its
 * I/O completes, calls fn(ctx, error) instead of ending it, in the bio's
 * completion context: any context, possibly an interrupt, possibly inside
 * the submission (fn must not sleep, and takes only irqsave locks).  The
 * core ends it later with dms_bio_endio(), not before fn has been called.
 */
void dms_bio_submit_hooked(struct dms_bio *bio, dms_io_done_fn fn, void *ctx);

/*
 * Held completions.  dms_run_plugged() runs fn(ctx) under a block plug
 * (blk_start_plug; nested, the outermost plug counts).  A bio that
 * dms_bio_submit_held() sent and that completes in the submitting task
 * itself (a ramdisk, any driver completing inside submit_bio), or that
 * dms_bio_endio_held() ends, in a task holding a plug, is not ended there
 * but when the plug is flushed: when fn returns, or before the task sleeps
 * (the block layer flushes a sleeping task's plug, so nothing waits on a
 * held bio).  Ended by an interrupt, or in a task without a plug, they end
 * at once, as with dms_bio_submit() and dms_bio_endio().
 *
 * Why: ending a bio wakes its submitter, and a woken writer preempts the
 * worker releasing a batch of bios at the worker's next might-sleep point
 * (every submit_bio_noacct is one), so without holding, the worker is
 * preempted once per bio of the batch instead of once after it.
 */
void dms_run_plugged(void (*fn)(void *ctx), void *ctx);
void dms_bio_submit_held(struct dms_bio *bio);
void dms_bio_endio_held(struct dms_bio *bio, int error);

enum dms_map_result {
	DMS_MAP_SUBMITTED = 0,	/* the core holds or ended the bio */
	DMS_MAP_REMAPPED = 1,	/* dm submits the remapped bio */
	DMS_MAP_KILL = 2,	/* dm ends the bio with an I/O error */
};

/* ------------------------------------------------------------------ */
/* Core entry points used by the shims                                 */
/* ------------------------------------------------------------------ */

struct dmscore_snapshot;
struct dmscore_origin;

enum dmscore_target_kind {
	DMSCORE_SNAPSHOT = 0,
	DMSCORE_SNAPSHOT_MERGE = 1,
};

/* What the shim must configure on the dm_target after a successful ctr. */
struct dmscore_target_setup {
	unsigned int num_flush_bios;
	unsigned int num_discard_bios;
	dms_sector_t max_io_len;	/* 0: no limit */
	unsigned int per_bio_bytes;	/* per-bio data the core needs */
};

/* Module load and unload: the core's global state (the origin registry). */
int dmscore_init(void);
void dmscore_exit(void);

enum dmscore_status_type {
	DMSCORE_STATUS_INFO = 0,
	DMSCORE_STATUS_TABLE = 1,
	DMSCORE_STATUS_IMA = 2,
};

int dmscore_snapshot_ctr(struct dms_target *ti, int dmscore_target_kind,
			 unsigned int argc, char **argv,
			 struct dmscore_target_setup *setup,
			 struct dmscore_snapshot **out);
void dmscore_snapshot_dtr(struct dmscore_snapshot *s);
/* Writes a NUL-terminated line of at most maxlen bytes (including NUL). */
void dmscore_snapshot_status(struct dmscore_snapshot *s, int type,
			     const char *target_name, char *result,
			     unsigned int maxlen);

/*
 * The devices the target maps onto, for dm's iterate_devices (queue limits,
 * flush/FUA support, device-size checks): calls fn(ctx, dev, start, len)
 * for each until one returns nonzero, and returns that value (0 if none).
 * In-tree: the origin over the target's length, then the whole COW device.
 */
typedef int (*dms_dev_iter_fn)(void *ctx, struct dms_dev *dev,
			       dms_sector_t start, dms_sector_t len);
int dmscore_snapshot_iterate_devices(struct dmscore_snapshot *s,
				     dms_dev_iter_fn fn, void *ctx);

/* Queue limits the target needs; 0 leaves a limit as dm stacked it. */
struct dmscore_io_hints {
	unsigned int discard_granularity_bytes;
	unsigned int max_discard_sectors;
};
void dmscore_snapshot_io_hints(struct dmscore_snapshot *s, struct dmscore_io_hints *out);

/* Returns a dms_map_result. */
int dmscore_snapshot_map(struct dmscore_snapshot *s, struct dms_bio *bio);
/*
 * Every bio of a snapshot or snapshot-merge target that ends (remapped, or ended by the
 * core with dms_bio_endio; not one the map killed) comes here first, in bio
 * completion context: possibly an interrupt, so no dms_* lock may be taken.
 */
void dmscore_snapshot_end_io(struct dmscore_snapshot *s, struct dms_bio *bio, int error);
/*
 * Before dm waits for the target's bios to drain: a snapshot-merge target
 * stops merging here (no merge I/O reaches the origin while suspended).
 */
void dmscore_snapshot_presuspend(struct dmscore_snapshot *s);
/* 0 or -errno: refuses resume (handover rules). */
int dmscore_snapshot_preresume(struct dmscore_snapshot *s);
void dmscore_snapshot_resume(struct dmscore_snapshot *s);
/* Returns after every copy and commit in flight has finished. */
void dmscore_snapshot_postsuspend(struct dmscore_snapshot *s);

int dmscore_origin_ctr(struct dms_target *ti, unsigned int argc, char **argv,
		       struct dmscore_target_setup *setup,
		       struct dmscore_origin **out);
void dmscore_origin_dtr(struct dmscore_origin *o);
void dmscore_origin_status(struct dmscore_origin *o, int type,
			   const char *target_name, char *result,
			   unsigned int maxlen);
/* The device an origin maps to (the shim remaps bios onto it). */
struct dms_dev *dmscore_origin_dev(struct dmscore_origin *o);
int dmscore_origin_map(struct dmscore_origin *o, struct dms_bio *bio);
void dmscore_origin_resume(struct dmscore_origin *o);
void dmscore_origin_postsuspend(struct dmscore_origin *o);

#ifdef __cplusplus
}
#endif

#endif /* DM_SNAP_ABI_H */
