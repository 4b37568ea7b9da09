/* SPDX-License-Identifier: GPL-2.0 */
/*
 * dm-exception-store.h - between the two shims only: module-wide kernel
 * resources set up at module load.  Not part of the core's ABI.
 */
#ifndef DM_SNAP_EXCEPTION_STORE_SHIM_H
#define DM_SNAP_EXCEPTION_STORE_SHIM_H

int dms_services_init(void);
void dms_services_exit(void);

struct bio;
/*
 * Ends bio, or holds it on the current task's block plug until the plug is
 * flushed (see dms_run_plugged() in dm-snap.h).  Any context.
 */
void dms_end_bio_or_hold(struct bio *bio);

#endif
