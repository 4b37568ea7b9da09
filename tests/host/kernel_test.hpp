// SPDX-License-Identifier: GPL-2.0
// Base fixtures for tests on the fake kernel.
//
// KernelTest: a fresh kernel per case, and after it no live allocation, no
// device still held and no misuse of the services.  CoreTest adds the
// core's module-wide state (dmscore_init/dmscore_exit), as module load and
// unload do.  Objects a test creates must be gone by TearDown(), so keep
// core handles in the test body, not in the fixture.
#pragma once

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "fake_kernel.hpp"

class KernelTest : public ::testing::Test {
protected:
	void SetUp() override { kernel.reset(); }

	void TearDown() override
	{
		kernel.drain();
		EXPECT_EQ(kernel.live_allocations(), 0u) << "memory leaked";
		EXPECT_EQ(kernel.held_devices(), 0u) << "devices not put back";
		EXPECT_EQ(kernel.take_misuse(), std::vector<std::string>{});
	}

	fake::FakeKernel& kernel = fake::FakeKernel::instance();
};

class CoreTest : public KernelTest {
protected:
	void SetUp() override
	{
		KernelTest::SetUp();
		ASSERT_EQ(dmscore_init(), 0);
	}

	void TearDown() override
	{
		dmscore_exit();
		KernelTest::TearDown();
	}
};
