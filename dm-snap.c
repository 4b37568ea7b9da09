// SPDX-License-Identifier: GPL-2.0
/*
 * dm-snap.c - device-mapper target registration and bio plumbing for the
 * snapshot-origin, snapshot and snapshot-merge targets.
 *
 * The constructors, status lines and every policy live in the C++ core
 * (snapcore/); this file turns dm_target callbacks into dmscore_* calls and
 * implements the dms_* target, bio and table services the core uses (the
 * rest are in dm-exception-store.c).
 * Kernel-version differences (6.1 and 6.12) are confined here and in
 * dm-exception-store.c.
 */
#include <linux/bio.h>
#include <linux/blkdev.h>
#include <linux/device-mapper.h>
#include <linux/module.h>
#include <linux/moduleparam.h>
#include <linux/version.h>

#include "dm-exception-store.h"
#include "dm-snap.h"

#define DM_MSG_PREFIX "snapshots"

/*
 * Maximum number of chunks being copied on write (in-tree default and
 * description).  The core reads it through dms_param_cow_threshold().
 */
#define DEFAULT_COW_THRESHOLD 2048

static unsigned int cow_threshold = DEFAULT_COW_THRESHOLD;
module_param_named(snapshot_cow_threshold, cow_threshold, uint, 0644);
MODULE_PARM_DESC(snapshot_cow_threshold, "Maximum number of chunks being copied on write");

/*
 * This module's own: how many runs of consecutive chunks one merge step
 * takes (1..64; 1 merges one run per metadata write, as in-tree).
 */
static unsigned int merge_batch = 64;
module_param_named(snapshot_merge_batch, merge_batch, uint, 0644);
MODULE_PARM_DESC(snapshot_merge_batch, "Runs of chunks merged per metadata write (1-64)");

/* ---------------------------------------------------------------- */
/* Target and table services                                         */
/* ---------------------------------------------------------------- */

static inline struct dm_target *to_ti(struct dms_target *t)
{
	return (struct dm_target *)t;
}

static inline struct dm_dev *to_dev(struct dms_dev *d)
{
	return (struct dm_dev *)d;
}

void dms_target_set_error(struct dms_target *ti, const char *static_msg)
{
	to_ti(ti)->error = (char *)static_msg;
}

#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 5, 0)
typedef blk_mode_t dms_kmode_t;
#define DMS_KMODE_READ BLK_OPEN_READ
#define DMS_KMODE_WRITE BLK_OPEN_WRITE
#else
typedef fmode_t dms_kmode_t;
#define DMS_KMODE_READ FMODE_READ
#define DMS_KMODE_WRITE FMODE_WRITE
#endif

int dms_target_get_device(struct dms_target *t, const char *path, int mode,
			  struct dms_dev **out)
{
	struct dm_target *ti = to_ti(t);
	struct dm_dev *dev;
	dms_kmode_t kmode;
	int r;

	switch (mode) {
	case DMS_MODE_READ:
		kmode = DMS_KMODE_READ;
		break;
	case DMS_MODE_READ_WRITE:
		kmode = DMS_KMODE_READ | DMS_KMODE_WRITE;
		break;
	default:
		kmode = dm_table_get_mode(ti->table);
		break;
	}
	r = dm_get_device(ti, path, kmode, &dev);
	if (r)
		return r;
	*out = (struct dms_dev *)dev;
	return 0;
}

void dms_target_put_device(struct dms_target *ti, struct dms_dev *dev)
{
	dm_put_device(to_ti(ti), to_dev(dev));
}

dms_sector_t dms_target_len(struct dms_target *ti)
{
	return to_ti(ti)->len;
}

int dms_target_suspended(struct dms_target *ti)
{
	return dm_suspended(to_ti(ti));
}

dms_devt_t dms_lookup_devt(const char *path)
{
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 5, 0)
	dev_t dev;

	if (dm_devt_from_path(path, &dev))
		return 0;
	return dev;
#else
	return dm_get_dev_t(path);
#endif
}

void dms_target_event(struct dms_target *ti)
{
	dm_table_event(to_ti(ti)->table);
}

