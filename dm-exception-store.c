// SPDX-License-Identifier: GPL-2.0
/*
 * dm-exception-store.c - kernel services for the C++ core: memory, logging,
 * dm-io, dm-kcopyd, locks, work items and waiters.  Adapters only: every
 * decision is made in snapcore/.
 */
#include <linux/blkdev.h>
#include <linux/cpumask.h>
#include <linux/delay.h>
#include <linux/device-mapper.h>
#include <linux/dm-io.h>
#include <linux/dm-kcopyd.h>
#include <linux/kernel.h>
#include <linux/mempool.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/printk.h>
#include <linux/rwsem.h>
#include <linux/slab.h>
#include <linux/smp.h>
#include <linux/spinlock.h>
#include <linux/wait.h>
#include <linux/workqueue.h>

#include "dm-exception-store.h"
#include "dm-snap.h"

#define DM_MSG_PREFIX "snapshots"

/* As in-tree dm-snap.c: the parameter that throttles copy-on-write. */
DECLARE_DM_KCOPYD_THROTTLE_WITH_MODULE_PARM(snapshot_copy_throttle,
		"A percentage of time allocated for copy on write");

/* kvzalloc: small objects from the slab, large tables from vmalloc. */
void *dms_zalloc(dms_size_t size)
{
	return kvzalloc(size, GFP_KERNEL);
}

/* kvmalloc honours GFP_NOIO for its vmalloc fallback too (since 5.17). */
void *dms_zalloc_noio(dms_size_t size)
{
	return kvzalloc(size, GFP_NOIO);
}

void dms_free(void *p)
{
	kvfree(p);
}

void dms_log(int level, const char *fmt, ...)
{
	struct va_format vaf;
	va_list args;

	va_start(args, fmt);
	vaf.fmt = fmt;
	vaf.va = &args;
	switch (level) {
	case DMS_LOG_ERR:
		DMERR("%pV", &vaf);
		break;
	case DMS_LOG_WARN:
		DMWARN("%pV", &vaf);
		break;
	case DMS_LOG_INFO:
		DMINFO("%pV", &vaf);
		break;
	default:
		DMDEBUG("%pV", &vaf);
		break;
	}
	va_end(args);
}

/* ---------------------------------------------------------------- */
/* Module-wide resources                                             */
/* ---------------------------------------------------------------- */

/* One dm-io client for the module: its mempools serve every COW device. */
static struct dm_io_client *io_client;
/*
 * Run dms_work items and the deferred dm-io completions: dms_wq on the CPU
 * that queues (dms_work_queue) or on a chosen one (dms_work_queue_on),
 * dms_wq_unbound on any (dms_work_queue_away).
 */
static struct workqueue_struct *dms_wq;
static struct workqueue_struct *dms_wq_unbound;
/* One kcopyd client, throttled by snapshot_copy_throttle. */
static struct dm_kcopyd_client *kcopyd_client;
/* dms_copy() contexts: a mempool, because dms_copy() cannot fail. */
static mempool_t *copy_job_pool;
#define DMS_COPY_JOB_POOL_SIZE 16

struct dms_copy_job {
	dms_copy_done_fn fn;
	void *ctx;
};

/*
 * Created in this order so that teardown, in reverse, is safe: kcopyd
 * callbacks may queue work and free copy contexts, so the kcopyd client
 * goes first (it waits for its jobs); destroying the work queue then runs
 * what is still queued, including deferred dm-io completions; the dm-io
 * client goes last.
 */
