// SPDX-License-Identifier: GPL-2.0
// ExceptionTable under concurrency: inserts from many threads into shared
// stripes, duplicates refused exactly once, lookups while stripes grow.
// Real threads on the fake kernel's locks (std::mutex underneath), so
// AddressSanitizer sees any access to a map a grow replaced.
#include <gtest/gtest.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <thread>
#include <vector>

#include "exception_table.hpp"
#include "kernel_test.hpp"
#include "ktl/lock.hpp"

using snapcore::ChunkMap;
using snapcore::ExceptionTable;

namespace {

class ExceptionTableTest : public KernelTest {
protected:
	static std::uint64_t lookup(ExceptionTable& t, std::uint64_t chunk)
	{
		ExceptionTable::Stripe& s = t.stripe(chunk);
		ktl::SpinGuard g(s.lock);
		return ExceptionTable::lookup_locked(s, chunk);
	}

	// What thread t inserts as its i-th chunk: runs of consecutive chunks
	// (block entries) and scattered ones (singles), interleaved.
	static std::uint64_t old_of(unsigned int t, unsigned int i)
	{
		const std::uint64_t base = static_cast<std::uint64_t>(t) << 32;
		return (i / 64) % 2 ? base + 1000000 + (i * 7919u) % 1000003u : base + i;
	}
	static std::uint64_t new_of(unsigned int t, unsigned int i)
	{
		return (static_cast<std::uint64_t>(t) << 32) + 5 + i;
	}
};

}  // namespace

TEST_F(ExceptionTableTest, DisjointInsertsFromManyThreadsAreAllFound)
{
	ExceptionTable table;
	ASSERT_EQ(table.init(), 0);
	constexpr unsigned int kThreads = 8, kEach = 4000;
	std::atomic<unsigned int> failures{0};
	std::vector<std::thread> threads;
	for (unsigned int t = 0; t < kThreads; t++) {
		threads.emplace_back([&, t] {
			for (unsigned int i = 0; i < kEach; i++)
				if (table.insert(old_of(t, i), new_of(t, i), t % 2))
					failures++;
		});
	}
	for (auto& th : threads)
		th.join();

	EXPECT_EQ(failures, 0u);
	EXPECT_EQ(table.count(), kThreads * kEach);
	for (unsigned int t = 0; t < kThreads; t++)
		for (unsigned int i = 0; i < kEach; i++)
			ASSERT_EQ(lookup(table, old_of(t, i)), new_of(t, i)) << "thread " << t << " item " << i;
	EXPECT_EQ(lookup(table, 1ull << 40), ChunkMap::kNone);
}

TEST_F(ExceptionTableTest, OverlappingInsertsRefuseDuplicatesExactlyOnce)
{
	ExceptionTable table;
	ASSERT_EQ(table.init(), 0);
	constexpr unsigned int kThreads = 8, kChunks = 5000;
	// results[t][c]: what thread t got inserting chunk c.
	std::vector<std::vector<int>> results(kThreads, std::vector<int>(kChunks, 1));
	std::vector<std::thread> threads;
	for (unsigned int t = 0; t < kThreads; t++) {
		threads.emplace_back([&, t] {
			// Each thread walks the chunks in its own order: steps
			// coprime to 5000 visit every chunk once.
			static constexpr unsigned int kSteps[kThreads] = {1, 3, 7, 9, 11, 13, 17, 19};
			for (unsigned int i = 0; i < kChunks; i++) {
				const unsigned int c = (i * kSteps[t] + t * 613) % kChunks;
				results[t][c] = table.insert(c, 100000 * (t + 1) + c, false);
			}
		});
	}
	for (auto& th : threads)
		th.join();

	for (unsigned int c = 0; c < kChunks; c++) {
		unsigned int inserted = 0, refused = 0, winner = 0;
		for (unsigned int t = 0; t < kThreads; t++) {
			if (results[t][c] == 0) {
				inserted++;
				winner = t;
			} else if (results[t][c] == -EEXIST) {
				refused++;
			}
		}
		ASSERT_EQ(inserted, 1u) << "chunk " << c;
		ASSERT_EQ(refused, kThreads - 1) << "chunk " << c;
		ASSERT_EQ(lookup(table, c), 100000 * (winner + 1) + c) << "chunk " << c;
	}
	EXPECT_EQ(table.count(), kChunks);
}

TEST_F(ExceptionTableTest, LookupsWhileStripesGrowSeeOnlyCorrectMappings)
{
	ExceptionTable table;
	ASSERT_EQ(table.init(), 0);
	constexpr unsigned int kInserts = 40000, kReaders = 4;
	std::atomic<unsigned int> published{0};	// items [0, published) are in
	std::atomic<bool> stop{false};
	std::atomic<unsigned long> wrong{0}, missing{0}, lookups{0};
	std::vector<std::thread> readers;
	for (unsigned int r = 0; r < kReaders; r++) {
		readers.emplace_back([&, r] {
			std::uint32_t x = 12345 + r;
			while (!stop.load()) {
				x = x * 1664525u + 1013904223u;
				const unsigned int n = published.load();
				const unsigned int i = (x >> 8) % kInserts;
				const std::uint64_t got = lookup(table, old_of(0, i));
				if (i < n && got != new_of(0, i))
					missing++;
				else if (got != ChunkMap::kNone && got != new_of(0, i))
					wrong++;
				lookups++;
			}
		});
	}
	for (unsigned int i = 0; i < kInserts; i++) {
		ASSERT_EQ(table.insert(old_of(0, i), new_of(0, i), true), 0);
		published.store(i + 1);
	}
	// Let the readers see the finished table too.
	const unsigned long seen = lookups.load();
	ASSERT_TRUE(fake::wait_until([&] { return lookups.load() > seen + 1000; }));
	stop = true;
	for (auto& th : readers)
		th.join();

	EXPECT_EQ(wrong, 0u);
	EXPECT_EQ(missing, 0u);
	EXPECT_EQ(table.count(), kInserts);
	// Growth really happened: half the items are scattered singles of
	// 16 bytes each.
	EXPECT_GT(table.memory_bytes(), sizeof(ExceptionTable::Stripe) * ExceptionTable::kStripes +
						kInserts / 2 * sizeof(ChunkMap::Single));
}

TEST_F(ExceptionTableTest, InsertThatCannotGrowFailsAndChangesNothing)
{
	ExceptionTable table;
	ASSERT_EQ(table.init(), 0);
	// The first insert into a stripe needs its first map memory.
	kernel.fail_allocation(1);
	EXPECT_EQ(table.insert(77, 5, true), -ENOMEM);
	EXPECT_EQ(lookup(table, 77), ChunkMap::kNone);
	EXPECT_EQ(table.count(), 0u);
	EXPECT_EQ(table.insert(77, 5, true), 0);
	EXPECT_EQ(lookup(table, 77), 5u);
	EXPECT_EQ(table.insert(77, 6, true), -EEXIST);
	EXPECT_EQ(lookup(table, 77), 5u);
}
