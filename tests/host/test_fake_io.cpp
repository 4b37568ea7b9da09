// SPDX-License-Identifier: GPL-2.0
// The fake kernel's block services: memory-backed devices, dm-io, kcopyd
// and bios.  I/O-path tests rely on these behaving like the kernel's.
#include <gtest/gtest.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <thread>
#include <vector>

#include "kernel_test.hpp"

using Bytes = std::vector<unsigned char>;

namespace {

class FakeIoTest : public KernelTest {
protected:
	void SetUp() override
	{
		KernelTest::SetUp();
		a = &kernel.add_device("/dev/a", 8, 0, 64);
		b = &kernel.add_device("/dev/b", 8, 16, 64);
		c = &kernel.add_device("/dev/c", 8, 32, 64);
		for (const char* path : {"/dev/a", "/dev/b", "/dev/c"}) {
			dms_dev* dev;
			ASSERT_EQ(dms_target_get_device(&ti, path, DMS_MODE_TABLE, &dev), 0);
		}
	}

	void TearDown() override
	{
		while (!ti.held.empty())
			dms_target_put_device(&ti, ti.held.back());
		KernelTest::TearDown();
	}

	dms_target ti;
	dms_dev* a = nullptr;
	dms_dev* b = nullptr;
	dms_dev* c = nullptr;
};

// Completion records, filled on the work queue threads.
struct IoDone {
	std::atomic<int> calls{0};
	std::atomic<int> error{1};
	std::thread::id thread;
	static void fn(void* ctx, int error)
	{
		auto* d = static_cast<IoDone*>(ctx);
		d->thread = std::this_thread::get_id();
		d->error = error;
		d->calls++;
	}
};

struct CopyDone {
	std::atomic<int> calls{0};
	int read_error = -1;
	unsigned long mask = ~0ul;
	static void fn(void* ctx, int read_error, unsigned long mask)
	{
		auto* d = static_cast<CopyDone*>(ctx);
		d->read_error = read_error;
		d->mask = mask;
		d->calls++;
	}
};

}  // namespace

TEST_F(FakeIoTest, UnwrittenSectorsReadAsZeros)
{
	Bytes buf(1024, 0xff);
	EXPECT_EQ(dms_dev_io_sync(a, DMS_IO_READ, 62, 2, buf.data()), 0);
	EXPECT_EQ(buf, Bytes(1024, 0));
}

TEST_F(FakeIoTest, SyncWriteThenRead)
{
	Bytes out(1536);
	for (std::size_t i = 0; i < out.size(); i++)
		out[i] = static_cast<unsigned char>(i * 7);
	EXPECT_EQ(dms_dev_io_sync(a, DMS_IO_WRITE | DMS_IO_FUA, 7, 3, out.data()), 0);
	Bytes in(1536);
	EXPECT_EQ(dms_dev_io_sync(a, DMS_IO_READ, 7, 3, in.data()), 0);
	EXPECT_EQ(in, out);
	EXPECT_EQ(a->read(7, 3), out);
	EXPECT_EQ(a->read(6, 1), Bytes(512, 0));
}

TEST_F(FakeIoTest, IoPastTheEndOrOnAFailingDeviceIsEio)
{
	Bytes buf(1024);
	EXPECT_EQ(dms_dev_io_sync(a, DMS_IO_READ, 63, 2, buf.data()), -EIO);
	EXPECT_EQ(dms_dev_io_sync(a, DMS_IO_WRITE, 64, 1, buf.data()), -EIO);
	a->fail_reads = true;
	EXPECT_EQ(dms_dev_io_sync(a, DMS_IO_READ, 0, 1, buf.data()), -EIO);
	EXPECT_EQ(dms_dev_io_sync(a, DMS_IO_WRITE, 0, 1, buf.data()), 0);
	a->fail_writes = true;
	EXPECT_EQ(dms_dev_io_sync(a, DMS_IO_WRITE, 0, 1, buf.data()), -EIO);
}

