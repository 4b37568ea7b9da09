/* SPDX-License-Identifier: GPL-2.0 */
/*
 * dm-exception-store.h - between the two shims only: module-wide kernel
 * resources set up at module load.  Not part of the core's ABI.
 */
#ifndef DM_SNAP_EXCEPTION_STORE_SHIM_H
#define DM_SNAP_EXCEPTION_STORE_SHIM_H

int dms_services_init(void);
void dms_services_exit(void);

#endif