/* Written through sysfs at any time: one plain read per use. */
unsigned int dms_param_cow_threshold(void)
{
	return READ_ONCE(cow_threshold);
}

unsigned int dms_param_merge_batch(void)
{
	return READ_ONCE(merge_batch);
}

/* ---------------------------------------------------------------- */
/* Bios                                                              */
/* ---------------------------------------------------------------- */

static inline struct bio *to_bio(struct dms_bio *b)
{
	return (struct bio *)b;
}

static inline struct dms_bio *to_dms_bio(struct bio *bio)
{
	return (struct dms_bio *)bio;
}

/*
 * The shim's own per-bio state, for dms_bio_submit_hooked(): what the bio
 * carried before the hook replaced its completion.
 */
struct dms_bio_hook {
	bio_end_io_t *end_io;
	void *private;
	dms_io_done_fn fn;
	void *ctx;
};

/*
 * Per-bio data layout: [core's part, rounded up to 8][struct dms_bio_hook].
 * dm places a target's per-bio data so that it ends where dm's own
 * per-clone structure begins (dm_per_bio_data() counts back from the bio,
 * dm_bio_from_per_bio_data() forward from the data), whatever the size.
 * So the hook, last, is found from the bio alone, which is all
 * dms_bio_submit_hooked() and dms_bio_endio() have; the core's part, first,
 * from the size the core passes to dms_bio_per_data().
 */
static_assert(sizeof(struct dms_bio_hook) % 8 == 0);

static size_t per_bio_data_size(unsigned int core_bytes)
{
	return round_up((size_t)core_bytes, 8) + sizeof(struct dms_bio_hook);
}

static struct dms_bio_hook *bio_hook(struct bio *bio)
{
	return dm_per_bio_data(bio, sizeof(struct dms_bio_hook));
}

void dms_bio_get_info(struct dms_bio *b, struct dms_bio_info *out)
{
	struct bio *bio = to_bio(b);

	out->sector = bio->bi_iter.bi_sector;
	out->sectors = bio_sectors(bio);
	out->flags = 0;
	if (op_is_write(bio_op(bio)))
		out->flags |= DMS_BIO_WRITE;
	if (bio->bi_opf & REQ_PREFLUSH)
		out->flags |= DMS_BIO_FLUSH;
	if (bio->bi_opf & REQ_FUA)
		out->flags |= DMS_BIO_FUA;
	if (bio_op(bio) == REQ_OP_DISCARD)
		out->flags |= DMS_BIO_DISCARD;
}

void *dms_bio_per_data(struct dms_bio *b, unsigned int per_bio_bytes)
{
	return dm_per_bio_data(to_bio(b), per_bio_data_size(per_bio_bytes));
}

unsigned int dms_bio_target_nr(struct dms_bio *b)
{
	return dm_bio_get_target_bio_nr(to_bio(b));
}

void dms_bio_remap(struct dms_bio *b, struct dms_dev *dev, dms_sector_t sector)
{
	struct bio *bio = to_bio(b);

	bio_set_dev(bio, to_dev(dev)->bdev);
	bio->bi_iter.bi_sector = sector;
}

void dms_bio_accept_partial(struct dms_bio *b, unsigned int sectors)
{
	dm_accept_partial_bio(to_bio(b), sectors);
}

void dms_bio_submit(struct dms_bio *b)
{
	submit_bio_noacct(to_bio(b));
}

/*
 * As in-tree full_bio_end_io(): report the completion and leave the bio
 * alone; it still belongs to the core, which ends it with dms_bio_endio()
 * (only after fn has run).  fn runs here, in the bio's completion context
 * (possibly an interrupt): the core only records the completion and queues
 * its commit work, which saves the work-queue hop in-tree makes through
 * kcopyd's thread.
 */
static void dms_bio_hooked_end_io(struct bio *bio)
{
	struct dms_bio_hook *hook = bio->bi_private;

	hook->fn(hook->ctx, blk_status_to_errno(bio->bi_status));
}

