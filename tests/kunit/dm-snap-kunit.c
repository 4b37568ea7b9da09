// SPDX-License-Identifier: GPL-2.0
/*
 * dm-snap-kunit.c - KUnit suites that run the C++ core inside the kernel:
 * on-disk encoding, area arithmetic, the exception table under concurrent
 * threads, the persistent store on a real block device (brd) through
 * dm-io, copies through dm-kcopyd, and the shim's held bio completions.
 *
 * This file is glue: it turns the case list of kunit-abi.h into KUnit
 * suites, reports failures, opens brd disks and starts threads.  The cases
 * themselves are C++ (*_cases.cpp) and run the same core objects as
 * dm-snapshot.ko, with the same service shim (dm-exception-store.c).
 *
 * Built against the project's debug kernel (6.1, CONFIG_KUNIT=y) only.
 * KUnit runs a module's suites while the module is still coming up, before
 * any module_init, so every suite sets the services up in suite_init.
 */
#include <kunit/test.h>
#include <linux/blkdev.h>
#include <linux/completion.h>
#include <linux/device-mapper.h>
#include <linux/irq_work.h>
#include <linux/kthread.h>
#include <linux/module.h>
#include <linux/slab.h>

#include "dm-exception-store.h"
#include "kunit-abi.h"

void dmskt_fail(struct dmskt *t, const char *file, int line, const char *fmt, ...)
{
	struct va_format vaf;
	va_list args;

	va_start(args, fmt);
	vaf.fmt = fmt;
	vaf.va = &args;
	KUNIT_FAIL((struct kunit *)t, "%s:%d: %pV", file, line, &vaf);
	va_end(args);
}

/* dms_dev is a struct dm_dev to the services: give them one. */
struct dmskt_dev {
	struct dm_dev dm;
	fmode_t mode;
};

static const fmode_t dmskt_mode = FMODE_READ | FMODE_WRITE | FMODE_EXCL;

struct dms_dev *dmskt_open_ram(struct dmskt *t, unsigned int index)
{
	char path[24];
	struct dmskt_dev *d;
	struct block_device *bdev;

	snprintf(path, sizeof(path), "/dev/ram%u", index);
	d = kzalloc(sizeof(*d), GFP_KERNEL);
	if (!d) {
		dmskt_fail(t, __FILE__, __LINE__, "out of memory");
		return NULL;
	}
	bdev = blkdev_get_by_path(path, dmskt_mode, d);
	if (IS_ERR(bdev)) {
		dmskt_fail(t, __FILE__, __LINE__, "cannot open %s: %ld (is brd loaded?)", path,
			   PTR_ERR(bdev));
		kfree(d);
		return NULL;
	}
	d->dm.bdev = bdev;
	d->dm.mode = dmskt_mode;
	d->mode = dmskt_mode;
	snprintf(d->dm.name, sizeof(d->dm.name), "%u:%u", MAJOR(bdev->bd_dev),
		 MINOR(bdev->bd_dev));
	return (struct dms_dev *)d;
}

void dmskt_close(struct dms_dev *dev)
{
	struct dmskt_dev *d = (struct dmskt_dev *)dev;

	if (!d)
		return;
	blkdev_put(d->dm.bdev, d->mode);
	kfree(d);
}

struct dmskt_thread {
	dmskt_thread_fn fn;
	void *ctx;
	unsigned int i;
	struct completion done;
};

static int dmskt_thread_main(void *data)
{
	struct dmskt_thread *th = data;

	th->fn(th->ctx, th->i);
	complete(&th->done);
	return 0;
}

#define DMSKT_MAX_THREADS 8

int dmskt_parallel(dmskt_thread_fn fn, void *ctx, unsigned int n)
{
	struct dmskt_thread th[DMSKT_MAX_THREADS];
	struct task_struct *tasks[DMSKT_MAX_THREADS];
	unsigned int i, made;

	if (n > DMSKT_MAX_THREADS)
		return -EINVAL;
	/* Created stopped, then all woken: they really run together. */
	for (made = 0; made < n; made++) {
		th[made] = (struct dmskt_thread){ .fn = fn, .ctx = ctx, .i = made };
		init_completion(&th[made].done);
		tasks[made] = kthread_create(dmskt_thread_main, &th[made], "dmskt/%u", made);
		if (IS_ERR(tasks[made]))
			break;
	}
	if (made < n) {
		for (i = 0; i < made; i++)
			kthread_stop(tasks[i]);	/* never woken: fn does not run */
		return PTR_ERR(tasks[made]);
	}
	for (i = 0; i < n; i++)
		wake_up_process(tasks[i]);
	for (i = 0; i < n; i++)
		wait_for_completion(&th[i].done);
	return 0;
}

