// SPDX-License-Identifier: GPL-2.0
/*
 * dm-exception-store.c - kernel services for the C++ core: memory and
 * logging (and, as the I/O paths arrive, dm-io, dm-kcopyd, locks and work
 * queues).  Adapters only: every decision is made in snapcore/.
 */
#include <linux/device-mapper.h>
#include <linux/kernel.h>
#include <linux/printk.h>
#include <linux/slab.h>
#include <linux/mm.h>

#include "dm-snap.h"

#define DM_MSG_PREFIX "snapshots"

/* kvzalloc: small objects from the slab, large tables from vmalloc. */
void *dms_zalloc(dms_size_t size)
{
	return kvzalloc(size, GFP_KERNEL);
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