/* Puts end_io in the bio's place, keeping what it replaces in the hook. */
static struct dms_bio_hook *hook_completion(struct bio *bio, bio_end_io_t *end_io)
{
	struct dms_bio_hook *hook = bio_hook(bio);

	hook->end_io = bio->bi_end_io;
	hook->private = bio->bi_private;
	bio->bi_end_io = end_io;
	bio->bi_private = hook;
	return hook;
}

/* Gives the bio back the completion hook_completion() replaced. */
static void restore_completion(struct bio *bio)
{
	struct dms_bio_hook *hook = bio->bi_private;

	bio->bi_end_io = hook->end_io;
	bio->bi_private = hook->private;
}

/* As in-tree start_full_bio(). */
void dms_bio_submit_hooked(struct dms_bio *b, dms_io_done_fn fn, void *ctx)
{
	struct bio *bio = to_bio(b);
	struct dms_bio_hook *hook = hook_completion(bio, dms_bio_hooked_end_io);

	hook->fn = fn;
	hook->ctx = ctx;
	submit_bio_noacct(bio);
}

/*
 * A hooked bio gets its own completion back first (in-tree
 * pending_complete() does the same for full_bio), so that bio_endio()
 * reaches dm and the target's end_io.
 */
static struct bio *ready_to_end(struct dms_bio *b, int error)
{
	struct bio *bio = to_bio(b);

	if (bio->bi_end_io == dms_bio_hooked_end_io)
		restore_completion(bio);
	bio->bi_status = errno_to_blk_status(error);
	return bio;
}

void dms_bio_endio(struct dms_bio *b, int error)
{
	bio_endio(ready_to_end(b, error));
}

/*
 * A held bio's completion: its own comes back first, as in dms_bio_endio(),
 * then it ends now or when the submitting task's plug is flushed.
 */
static void dms_bio_held_end_io(struct bio *bio)
{
	restore_completion(bio);
	dms_end_bio_or_hold(bio);
}

void dms_bio_submit_held(struct dms_bio *b)
{
	struct bio *bio = to_bio(b);

	hook_completion(bio, dms_bio_held_end_io);
	submit_bio_noacct(bio);
}

void dms_bio_endio_held(struct dms_bio *b, int error)
{
	dms_end_bio_or_hold(ready_to_end(b, error));
}

static int map_result(int r)
{
	switch (r) {
	case DMS_MAP_SUBMITTED:
		return DM_MAPIO_SUBMITTED;
	case DMS_MAP_REMAPPED:
		return DM_MAPIO_REMAPPED;
	case DMS_MAP_KILL:
		return DM_MAPIO_KILL;
	default:
		/* A core bug: failing the bio is the only safe outcome. */
		WARN_ONCE(1, "dm-snapshot: invalid map result %d", r);
		return DM_MAPIO_KILL;
	}
}

/* ---------------------------------------------------------------- */
/* Targets                                                           */
/* ---------------------------------------------------------------- */

static int apply_setup(struct dm_target *ti, const struct dmscore_target_setup *setup)
{
	ti->num_flush_bios = setup->num_flush_bios;
	ti->num_discard_bios = setup->num_discard_bios;
	/* Exactly this size: dm_per_bio_data() depends on it. */
	ti->per_io_data_size = per_bio_data_size(setup->per_bio_bytes);
	if (setup->max_io_len)
		return dm_set_target_max_io_len(ti, setup->max_io_len);
	return 0;
}

static int snapshot_ctr_kind(struct dm_target *ti, unsigned int argc, char **argv,
			     int kind)
{
	struct dmscore_target_setup setup = {};
	struct dmscore_snapshot *s;
	int r;

	r = dmscore_snapshot_ctr((struct dms_target *)ti, kind, argc, argv, &setup, &s);
	if (r)
		return r;
	r = apply_setup(ti, &setup);
	if (r) {
		dmscore_snapshot_dtr(s);
		return r;
	}
	ti->private = s;
	return 0;
}

static int snapshot_ctr(struct dm_target *ti, unsigned int argc, char **argv)
{
	return snapshot_ctr_kind(ti, argc, argv, DMSCORE_SNAPSHOT);
}

