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

/* ------------------------------------------------------------------ */
/* Kernel services used by the core                                    */
/* ------------------------------------------------------------------ */

/* Memory.  Zeroed, may sleep, may fail (returns 0). */
void *dms_zalloc(dms_size_t size);
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

/* dev_t a table argument names ("maj:min" or a path), 0 if none. */
dms_devt_t dms_lookup_devt(const char *path);
dms_devt_t dms_dev_devt(struct dms_dev *dev);
/* "maj:min", valid while the device is held. */
const char *dms_dev_name(struct dms_dev *dev);
unsigned int dms_dev_logical_block_size(struct dms_dev *dev);
/* Current size; read live, never cached (lvextend grows COW devices). */
dms_sector_t dms_dev_size(struct dms_dev *dev);

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
};

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

int dmscore_origin_ctr(struct dms_target *ti, unsigned int argc, char **argv,
		       struct dmscore_target_setup *setup,
		       struct dmscore_origin **out);
void dmscore_origin_dtr(struct dmscore_origin *o);
void dmscore_origin_status(struct dmscore_origin *o, int type,
			   const char *target_name, char *result,
			   unsigned int maxlen);
/* The device an origin maps to (the shim remaps bios onto it). */
struct dms_dev *dmscore_origin_dev(struct dmscore_origin *o);

#ifdef __cplusplus
}
#endif

#endif /* DM_SNAP_ABI_H */
