// SPDX-License-Identifier: GPL-2.0
// The KUnit cases (tests/kunit/*_cases.cpp) on the fake kernel as well:
// the same C++ test code that runs inside the debug kernel, with the glue
// of dm-snap-kunit.c played by the fake (memory devices for the brd disks,
// std::thread for kernel threads).  Catches a broken case on the host,
// before a VM boot, and checks the fake and the kernel agree.
#include <cstdarg>
#include <cstdio>
#include <thread>
#include <vector>

#include "kernel_test.hpp"
#include "kunit-abi.h"

namespace {

constexpr dms_sector_t kRamSectors = 131072;	// 64 MiB, as the VM runner's brd
dms_target g_ram_target;			// the fake wants a holder

class KunitCasesOnHost : public KernelTest {
protected:
	void SetUp() override
	{
		KernelTest::SetUp();
		kernel.add_device("/dev/ram0", 1, 0, kRamSectors);
		kernel.add_device("/dev/ram1", 1, 1, kRamSectors);
	}
	dmskt* ctx() { return reinterpret_cast<dmskt*>(this); }
};

}  // namespace

extern "C" {

void dmskt_fail(dmskt* t, const char* file, int line, const char* fmt, ...)
{
	char msg[512];
	va_list args;
	va_start(args, fmt);
	vsnprintf(msg, sizeof(msg), fmt, args);
	va_end(args);
	ADD_FAILURE_AT(file, line) << msg;
}

dms_dev* dmskt_open_ram(dmskt* t, unsigned int index)
{
	const std::string path = "/dev/ram" + std::to_string(index);
	dms_dev* dev = nullptr;
	if (dms_target_get_device(&g_ram_target, path.c_str(), DMS_MODE_READ_WRITE, &dev)) {
		dmskt_fail(t, __FILE__, __LINE__, "cannot open %s", path.c_str());
		return nullptr;
	}
	return dev;
}

void dmskt_close(dms_dev* dev)
{
	if (dev)
		dms_target_put_device(&g_ram_target, dev);
}

int dmskt_parallel(dmskt_thread_fn fn, void* ctx, unsigned int n)
{
	if (n > 8)
		return -DMS_EINVAL;
	std::vector<std::thread> threads;
	for (unsigned int i = 0; i < n; i++)
		threads.emplace_back([fn, ctx, i] { fn(ctx, i); });
	for (auto& th : threads)
		th.join();
	return 0;
}

struct dmskt_bio {
	dms_bio bio{0, 8, DMS_BIO_WRITE};
};

dmskt_bio* dmskt_bio_create(dmskt*)
{
	return new dmskt_bio;
}

void dmskt_bio_destroy(dmskt_bio* b)
{
	delete b;
}

void dmskt_bio_end_or_hold(dmskt_bio* b, int from_irq)
{
	if (!from_irq) {
		dms_bio_endio_held(&b->bio, 0);
		return;
	}
	std::thread([b] {
		fake::AtomicContext irq;
		dms_bio_endio_held(&b->bio, 0);
	}).join();
}

unsigned int dmskt_bio_ended(dmskt_bio* b)
{
	return b->bio.ended() ? 1 : 0;
}

}  // extern "C"

#define DMSKT_HOST_TEST(suite, name)                                                   \
	TEST_F(KunitCasesOnHost, suite##_##name) { dmskt_##suite##_##name(ctx()); }
DMSKT_FORMAT_CASES(DMSKT_HOST_TEST)
DMSKT_TABLE_CASES(DMSKT_HOST_TEST)
DMSKT_STORE_CASES(DMSKT_HOST_TEST)
DMSKT_COPY_CASES(DMSKT_HOST_TEST)
DMSKT_HELD_CASES(DMSKT_HOST_TEST)
