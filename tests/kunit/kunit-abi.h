/* SPDX-License-Identifier: GPL-2.0 */
/*
 * kunit-abi.h - the plain-C line between the KUnit glue (dm-snap-kunit.c,
 * which includes <kunit/test.h>) and the test cases written in C++ against
 * the core (*_cases.cpp, which never see a kernel header).  Same rules as
 * dm-snap.h: builtin types and opaque handles only.
 */
#ifndef DM_SNAP_KUNIT_ABI_H
#define DM_SNAP_KUNIT_ABI_H

#include "dm-snap.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A running test case (a struct kunit, opaque to C++). */
struct dmskt;

/* Fails the case with a message; the case goes on (KUNIT_FAIL). */
void dmskt_fail(struct dmskt *t, const char *file, int line, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/*
 * A brd disk (/dev/ram<index>), opened read-write and exclusively for the
 * case, as a dms_dev the core's services accept.  NULL (and the case
 * failed) if it cannot be opened.  The runner loads brd with two disks.
 */
struct dms_dev *dmskt_open_ram(struct dmskt *t, unsigned int index);
void dmskt_close(struct dms_dev *dev);

/*
 * Runs fn(ctx, i) for every i below n (at most 8) on its own kernel thread,
 * all started before any is waited for; returns when all have returned.
 * 0, or -errno if the threads could not be started (none then runs).
 */
typedef void (*dmskt_thread_fn)(void *ctx, unsigned int i);
int dmskt_parallel(dmskt_thread_fn fn, void *ctx, unsigned int n);

/*
 * A bare bio (no device, no data) that counts its completions, for the
 * shim's held completions (dms_run_plugged()).  dmskt_bio_end_or_hold()
 * hands it to the shim as a held bio's completion does; from_irq: from a
 * hard interrupt on this CPU (irq_work), waited for.  NULL (and the case
 * failed) if it cannot be made.
 */
struct dmskt_bio;
struct dmskt_bio *dmskt_bio_create(struct dmskt *t);
void dmskt_bio_destroy(struct dmskt_bio *b);
void dmskt_bio_end_or_hold(struct dmskt_bio *b, int from_irq);
unsigned int dmskt_bio_ended(struct dmskt_bio *b);

/*
 * The cases, by suite: X(suite, case).  The glue defines the suites and
 * their kunit_case tables from this list; the C++ side implements
 * dmskt_<suite>_<case>(struct dmskt *).
 */
#define DMSKT_FORMAT_CASES(X)                                                  \
	X(format, header_bytes)                                                \
	X(format, exception_bytes)                                             \
	X(format, area_geometry)
#define DMSKT_TABLE_CASES(X)                                                   \
	X(table, chunk_map_runs_and_singles)                                   \
	X(table, concurrent_insert_and_lookup)
#define DMSKT_STORE_CASES(X)                                                   \
	X(store, new_cow_initialised)                                          \
	X(store, recovery_over_areas)                                          \
	X(store, corrupt_cow_refused_untouched)                                \
	X(store, merge_cursor_shrinks_metadata)                                \
	X(store, merge_cursor_takes_ahead)
#define DMSKT_COPY_CASES(X)                                                    \
	X(copy, kcopyd_one_read_many_writes)                                   \
	X(copy, kcopyd_zero)                                                   \
	X(copy, dm_io_async_and_flush)
#define DMSKT_HELD_CASES(X)                                                    \
	X(held, ended_when_the_section_returns)                                \
	X(held, ended_at_once_without_a_plug)                                  \
	X(held, ended_before_the_task_sleeps)                                  \
	X(held, ended_at_once_from_an_interrupt)

#define DMSKT_DECLARE_CASE(suite, name) void dmskt_##suite##_##name(struct dmskt *t);
DMSKT_FORMAT_CASES(DMSKT_DECLARE_CASE)
DMSKT_TABLE_CASES(DMSKT_DECLARE_CASE)
DMSKT_STORE_CASES(DMSKT_DECLARE_CASE)
DMSKT_COPY_CASES(DMSKT_DECLARE_CASE)
DMSKT_HELD_CASES(DMSKT_DECLARE_CASE)
#undef DMSKT_DECLARE_CASE

#ifdef __cplusplus
}
#endif

#endif /* DM_SNAP_KUNIT_ABI_H */
