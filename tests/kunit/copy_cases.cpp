// SPDX-License-Identifier: GPL-2.0
// Suite dm-snapshot-copy: the copy path's kernel services on brd: one
// kcopyd job reading once and writing several destinations, kcopyd's
// zeroing, asynchronous dm-io and the flush the merge issues.
#include "kt.hpp"
#include "ktl/lock.hpp"

using ktl::u64;

namespace {

struct Done {
	dms_waiter* waiter = nullptr;
	ktl::Atomic<int> finished{0};
	int read_error = 0;
	unsigned long write_mask = 0;
	int io_error = 0;
};

void copy_done(void* ctx, int read_error, unsigned long write_mask)
{
	auto* d = static_cast<Done*>(ctx);
	d->read_error = read_error;
	d->write_mask = write_mask;
	d->finished.store(1);
	dms_waiter_wake(d->waiter);
}

void io_done(void* ctx, int error)
{
	auto* d = static_cast<Done*>(ctx);
	d->io_error = error;
	d->finished.store(1);
	dms_waiter_wake(d->waiter);
}

int finished_cond(void* ctx)
{
	return static_cast<Done*>(ctx)->finished.load();
}

void wait(Done& d)
{
	dms_waiter_wait(d.waiter, &finished_cond, &d);
	d.finished.store(0);
}

constexpr u64 kSectors = 256;	// 128 KiB: several kcopyd sub-jobs

}  // namespace

extern "C" void dmskt_copy_kcopyd_one_read_many_writes(dmskt* t)
{
	kt::Ram a(t, 0), b(t, 1);
	KT_ASSERT(t, a && b);
	kt::Buffer buf(kSectors * 512);
	KT_ASSERT(t, buf);
	kt::fill(buf.get(), 3, 0, kSectors);
	KT_ASSERT(t, dms_dev_io_sync(a.get(), DMS_IO_WRITE, 64, kSectors, buf.get()) == 0);

	Done d;
	d.waiter = dms_waiter_create();
	KT_ASSERT(t, d.waiter);
	const dms_copy_dest dests[3] = {{b.get(), 1024}, {b.get(), 4096}, {a.get(), 8192}};
	dms_copy(a.get(), 64, kSectors, dests, 3, &copy_done, &d);
	wait(d);
	KT_EXPECT_EQ(t, d.read_error, 0);
	KT_EXPECT_EQ(t, d.write_mask, 0u);
	for (const dms_copy_dest& dest : dests) {
		for (u64 i = 0; i < kSectors * 512; i++)
			buf.get()[i] = 0;
		KT_EXPECT_EQ(t, dms_dev_io_sync(dest.dev, DMS_IO_READ, dest.sector, kSectors, buf.get()), 0);
		KT_EXPECT_EQ(t, kt::mismatches(buf.get(), 3, 0, kSectors), 0u);
	}

	// A source range past the end of the device: a read error, and no
	// destination written.
	dms_copy(a.get(), dms_dev_size(a.get()) - 8, 64, dests, 1, &copy_done, &d);
	wait(d);
	KT_EXPECT(t, d.read_error != 0 || d.write_mask != 0);
	dms_waiter_destroy(d.waiter);
}

extern "C" void dmskt_copy_kcopyd_zero(dmskt* t)
{
	kt::Ram b(t, 1);
	KT_ASSERT(t, b);
	kt::Buffer buf(kSectors * 512);
	KT_ASSERT(t, buf);
	kt::fill(buf.get(), 4, 0, kSectors);
	KT_ASSERT(t, dms_dev_io_sync(b.get(), DMS_IO_WRITE, 0, kSectors, buf.get()) == 0);

	Done d;
	d.waiter = dms_waiter_create();
	KT_ASSERT(t, d.waiter);
	dms_zero(b.get(), 64, 64, &copy_done, &d);
	wait(d);
	KT_EXPECT_EQ(t, d.write_mask, 0u);
	KT_ASSERT(t, dms_dev_io_sync(b.get(), DMS_IO_READ, 0, kSectors, buf.get()) == 0);
	u64 nonzero = 0;
	for (u64 i = 64 * 512; i < 128 * 512; i++)
		nonzero += buf.get()[i] != 0;
	KT_EXPECT_EQ(t, nonzero, 0u);
	KT_EXPECT_EQ(t, kt::mismatches(buf.get(), 4, 0, 64), 0u);
	KT_EXPECT_EQ(t, kt::mismatches(buf.get() + 128 * 512, 4, 128, kSectors - 128), 0u);
	dms_waiter_destroy(d.waiter);
}

extern "C" void dmskt_copy_dm_io_async_and_flush(dmskt* t)
{
	kt::Ram a(t, 0);
	KT_ASSERT(t, a);
	kt::Buffer out(64 * 512), in(64 * 512);
	KT_ASSERT(t, out && in);
	kt::fill(out.get(), 5, 300, 64);

	Done d;
	d.waiter = dms_waiter_create();
	KT_ASSERT(t, d.waiter);
	KT_ASSERT(t, dms_dev_io_async(a.get(), DMS_IO_WRITE | DMS_IO_FUA, 300, 64, out.get(), &io_done,
				      &d) == 0);
	wait(d);
	KT_EXPECT_EQ(t, d.io_error, 0);
	KT_ASSERT(t, dms_dev_io_async(a.get(), DMS_IO_READ, 300, 64, in.get(), &io_done, &d) == 0);
	wait(d);
	KT_EXPECT_EQ(t, d.io_error, 0);
	KT_EXPECT_EQ(t, kt::mismatches(in.get(), 5, 300, 64), 0u);
	KT_EXPECT_EQ(t, dms_dev_flush(a.get()), 0);
	dms_waiter_destroy(d.waiter);
}