struct dmskt_bio {
	struct bio bio;
	atomic_t ended;
	struct irq_work irq;
};

static void dmskt_bio_end_io(struct bio *bio)
{
	atomic_inc(&container_of(bio, struct dmskt_bio, bio)->ended);
}

static void dmskt_bio_irq(struct irq_work *w)
{
	dms_end_bio_or_hold(&container_of(w, struct dmskt_bio, irq)->bio);
}

struct dmskt_bio *dmskt_bio_create(struct dmskt *t)
{
	struct dmskt_bio *b = kzalloc(sizeof(*b), GFP_KERNEL);

	if (!b) {
		dmskt_fail(t, __FILE__, __LINE__, "out of memory");
		return NULL;
	}
	bio_init(&b->bio, NULL, NULL, 0, REQ_OP_WRITE);
	b->bio.bi_end_io = dmskt_bio_end_io;
	b->irq = IRQ_WORK_INIT_HARD(dmskt_bio_irq);	/* hard interrupt, even on PREEMPT_RT */
	return b;
}

void dmskt_bio_destroy(struct dmskt_bio *b)
{
	if (!b)
		return;
	bio_uninit(&b->bio);
	kfree(b);
}

void dmskt_bio_end_or_hold(struct dmskt_bio *b, int from_irq)
{
	if (!from_irq) {
		dms_end_bio_or_hold(&b->bio);
		return;
	}
	irq_work_queue(&b->irq);	/* on this CPU */
	irq_work_sync(&b->irq);
}

unsigned int dmskt_bio_ended(struct dmskt_bio *b)
{
	return atomic_read(&b->ended);
}

static int dmskt_suite_init(struct kunit_suite *suite)
{
	return dms_services_init();
}

static void dmskt_suite_exit(struct kunit_suite *suite)
{
	dms_services_exit();
}

#define DMSKT_WRAP(suite, name)                                                \
	static void kunit_##suite##_##name(struct kunit *test)                 \
	{                                                                      \
		dmskt_##suite##_##name((struct dmskt *)test);                  \
	}
#define DMSKT_CASE(suite, name) KUNIT_CASE(kunit_##suite##_##name),

DMSKT_FORMAT_CASES(DMSKT_WRAP)
DMSKT_TABLE_CASES(DMSKT_WRAP)
DMSKT_STORE_CASES(DMSKT_WRAP)
DMSKT_COPY_CASES(DMSKT_WRAP)
DMSKT_HELD_CASES(DMSKT_WRAP)

#define DMSKT_SUITE(var, sname, list)                                          \
	static struct kunit_case var##_cases[] = { list(DMSKT_CASE){} };       \
	static struct kunit_suite var = {                                      \
		.name = sname,                                                 \
		.suite_init = dmskt_suite_init,                                \
		.suite_exit = dmskt_suite_exit,                                \
		.test_cases = var##_cases,                                     \
	}

DMSKT_SUITE(format_suite, "dm-snapshot-format", DMSKT_FORMAT_CASES);
DMSKT_SUITE(table_suite, "dm-snapshot-exception-table", DMSKT_TABLE_CASES);
DMSKT_SUITE(store_suite, "dm-snapshot-persistent-store", DMSKT_STORE_CASES);
DMSKT_SUITE(copy_suite, "dm-snapshot-copy", DMSKT_COPY_CASES);
DMSKT_SUITE(held_suite, "dm-snapshot-held-completions", DMSKT_HELD_CASES);

kunit_test_suites(&format_suite, &table_suite, &store_suite, &copy_suite, &held_suite);

MODULE_DESCRIPTION("KUnit suites for the C++ dm-snapshot core");
MODULE_LICENSE("GPL");
