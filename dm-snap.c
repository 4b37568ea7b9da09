// SPDX-License-Identifier: GPL-2.0
/*
 * dm-snap.c - device-mapper target registration and bio plumbing for the
 * snapshot-origin, snapshot and snapshot-merge targets.
 *
 * The constructors, status lines and every policy live in the C++ core
 * (snapcore/); this file turns dm_target callbacks into dmscore_* calls and
 * implements the dms_* device services the core uses.  Kernel-version
 * differences (6.1 and 6.12) are confined here and in dm-exception-store.c.
 */
#include <linux/blkdev.h>
#include <linux/device-mapper.h>
#include <linux/module.h>
#include <linux/version.h>

#include "dm-snap.h"

#define DM_MSG_PREFIX "snapshots"

/* ---------------------------------------------------------------- */
/* Device services                                                   */
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

dms_devt_t dms_dev_devt(struct dms_dev *dev)
{
	return to_dev(dev)->bdev->bd_dev;
}

const char *dms_dev_name(struct dms_dev *dev)
{
	return to_dev(dev)->name;
}

unsigned int dms_dev_logical_block_size(struct dms_dev *dev)
{
	return bdev_logical_block_size(to_dev(dev)->bdev);
}

dms_sector_t dms_dev_size(struct dms_dev *dev)
{
	return bdev_nr_sectors(to_dev(dev)->bdev);
}

/* ---------------------------------------------------------------- */
/* Targets                                                           */
/* ---------------------------------------------------------------- */

static int apply_setup(struct dm_target *ti, const struct dmscore_target_setup *setup)
{
	ti->num_flush_bios = setup->num_flush_bios;
	ti->num_discard_bios = setup->num_discard_bios;
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

/*
 * The copy-on-write I/O path is not part of this version: snapshot I/O fails
 * rather than returning data that might not be the snapshot's.
 */
static int snapshot_map(struct dm_target *ti, struct bio *bio)
{
	DMERR_LIMIT("snapshot I/O is not supported by this version");
	return DM_MAPIO_KILL;
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
	bio_set_dev(bio, to_dev(dmscore_origin_dev(ti->private))->bdev);
	return DM_MAPIO_REMAPPED;
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
	.status = snapshot_status,
};

static struct target_type merge_target = {
	.name = "snapshot-merge",
	.version = {DMS_MERGE_VERSION_MAJOR, DMS_MERGE_VERSION_MINOR,
		    DMS_MERGE_VERSION_PATCH},
	.module = THIS_MODULE,
	.ctr = merge_ctr,
	.dtr = snapshot_dtr,
	.map = snapshot_map,
	.status = snapshot_status,
};

static struct target_type *const targets[] = {
	&snapshot_target, &origin_target, &merge_target,
};

static int __init dm_snapshot_init(void)
{
	int i, r;

	for (i = 0; i < ARRAY_SIZE(targets); i++) {
		r = dm_register_target(targets[i]);
		if (r < 0) {
			DMERR("%s target register failed %d", targets[i]->name, r);
			while (--i >= 0)
				dm_unregister_target(targets[i]);
			return r;
		}
	}
	return 0;
}

static void __exit dm_snapshot_exit(void)
{
	int i;

	for (i = ARRAY_SIZE(targets) - 1; i >= 0; i--)
		dm_unregister_target(targets[i]);
}

module_init(dm_snapshot_init);
module_exit(dm_snapshot_exit);

MODULE_DESCRIPTION(DM_NAME " snapshot target (C++ core)");
MODULE_LICENSE("GPL");
MODULE_VERSION("0.2.0");
MODULE_ALIAS("dm-snapshot-origin");
MODULE_ALIAS("dm-snapshot-merge");