TEST_F(FakeIoTest, AsyncIoCompletesOnTheModuleWorkQueue)
{
	a->write(4, Bytes(512, 0x42));
	Bytes buf(512);
	IoDone done;
	ASSERT_EQ(dms_dev_io_async(a, DMS_IO_READ, 4, 1, buf.data(), &IoDone::fn, &done), 0);
	kernel.drain();
	EXPECT_EQ(done.calls, 1);
	EXPECT_EQ(done.error, 0);
	EXPECT_NE(done.thread, std::this_thread::get_id());
	EXPECT_EQ(buf, Bytes(512, 0x42));

	a->fail_writes = true;
	IoDone failed;
	ASSERT_EQ(dms_dev_io_async(a, DMS_IO_WRITE, 0, 1, buf.data(), &IoDone::fn, &failed), 0);
	kernel.drain();
	EXPECT_EQ(failed.error, -EIO);
}

TEST_F(FakeIoTest, AtomicAsyncIoCompletesInSubmissionOrOnAnotherThread)
{
	a->write(4, Bytes(512, 0x42));
	Bytes buf(512);
	IoDone inline_done;
	ASSERT_EQ(dms_dev_io_async(a, DMS_IO_READ | DMS_IO_DONE_ATOMIC, 4, 1, buf.data(),
				   &IoDone::fn, &inline_done),
		  0);
	EXPECT_EQ(inline_done.calls, 1) << "a ramdisk completes in submission";
	EXPECT_EQ(inline_done.thread, std::this_thread::get_id());
	EXPECT_EQ(buf, Bytes(512, 0x42));

	a->defer_atomic_completions = true;
	a->fail_reads = true;
	IoDone later;
	ASSERT_EQ(dms_dev_io_async(a, DMS_IO_READ | DMS_IO_DONE_ATOMIC, 4, 1, buf.data(),
				   &IoDone::fn, &later),
		  0);
	kernel.drain();
	EXPECT_EQ(later.calls, 1);
	EXPECT_EQ(later.error, -EIO);
	EXPECT_NE(later.thread, std::this_thread::get_id());
}

// What runs in atomic context may not sleep: the fake reports it, as
// might_sleep() would in the kernel.
TEST_F(FakeIoTest, SleepingInAnAtomicCompletionIsAMisuse)
{
	Bytes buf(512);
	auto sleeps = [](void*, int) { dms_free(dms_zalloc(8)); };
	ASSERT_EQ(dms_dev_io_async(a, DMS_IO_READ | DMS_IO_DONE_ATOMIC, 4, 1, buf.data(), sleeps,
				   nullptr),
		  0);
	kernel.drain();
	EXPECT_EQ(kernel.take_misuse().size(), 1u);
	ASSERT_EQ(dms_dev_io_async(a, DMS_IO_READ, 4, 1, buf.data(), sleeps, nullptr), 0);
	kernel.drain();
	EXPECT_TRUE(kernel.take_misuse().empty()) << "the work queue is process context";
}

TEST_F(FakeIoTest, CopyReadsOnceAndWritesEveryDestination)
{
	a->write(8, Bytes(2048, 0x5a));
	c->fail_writes = true;
	const dms_copy_dest dests[] = {{b, 16}, {c, 0}, {b, 40}};
	CopyDone done;
	dms_copy(a, 8, 4, dests, 3, &CopyDone::fn, &done);
	kernel.drain();
	EXPECT_EQ(done.calls, 1);
	EXPECT_EQ(done.read_error, 0);
	EXPECT_EQ(done.mask, 0b010ul);
	EXPECT_EQ(b->read(16, 4), Bytes(2048, 0x5a));
	EXPECT_EQ(b->read(40, 4), Bytes(2048, 0x5a));
}

TEST_F(FakeIoTest, CopyWithAReadErrorWritesNothing)
{
	a->fail_reads = true;
	const dms_copy_dest dests[] = {{b, 0}};
	b->write(0, Bytes(512, 0x11));
	CopyDone done;
	dms_copy(a, 0, 1, dests, 1, &CopyDone::fn, &done);
	kernel.drain();
	EXPECT_EQ(done.read_error, 1);
	EXPECT_EQ(done.mask, 0ul);
	EXPECT_EQ(b->read(0, 1), Bytes(512, 0x11));
}

TEST_F(FakeIoTest, IoOnADeviceNotHeldIsMisuse)
{
	dms_dev& loose = kernel.add_device("/dev/loose", 9, 0, 8);
	Bytes buf(512);
	EXPECT_EQ(dms_dev_io_sync(&loose, DMS_IO_READ, 0, 1, buf.data()), 0);
	EXPECT_EQ(kernel.take_misuse().size(), 1u);
}