static int merge_ctr(struct dm_target *ti, unsigned int argc, char **argv)
{
	return snapshot_ctr_kind(ti, argc, argv, DMSCORE_SNAPSHOT_MERGE);
}

static void snapshot_dtr(struct dm_target *ti)
{
	dmscore_snapshot_dtr(ti->private);
}

static int snapshot_map(struct dm_target *ti, struct bio *bio)
{
	return map_result(dmscore_snapshot_map(ti->private, to_dms_bio(bio)));
}

/*
 * dm calls this for every clone that ends, whether dm submitted it
 * (DM_MAPIO_REMAPPED) or the core ended it with dms_bio_endio(); not for
 * DM_MAPIO_KILL.
 */
static int snapshot_end_io(struct dm_target *ti, struct bio *bio, blk_status_t *error)
{
	dmscore_snapshot_end_io(ti->private, to_dms_bio(bio), blk_status_to_errno(*error));
	return DM_ENDIO_DONE;
}

/* The core names the devices and ranges; this adapts the callback. */
struct iterate_ctx {
	struct dm_target *ti;
	iterate_devices_callout_fn fn;
	void *data;
};

static int iterate_one(void *c, struct dms_dev *dev, dms_sector_t start, dms_sector_t len)
{
	struct iterate_ctx *ic = c;

	return ic->fn(ic->ti, to_dev(dev), start, len, ic->data);
}

static int snapshot_iterate_devices(struct dm_target *ti,
				    iterate_devices_callout_fn fn, void *data)
{
	struct iterate_ctx ic = { .ti = ti, .fn = fn, .data = data };

	return dmscore_snapshot_iterate_devices(ti->private, iterate_one, &ic);
}

static void snapshot_io_hints(struct dm_target *ti, struct queue_limits *limits)
{
	struct dmscore_io_hints hints = {};

	dmscore_snapshot_io_hints(ti->private, &hints);
	if (hints.discard_granularity_bytes)
		limits->discard_granularity = hints.discard_granularity_bytes;
	if (hints.max_discard_sectors) {
		/* 6.10+ derives max_discard_sectors from the hw limit. */
		limits->max_hw_discard_sectors = hints.max_discard_sectors;
		limits->max_discard_sectors = hints.max_discard_sectors;
	}
}

static void snapshot_presuspend(struct dm_target *ti)
{
	dmscore_snapshot_presuspend(ti->private);
}

static int snapshot_preresume(struct dm_target *ti)
{
	return dmscore_snapshot_preresume(ti->private);
}

static void snapshot_resume(struct dm_target *ti)
{
	dmscore_snapshot_resume(ti->private);
}

static void snapshot_postsuspend(struct dm_target *ti)
{
	dmscore_snapshot_postsuspend(ti->private);
}

static int status_type(status_type_t type)
{
	switch (type) {
	case STATUSTYPE_INFO:
		return DMSCORE_STATUS_INFO;
	case STATUSTYPE_TABLE:
		return DMSCORE_STATUS_TABLE;
	default:
		return DMSCORE_STATUS_IMA;
	}
}

static void snapshot_status(struct dm_target *ti, status_type_t type,
			    unsigned int status_flags, char *result, unsigned int maxlen)
{
	dmscore_snapshot_status(ti->private, status_type(type), ti->type->name,
				result, maxlen);
}

static int origin_ctr(struct dm_target *ti, unsigned int argc, char **argv)
{
	struct dmscore_target_setup setup = {};
	struct dmscore_origin *o;
	int r;

	r = dmscore_origin_ctr((struct dms_target *)ti, argc, argv, &setup, &o);
	if (r)
		return r;
	r = apply_setup(ti, &setup);
	if (r) {
		dmscore_origin_dtr(o);
		return r;
	}
	ti->private = o;
	return 0;
}

static void origin_dtr(struct dm_target *ti)
{
	dmscore_origin_dtr(ti->private);
}

static int origin_map(struct dm_target *ti, struct bio *bio)
{
	return map_result(dmscore_origin_map(ti->private, to_dms_bio(bio)));
}

static void origin_resume(struct dm_target *ti)
{
	dmscore_origin_resume(ti->private);
}