int dms_services_init(void)
{
	int r;

	io_client = dm_io_client_create();
	if (IS_ERR(io_client)) {
		r = PTR_ERR(io_client);
		goto bad_io_client;
	}

	copy_job_pool = mempool_create_kmalloc_pool(DMS_COPY_JOB_POOL_SIZE,
						    sizeof(struct dms_copy_job));
	if (!copy_job_pool) {
		r = -ENOMEM;
		goto bad_copy_job_pool;
	}

	dms_wq = alloc_workqueue("kdmsnapd", WQ_MEM_RECLAIM, 0);
	if (!dms_wq) {
		r = -ENOMEM;
		goto bad_wq;
	}
	dms_wq_unbound = alloc_workqueue("kdmsnapd_u", WQ_MEM_RECLAIM | WQ_UNBOUND, 0);
	if (!dms_wq_unbound) {
		r = -ENOMEM;
		goto bad_wq_unbound;
	}

	kcopyd_client = dm_kcopyd_client_create(&dm_kcopyd_throttle);
	if (IS_ERR(kcopyd_client)) {
		r = PTR_ERR(kcopyd_client);
		goto bad_kcopyd_client;
	}
	return 0;

bad_kcopyd_client:
	kcopyd_client = NULL;
	destroy_workqueue(dms_wq_unbound);
bad_wq_unbound:
	dms_wq_unbound = NULL;
	destroy_workqueue(dms_wq);
bad_wq:
	dms_wq = NULL;
	mempool_destroy(copy_job_pool);
bad_copy_job_pool:
	copy_job_pool = NULL;
	dm_io_client_destroy(io_client);
bad_io_client:
	io_client = NULL;
	return r;
}

void dms_services_exit(void)
{
	dm_kcopyd_client_destroy(kcopyd_client);
	destroy_workqueue(dms_wq_unbound);
	destroy_workqueue(dms_wq);
	mempool_destroy(copy_job_pool);
	dm_io_client_destroy(io_client);
}

/* ---------------------------------------------------------------- */
/* Devices                                                           */
/* ---------------------------------------------------------------- */

/*
 * A held device, whoever opened it: dm_get_device() for the targets, the
 * KUnit module for its test devices.
 */
static inline struct block_device *dms_bdev(struct dms_dev *dev)
{
	return ((struct dm_dev *)dev)->bdev;
}

dms_devt_t dms_dev_devt(struct dms_dev *dev)
{
	return dms_bdev(dev)->bd_dev;
}

const char *dms_dev_name(struct dms_dev *dev)
{
	return ((struct dm_dev *)dev)->name;
}

unsigned int dms_dev_logical_block_size(struct dms_dev *dev)
{
	return bdev_logical_block_size(dms_bdev(dev));
}

dms_sector_t dms_dev_size(struct dms_dev *dev)
{
	return bdev_nr_sectors(dms_bdev(dev));
}

/* ---------------------------------------------------------------- */
/* dm-io                                                             */
/* ---------------------------------------------------------------- */

static void dms_io_request(struct dm_io_request *req, unsigned int flags, void *buf)
{
	req->bi_opf = (flags & DMS_IO_WRITE) ? REQ_OP_WRITE | REQ_SYNC : REQ_OP_READ;
	if (flags & DMS_IO_FLUSH)
		req->bi_opf |= REQ_PREFLUSH;
	if (flags & DMS_IO_FUA)
		req->bi_opf |= REQ_FUA;
	/* dm-io flushes/invalidates vmalloc aliases itself for DM_IO_VMA. */
	if (is_vmalloc_addr(buf)) {
		req->mem.type = DM_IO_VMA;
		req->mem.ptr.vma = buf;
	} else {
		req->mem.type = DM_IO_KMEM;
		req->mem.ptr.addr = buf;
	}
	req->client = io_client;
}

/*
 * Synchronous: sleeps until the I/O completes.  Callers are constructors
 * and work items, never a bio submission context (submit_bio recursion).
 */
int dms_dev_io_sync(struct dms_dev *dev, unsigned int flags, dms_sector_t sector,
		    dms_sector_t count, void *buf)
{
	struct dm_io_region where = {
		.bdev = dms_bdev(dev),
		.sector = sector,
		.count = count,
	};
	struct dm_io_request req = {};

	dms_io_request(&req, flags, buf);
	return dm_io(&req, 1, &where, NULL, IOPRIO_DEFAULT);
}

int dms_dev_flush(struct dms_dev *dev)
{
	return blkdev_issue_flush(dms_bdev(dev));
}