TEST_F(FakeIoTest, RemappedBioIsSubmittedToItsDevice)
{
	dms_bio write(100, 2, DMS_BIO_WRITE | DMS_BIO_FUA);
	write.data.assign(1024, 0x77);
	dms_bio_info info;
	dms_bio_get_info(&write, &info);
	EXPECT_EQ(info.sector, 100u);
	EXPECT_EQ(info.sectors, 2u);
	EXPECT_EQ(info.flags, unsigned{DMS_BIO_WRITE | DMS_BIO_FUA});
	int end_error = 1;
	write.on_end = [&](dms_bio*, int error) { end_error = error; };
	dms_bio_remap(&write, b, 10);
	dms_bio_submit(&write);
	EXPECT_TRUE(write.ended());
	EXPECT_EQ(write.error(), 0);
	EXPECT_EQ(end_error, 0);
	EXPECT_EQ(b->read(10, 2), Bytes(1024, 0x77));

	dms_bio read(0, 2, 0);
	dms_bio_remap(&read, b, 10);
	dms_bio_submit(&read);
	EXPECT_EQ(read.data, Bytes(1024, 0x77));
}

TEST_F(FakeIoTest, HookedBioCompletesToTheHookAndEndsLater)
{
	dms_bio bio(0, 1, DMS_BIO_WRITE);
	dms_bio_remap(&bio, c, 0);
	c->fail_writes = true;
	IoDone done;
	dms_bio_submit_hooked(&bio, &IoDone::fn, &done);
	kernel.drain();
	EXPECT_EQ(done.calls, 1);
	EXPECT_EQ(done.error, -EIO);
	EXPECT_FALSE(bio.ended());
	dms_bio_endio(&bio, -EIO);
	EXPECT_TRUE(bio.wait_ended(0));
	EXPECT_EQ(bio.error(), -EIO);
}

TEST_F(FakeIoTest, PartialAcceptShortensTheBio)
{
	dms_bio bio(6, 8, DMS_BIO_WRITE);
	dms_bio_accept_partial(&bio, 2);
	EXPECT_EQ(bio.info.sectors, 2u);
	EXPECT_EQ(bio.data.size(), 1024u);
}

TEST_F(FakeIoTest, PerBioDataIsAlignedStableAndNotZeroed)
{
	dms_bio bio(0, 1, 0);
	void* p = dms_bio_per_data(&bio, 20);
	EXPECT_EQ(reinterpret_cast<std::uintptr_t>(p) % 8, 0u);
	EXPECT_EQ(*static_cast<unsigned char*>(p), 0xa5);
	EXPECT_EQ(dms_bio_per_data(&bio, 20), p);
}

TEST_F(FakeIoTest, EndingABioTwiceIsMisuse)
{
	dms_bio bio(0, 1, 0);
	dms_bio_endio(&bio, 0);
	dms_bio_endio(&bio, 0);
	EXPECT_EQ(kernel.take_misuse().size(), 1u);
}

TEST_F(FakeIoTest, HeldCopiesRunAndCompleteInTheOrderReleased)
{
	a->write(0, Bytes(512, 0x01));
	a->write(1, Bytes(512, 0x02));
	kernel.hold_copies();
	const dms_copy_dest first[] = {{b, 0}};
	const dms_copy_dest second[] = {{b, 1}};
	std::vector<int> order;
	struct Ctx {
		std::vector<int>* order;
		int id;
		static void fn(void* ctx, int, unsigned long)
		{
			auto* c = static_cast<Ctx*>(ctx);
			c->order->push_back(c->id);
		}
	} c0{&order, 0}, c1{&order, 1};
	dms_copy(a, 0, 1, first, 1, &Ctx::fn, &c0);
	dms_copy(a, 1, 1, second, 1, &Ctx::fn, &c1);
	kernel.drain();
	EXPECT_EQ(kernel.held_copies(), (std::vector<unsigned int>{0, 1}));
	EXPECT_TRUE(order.empty());
	EXPECT_EQ(b->read(0, 2), Bytes(1024, 0)) << "a held copy wrote";

	// The source is read when the copy runs, not when it was submitted.
	a->write(1, Bytes(512, 0x03));
	kernel.release_copy(1);
	kernel.drain();
	EXPECT_EQ(order, std::vector<int>{1});
	EXPECT_EQ(b->read(1, 1), Bytes(512, 0x03));
	kernel.release_all_copies();
	kernel.drain();
	EXPECT_EQ(order, (std::vector<int>{1, 0}));
	EXPECT_EQ(b->read(0, 1), Bytes(512, 0x01));

	const auto jobs = kernel.copy_jobs();
	ASSERT_EQ(jobs.size(), 2u);
	EXPECT_EQ(jobs[1].id, 1u);
	EXPECT_EQ(jobs[1].src, a);
	EXPECT_EQ(jobs[1].src_sector, 1u);
	ASSERT_EQ(jobs[1].dests.size(), 1u);
	EXPECT_EQ(jobs[1].dests[0].dev, b);

	kernel.release_copy(7);
	EXPECT_EQ(kernel.take_misuse().size(), 1u);
}