static void origin_postsuspend(struct dm_target *ti)
{
	dmscore_origin_postsuspend(ti->private);
}

static void origin_status(struct dm_target *ti, status_type_t type,
			  unsigned int status_flags, char *result, unsigned int maxlen)
{
	dmscore_origin_status(ti->private, status_type(type), ti->type->name,
			      result, maxlen);
}

static int origin_iterate_devices(struct dm_target *ti,
				  iterate_devices_callout_fn fn, void *data)
{
	return fn(ti, to_dev(dmscore_origin_dev(ti->private)), 0, ti->len, data);
}

static struct target_type origin_target = {
	.name = "snapshot-origin",
	.version = {DMS_ORIGIN_VERSION_MAJOR, DMS_ORIGIN_VERSION_MINOR,
		    DMS_ORIGIN_VERSION_PATCH},
	.module = THIS_MODULE,
	.ctr = origin_ctr,
	.dtr = origin_dtr,
	.map = origin_map,
	.resume = origin_resume,
	.postsuspend = origin_postsuspend,
	.status = origin_status,
	.iterate_devices = origin_iterate_devices,
};

static struct target_type snapshot_target = {
	.name = "snapshot",
	.version = {DMS_SNAPSHOT_VERSION_MAJOR, DMS_SNAPSHOT_VERSION_MINOR,
		    DMS_SNAPSHOT_VERSION_PATCH},
	.module = THIS_MODULE,
	.ctr = snapshot_ctr,
	.dtr = snapshot_dtr,
	.map = snapshot_map,
	.end_io = snapshot_end_io,
	.preresume = snapshot_preresume,
	.resume = snapshot_resume,
	.postsuspend = snapshot_postsuspend,
	.status = snapshot_status,
	.iterate_devices = snapshot_iterate_devices,
	.io_hints = snapshot_io_hints,
};

static struct target_type merge_target = {
	.name = "snapshot-merge",
	.version = {DMS_MERGE_VERSION_MAJOR, DMS_MERGE_VERSION_MINOR,
		    DMS_MERGE_VERSION_PATCH},
	.module = THIS_MODULE,
	.ctr = merge_ctr,
	.dtr = snapshot_dtr,
	.map = snapshot_map,
	.end_io = snapshot_end_io,
	.presuspend = snapshot_presuspend,
	.preresume = snapshot_preresume,
	.resume = snapshot_resume,
	.postsuspend = snapshot_postsuspend,
	.status = snapshot_status,
	.iterate_devices = snapshot_iterate_devices,
	.io_hints = snapshot_io_hints,
};

static struct target_type *const targets[] = {
	&snapshot_target, &origin_target, &merge_target,
};

/* The core uses the kernel services, so they come up first and go last. */
static int __init dm_snapshot_init(void)
{
	int i, r;

	r = dms_services_init();
	if (r) {
		DMERR("Failed to initialise kernel services: %d", r);
		return r;
	}

	r = dmscore_init();
	if (r) {
		DMERR("Failed to initialise the core: %d", r);
		goto bad_core;
	}

	for (i = 0; i < ARRAY_SIZE(targets); i++) {
		r = dm_register_target(targets[i]);
		if (r < 0) {
			DMERR("%s target register failed %d", targets[i]->name, r);
			goto bad_register;
		}
	}
	return 0;

bad_register:
	while (--i >= 0)
		dm_unregister_target(targets[i]);
	dmscore_exit();
bad_core:
	dms_services_exit();
	return r;
}

static void __exit dm_snapshot_exit(void)
{
	int i;

	for (i = ARRAY_SIZE(targets) - 1; i >= 0; i--)
		dm_unregister_target(targets[i]);
	dmscore_exit();
	dms_services_exit();
}

module_init(dm_snapshot_init);
module_exit(dm_snapshot_exit);

MODULE_DESCRIPTION(DM_NAME " snapshot target (C++ core)");
MODULE_LICENSE("GPL");
MODULE_VERSION("0.2.0");
MODULE_ALIAS("dm-snapshot-origin");
MODULE_ALIAS("dm-snapshot-merge");