struct dms_async_io {
	struct work_struct work;
	dms_io_done_fn fn;
	void *ctx;
	int error;
	bool atomic;	/* DMS_IO_DONE_ATOMIC: fn runs in notify */
};

static void dms_async_io_work(struct work_struct *work)
{
	struct dms_async_io *io = container_of(work, struct dms_async_io, work);
	dms_io_done_fn fn = io->fn;
	void *ctx = io->ctx;
	int error = io->error;

	/* Freed first: fn may end whatever the I/O belonged to. */
	kfree(io);
	fn(ctx, error);
}

/*
 * dm-io calls this from bio completion, which may be hard or soft interrupt
 * context; the ABI promises process context, so hop to the work queue.
 * error is a bitmask of failed regions: there is only one.
 */
static void dms_async_io_notify(unsigned long error, void *context)
{
	struct dms_async_io *io = context;
	dms_io_done_fn fn = io->fn;
	void *ctx = io->ctx;

	if (io->atomic) {
		kfree(io);
		fn(ctx, error ? -EIO : 0);
		return;
	}
	io->error = error ? -EIO : 0;
	queue_work(dms_wq, &io->work);
}

int dms_dev_io_async(struct dms_dev *dev, unsigned int flags, dms_sector_t sector,
		     dms_sector_t count, void *buf, dms_io_done_fn fn, void *ctx)
{
	struct dm_io_region where = {
		.bdev = dms_bdev(dev),
		.sector = sector,
		.count = count,
	};
	struct dm_io_request req = {};
	struct dms_async_io *io;
	int r;

	/* Allocated before the I/O starts, so completion cannot fail. */
	io = kmalloc(sizeof(*io), GFP_NOIO);
	if (!io)
		return -ENOMEM;
	INIT_WORK(&io->work, dms_async_io_work);
	io->fn = fn;
	io->ctx = ctx;
	io->atomic = flags & DMS_IO_DONE_ATOMIC;

	dms_io_request(&req, flags, buf);
	req.notify.fn = dms_async_io_notify;
	req.notify.context = io;
	/*
	 * With a single region dm_io() fails only before dispatch (bad memory
	 * type), and then it has not called notify.
	 */
	r = dm_io(&req, 1, &where, NULL, IOPRIO_DEFAULT);
	if (r)
		kfree(io);
	return r;
}

/* ---------------------------------------------------------------- */
/* dm-kcopyd                                                         */
/* ---------------------------------------------------------------- */

/*
 * kcopyd runs its notify functions from its own work queue.  The context
 * goes back to the pool before fn runs, so a caller waiting in dms_copy()
 * for a free context is never waiting on itself.
 */
static void dms_copy_notify(int read_err, unsigned long write_err, void *context)
{
	struct dms_copy_job job = *(struct dms_copy_job *)context;

	mempool_free(context, copy_job_pool);
	job.fn(job.ctx, read_err, write_err);
}

void dms_copy(struct dms_dev *src, dms_sector_t src_sector, dms_sector_t count,
	      const struct dms_copy_dest *dests, unsigned int ndest,
	      dms_copy_done_fn fn, void *ctx)
{
	struct dm_io_region from = {
		.bdev = dms_bdev(src),
		.sector = src_sector,
		.count = count,
	};
	struct dm_io_region to[DMS_COPY_MAX_DESTS];
	struct dms_copy_job *job;
	unsigned int i;

	BUILD_BUG_ON(DMS_COPY_MAX_DESTS > DM_KCOPYD_MAX_REGIONS);
	BUILD_BUG_ON(DMS_COPY_MAX_DESTS > BITS_PER_LONG);

	/*
	 * kcopyd takes one context pointer; the ABI passes two words.  A
	 * mempool allocation that may sleep never fails, as dms_copy() must
	 * not: contexts return to the pool as copies complete.
	 */
	job = mempool_alloc(copy_job_pool, GFP_NOIO);
	job->fn = fn;
	job->ctx = ctx;

	/* A core bug; fail the copy through the normal completion path. */
	if (WARN_ON_ONCE(!ndest || ndest > DMS_COPY_MAX_DESTS)) {
		dm_kcopyd_do_callback(dm_kcopyd_prepare_callback(kcopyd_client,
								  dms_copy_notify, job),
				      1, 0);
		return;
	}

	for (i = 0; i < ndest; i++) {
		to[i].bdev = dms_bdev(dests[i].dev);
		to[i].sector = dests[i].sector;
		to[i].count = count;
	}
	dm_kcopyd_copy(kcopyd_client, &from, ndest, to, 0, dms_copy_notify, job);
}