TEST_F(FakeIoTest, DevicesRecordTheirRequestsInOneGlobalOrder)
{
	Bytes buf(1024, 0x42);
	ASSERT_EQ(dms_dev_io_sync(a, DMS_IO_WRITE | DMS_IO_FUA, 4, 2, buf.data()), 0);
	ASSERT_EQ(dms_dev_io_sync(b, DMS_IO_READ, 0, 1, buf.data()), 0);
	ASSERT_EQ(dms_dev_io_sync(a, DMS_IO_READ, 70, 1, buf.data()), -EIO);	// past the end
	const auto ra = a->ios();
	const auto rb = b->ios();
	ASSERT_EQ(ra.size(), 2u);
	ASSERT_EQ(rb.size(), 1u);
	EXPECT_EQ(ra[0].flags, unsigned{DMS_IO_WRITE | DMS_IO_FUA});
	EXPECT_EQ(ra[0].sector, 4u);
	EXPECT_EQ(ra[0].count, 2u);
	EXPECT_EQ(ra[0].via, "sync");
	EXPECT_EQ(ra[0].data, Bytes(1024, 0x42));
	EXPECT_EQ(ra[0].result, 0);
	EXPECT_EQ(ra[1].result, -EIO);
	EXPECT_LT(ra[0].seq, rb[0].seq);
	EXPECT_LT(rb[0].seq, ra[1].seq);
	EXPECT_TRUE(rb[0].data.empty());
}

TEST_F(FakeIoTest, FailWhenPicksTheRequestsThatFail)
{
	b->fail_when([](const fake::IoRecord& r) { return r.write() && r.sector == 3; });
	Bytes buf(512, 0x10);
	EXPECT_EQ(dms_dev_io_sync(b, DMS_IO_WRITE, 3, 1, buf.data()), -EIO);
	EXPECT_EQ(dms_dev_io_sync(b, DMS_IO_WRITE, 4, 1, buf.data()), 0);
	EXPECT_EQ(dms_dev_io_sync(b, DMS_IO_READ, 3, 1, buf.data()), 0);
	EXPECT_EQ(b->read(3, 1), Bytes(512, 0));
	b->fail_when(nullptr);
	EXPECT_EQ(dms_dev_io_sync(b, DMS_IO_WRITE, 3, 1, buf.data()), 0);
}

TEST_F(FakeIoTest, HoldWhenStallsRequestsUntilReleased)
{
	c->hold_when([](const fake::IoRecord& r) { return r.write(); });
	std::atomic<int> result{1};
	std::thread writer([&] {
		Bytes buf(512, 0x33);
		result = dms_dev_io_sync(c, DMS_IO_WRITE, 0, 1, buf.data());
	});
	ASSERT_TRUE(fake::wait_until([&] { return c->held_ios() == 1; }));
	EXPECT_EQ(result, 1);
	EXPECT_EQ(c->read(0, 1), Bytes(512, 0));
	Bytes rbuf(512);
	EXPECT_EQ(dms_dev_io_sync(c, DMS_IO_READ, 0, 1, rbuf.data()), 0);	// not held
	c->release_held();
	writer.join();
	EXPECT_EQ(result, 0);
	EXPECT_EQ(c->held_ios(), 0u);
	EXPECT_EQ(c->read(0, 1), Bytes(512, 0x33));
}
