// SPDX-License-Identifier: GPL-2.0
// Suite dm-snapshot-exception-table: the lock-striped exception table on
// kernel spinlocks (lockdep watching), from several kernel threads at once.
#include "exception_table.hpp"
#include "kt.hpp"
#include "ktl/lock.hpp"
#include "ktl/new.hpp"

using snapcore::ChunkMap;
using snapcore::ExceptionTable;
using ktl::u64;

namespace {

u64 lookup(ExceptionTable& table, u64 chunk)
{
	ExceptionTable::Stripe& s = table.stripe(chunk);
	ktl::SpinGuard g(s.lock);
	return ExceptionTable::lookup_locked(s, chunk);
}

}  // namespace

extern "C" void dmskt_table_chunk_map_runs_and_singles(dmskt* t)
{
	ExceptionTable table;
	KT_ASSERT(t, table.init() == 0);
	// A sequential run (one block), a run across a metadata jump, and
	// scattered singles.
	for (u64 i = 0; i < 64; i++)
		KT_EXPECT_EQ(t, table.insert(128 + i, 1000 + i, true), 0);
	for (u64 i = 0; i < 64; i++)
		KT_EXPECT_EQ(t, table.insert(256 + i, 2000 + i + (i >= 40 ? 1 : 0), true), 0);
	for (u64 i = 0; i < 50; i++)
		KT_EXPECT_EQ(t, table.insert(100000 + i * 977, 5000 + i, true), 0);
	KT_EXPECT_EQ(t, table.insert(130, 7, true), -DMS_EEXIST);
	KT_EXPECT_EQ(t, table.count(), 178u);
	for (u64 i = 0; i < 64; i++) {
		KT_EXPECT_EQ(t, lookup(table, 128 + i), 1000 + i);
		KT_EXPECT_EQ(t, lookup(table, 256 + i), 2000 + i + (i >= 40 ? 1 : 0));
	}
	for (u64 i = 0; i < 50; i++)
		KT_EXPECT_EQ(t, lookup(table, 100000 + i * 977), 5000 + i);
	KT_EXPECT_EQ(t, lookup(table, 127), ChunkMap::kNone);
	KT_EXPECT_EQ(t, lookup(table, 320), ChunkMap::kNone);
	KT_EXPECT(t, table.erase(130));
	KT_EXPECT(t, !table.erase(130));
	KT_EXPECT_EQ(t, lookup(table, 130), ChunkMap::kNone);
	KT_EXPECT_EQ(t, lookup(table, 131), 1003u);
	KT_EXPECT_EQ(t, table.count(), 177u);
}

namespace {

constexpr unsigned int kThreads = 4;
constexpr u64 kPerThread = 8192;

struct Shared {
	ExceptionTable table;
	ktl::Atomic<u64> insert_errors{0};
	ktl::Atomic<u64> wrong_lookups{0};
};

// Thread i owns chunks k * kThreads + i (so all threads hit every stripe)
// and, while inserting, reads the chunks of thread i + 1: each must be
// either absent or right, never anything else.
void worker(void* ctx, unsigned int i)
{
	auto* sh = static_cast<Shared*>(ctx);
	const unsigned int other = (i + 1) % kThreads;
	for (u64 k = 0; k < kPerThread; k++) {
		const u64 mine = k * kThreads + i;
		if (sh->table.insert(mine, mine * 3 + 7, true))
			sh->insert_errors.fetch_add(1);
		const u64 theirs = ((kPerThread - 1 - k) * kThreads) + other;
		const u64 got = lookup(sh->table, theirs);
		if (got != ChunkMap::kNone && got != theirs * 3 + 7)
			sh->wrong_lookups.fetch_add(1);
	}
}

}  // namespace

extern "C" void dmskt_table_concurrent_insert_and_lookup(dmskt* t)
{
	Shared* sh = ktl::make<Shared>();
	KT_ASSERT(t, sh);
	if (sh->table.init() == 0 && dmskt_parallel(&worker, sh, kThreads) == 0) {
		KT_EXPECT_EQ(t, sh->insert_errors.load(), 0u);
		KT_EXPECT_EQ(t, sh->wrong_lookups.load(), 0u);
		KT_EXPECT_EQ(t, sh->table.count(), kThreads * kPerThread);
		u64 wrong = 0;
		for (u64 c = 0; c < kThreads * kPerThread; c++)
			wrong += lookup(sh->table, c) != c * 3 + 7;
		KT_EXPECT_EQ(t, wrong, 0u);
	} else {
		dmskt_fail(t, __FILE__, __LINE__, "setup failed");
	}
	ktl::destroy(sh);
}