void dms_zero(struct dms_dev *dev, dms_sector_t sector, dms_sector_t count,
	      dms_copy_done_fn fn, void *ctx)
{
	struct dm_io_region dest = {
		.bdev = dms_bdev(dev),
		.sector = sector,
		.count = count,
	};
	struct dms_copy_job *job = mempool_alloc(copy_job_pool, GFP_NOIO);

	job->fn = fn;
	job->ctx = ctx;
	dm_kcopyd_zero(kcopyd_client, 1, &dest, 0, dms_copy_notify, job);
}

/* ---------------------------------------------------------------- */
/* Locks                                                             */
/* ---------------------------------------------------------------- */

/*
 * Spinlocks get the lockdep class the core names (one key per class, not
 * one per init site), so a stripe lock and the allocation lock nested in
 * it are two classes.  All dms_rwsems share one class.
 */
struct dms_spinlock {
	spinlock_t lock;
};

static struct lock_class_key spinlock_keys[DMS_LOCK_CLASSES];

struct dms_spinlock *dms_spinlock_create(unsigned int lock_class)
{
	struct dms_spinlock *l;

	if (WARN_ON_ONCE(lock_class >= DMS_LOCK_CLASSES))
		return NULL;
	l = kmalloc(sizeof(*l), GFP_KERNEL);
	if (l) {
		spin_lock_init(&l->lock);
		lockdep_set_class(&l->lock, &spinlock_keys[lock_class]);
	}
	return l;
}

void dms_spinlock_destroy(struct dms_spinlock *l)
{
	kfree(l);
}

void dms_spin_lock(struct dms_spinlock *l)
{
	spin_lock(&l->lock);
}

void dms_spin_unlock(struct dms_spinlock *l)
{
	spin_unlock(&l->lock);
}

void dms_spin_lock_irqsave(struct dms_spinlock *l, unsigned long *flags)
{
	spin_lock_irqsave(&l->lock, *flags);
}

void dms_spin_unlock_irqrestore(struct dms_spinlock *l, unsigned long flags)
{
	spin_unlock_irqrestore(&l->lock, flags);
}

struct dms_rwsem {
	struct rw_semaphore sem;
};

struct dms_rwsem *dms_rwsem_create(void)
{
	struct dms_rwsem *l = kmalloc(sizeof(*l), GFP_KERNEL);

	if (l)
		init_rwsem(&l->sem);
	return l;
}

void dms_rwsem_destroy(struct dms_rwsem *l)
{
	if (l)
		WARN_ON_ONCE(rwsem_is_locked(&l->sem));
	kfree(l);
}

void dms_down_read(struct dms_rwsem *l)
{
	down_read(&l->sem);
}

void dms_up_read(struct dms_rwsem *l)
{
	up_read(&l->sem);
}

void dms_down_write(struct dms_rwsem *l)
{
	down_write(&l->sem);
}

void dms_up_write(struct dms_rwsem *l)
{
	up_write(&l->sem);
}

/* ---------------------------------------------------------------- */
/* Work items and waiters                                            */
/* ---------------------------------------------------------------- */

struct dms_work {
	struct work_struct work;
	dms_work_fn fn;
	void *ctx;
};

static void dms_work_run(struct work_struct *work)
{
	struct dms_work *w = container_of(work, struct dms_work, work);

	w->fn(w->ctx);
}

struct dms_work *dms_work_create(dms_work_fn fn, void *ctx)
{
	struct dms_work *w = kmalloc(sizeof(*w), GFP_KERNEL);

	if (!w)
		return NULL;
	INIT_WORK(&w->work, dms_work_run);
	w->fn = fn;
	w->ctx = ctx;
	return w;
}

/* cancel_work_sync() also stops a work item that requeues itself. */
void dms_work_destroy(struct dms_work *w)
{
	if (!w)
		return;
	cancel_work_sync(&w->work);
	kfree(w);
}

void dms_work_queue(struct dms_work *w)
{
	queue_work(dms_wq, &w->work);
}

void dms_work_queue_away(struct dms_work *w)
{
	queue_work(dms_wq_unbound, &w->work);
}

/* queue_work_on() runs the item elsewhere if cpu goes offline meanwhile. */
int dms_work_queue_on(struct dms_work *w, int cpu)
{
	if (cpu < 0 || cpu >= nr_cpu_ids || !cpu_online(cpu))
		return 0;
	queue_work_on(cpu, dms_wq, &w->work);
	return 1;
}

int dms_current_cpu(void)
{
	return raw_smp_processor_id();
}

struct dms_waiter {
	wait_queue_head_t wq;
};

struct dms_waiter *dms_waiter_create(void)
{
	struct dms_waiter *w = kmalloc(sizeof(*w), GFP_KERNEL);

	if (w)
		init_waitqueue_head(&w->wq);
	return w;
}

/* The lock: a waker in dms_waiter_wake_after() is out before w goes. */
void dms_waiter_destroy(struct dms_waiter *w)
{
	if (!w)
		return;
	spin_lock_irq(&w->wq.lock);
	WARN_ON_ONCE(waitqueue_active(&w->wq));
	spin_unlock_irq(&w->wq.lock);
	kfree(w);
}

/*
 * wait_event() re-checks cond after queuing itself, and wake_up_all()
 * takes the queue lock: a wake after the condition became true is never
 * lost.
 */
void dms_waiter_wait(struct dms_waiter *w, dms_cond_fn cond, void *ctx)
{
	wait_event(w->wq, cond(ctx));
}

void dms_waiter_wake(struct dms_waiter *w)
{
	wake_up_all(&w->wq);
}

void dms_waiter_wake_after(struct dms_waiter *w, dms_update_fn fn, void *ctx)
{
	unsigned long flags;

	spin_lock_irqsave(&w->wq.lock, flags);
	fn(ctx);
	wake_up_all_locked(&w->wq);
	spin_unlock_irqrestore(&w->wq.lock, flags);
}

void dms_msleep(unsigned int ms)
{
	msleep(ms);
}

/*
 * Held completions: bios kept on a callback of the task's block plug,
 * which the block layer runs at blk_finish_plug(), or before the task
 * sleeps (from_schedule), the way md keeps its plugged writes.  Only in
 * task context: an interrupt must not touch the interrupted task's plug.
 */
struct dms_held_bios {
	struct blk_plug_cb cb;
	struct bio_list bios;
};

static void dms_held_unplug(struct blk_plug_cb *cb, bool from_schedule)
{
	struct dms_held_bios *held = container_of(cb, struct dms_held_bios, cb);
	struct bio *bio;

	/* Ending a bio never sleeps, so this is safe inside schedule() too. */
	while ((bio = bio_list_pop(&held->bios)))
		bio_endio(bio);
	kfree(held);
}

void dms_end_bio_or_hold(struct bio *bio)
{
	struct blk_plug_cb *cb;

	if (in_task() && current->plug) {
		/* Found, or made (zeroed: an empty list) with GFP_ATOMIC. */
		cb = blk_check_plugged(dms_held_unplug, NULL, sizeof(struct dms_held_bios));
		if (cb) {
			bio_list_add(&container_of(cb, struct dms_held_bios, cb)->bios, bio);
			return;
		}
	}
	bio_endio(bio);
}

void dms_run_plugged(void (*fn)(void *ctx), void *ctx)
{
	struct blk_plug plug;

	blk_start_plug(&plug);
	fn(ctx);
	blk_finish_plug(&plug);
}
