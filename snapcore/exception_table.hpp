// SPDX-License-Identifier: GPL-2.0
// ExceptionTable: a snapshot's completed and pending exceptions, split into
// lock stripes by origin chunk so that I/O to different chunks never
// contends on one lock (the in-tree driver locks per hash bucket since 5.2
// for the same reason).
//
// Each stripe holds, under one spinlock: the completed exceptions of its
// chunks (a ChunkMap) and the chain of pending exceptions.  Callers lock a
// stripe and use the *_locked() members.
//
// It also counts snapshot reads in flight to the origin, per chunk offset
// within a 64-chunk block (exact for the chunks of one block; blocks that
// share a stripe share counters, which only delays).  Counting up happens
// under the stripe lock, together with the check that the chunk has no
// exception and no pending one; counting down happens in bio completion,
// possibly in interrupt context, so the counters are atomics and the
// spinlock is never taken there.
#pragma once

#include "chunk_map.hpp"
#include "dm-snap.h"
#include "ktl/lock.hpp"
#include "ktl/types.hpp"
#include "pending.hpp"

namespace snapcore {

class ExceptionTable {
public:
	static constexpr unsigned kStripes = 128;
	static constexpr unsigned kTrackSlots = ChunkMap::kBlockChunks;

	struct Stripe {
		dms_spinlock* lock;
		ChunkMap complete;
		Pending* pending;
		ktl::Atomic<ktl::u32> tracked[kTrackSlots];
	};

	ExceptionTable() = default;
	~ExceptionTable();
	ExceptionTable(const ExceptionTable&) = delete;
	ExceptionTable& operator=(const ExceptionTable&) = delete;

	int init();
	// Exchanges contents with another table (handover); neither may be in
	// use meanwhile.
	void swap(ExceptionTable& other)
	{
		Stripe* t = stripes_;
		stripes_ = other.stripes_;
		other.stripes_ = t;
	}

	Stripe& stripe(ktl::u64 chunk) { return stripes_[stripe_index(chunk)]; }

	// Inserts a completed exception; takes the stripe lock itself and
	// grows the stripe's map outside it.  -ENOMEM, or -EEXIST for a chunk
	// that already has one (a corrupt COW device, at activation).
	int insert(ktl::u64 old, ktl::u64 new_chunk, bool noio);
	// The same for a run: old + i -> new_chunk + i for i < len, with one
	// lock per aligned block of chunks rather than one per exception
	// (activation loads runs of consecutive exceptions).  On an error,
	// the chunks before the failing one stay inserted.
	int insert_run(ktl::u64 old, ktl::u64 new_chunk, ktl::u64 len, bool noio);

	// Loads the exceptions activation reads, in on-disk order: add()
	// them one by one, then flush().  Runs of consecutive ones go to
	// insert_run() (blocks).  A lone exception (random writes leave
	// mostly those) that fits a sorted entry is set aside instead, and
	// flush() sorts each stripe's share straight into that stripe's sorted
	// array (ChunkMap::adopt_sorted): inserting each into the singles
	// table, for compact() to move out again, was most of the time of
	// activating 200,000 scattered exceptions.  A stripe that already
	// has a sorted array (a second flush) takes its share one by one.
	// Errors as insert's, from add() or flush(), possibly for an earlier
	// exception; after an error the table holds part of what was added.
	class RunLoader {
	public:
		explicit RunLoader(ExceptionTable& table) : table_(table) {}
		~RunLoader() { dms_free(lone_); }
		RunLoader(const RunLoader&) = delete;
		RunLoader& operator=(const RunLoader&) = delete;
		int add(ktl::u64 old, ktl::u64 new_chunk)
		{
			if (len_ && old == old_ + len_ && new_chunk == new_ + len_) {
				len_++;
				return 0;
			}
			const int r = end_run();
			old_ = old;
			new_ = new_chunk;
			len_ = 1;
			return r;
		}
		int flush();

	private:
		int end_run();
		int set_aside(ktl::u64 entry);

		ExceptionTable& table_;
		ktl::u64 old_ = 0, new_ = 0, len_ = 0;
		ktl::u64* lone_ = nullptr;	// sorted entries, load order
		ktl::size_t lone_n_ = 0, lone_cap_ = 0;
	};

	// Removes the completed exception of `old` (merge); takes the stripe
	// lock.  False if there is none.
	bool erase(ktl::u64 old);

	// Packs each stripe's scattered exceptions into its sorted array
	// (chunk_map.hpp), once activation has loaded the exceptions on disk:
	// from then on those are only erased.  Takes the stripe locks, and
	// allocates outside them.  Only saves memory, so it cannot fail: a
	// stripe whose arrays cannot be allocated keeps its singles.
	void compact();

	static ktl::u64 lookup_locked(Stripe& s, ktl::u64 old) { return s.complete.lookup(old); }
	static Pending* find_pending_locked(Stripe& s, ktl::u64 old);
	static void add_pending_locked(Stripe& s, Pending* pe);
	static void remove_pending_locked(Stripe& s, Pending* pe);
	static void track_locked(Stripe& s, ktl::u64 chunk) { s.tracked[track_slot(chunk)].fetch_add(1); }
	// Any context, no lock.
	static void untrack(Stripe& s, ktl::u64 chunk) { s.tracked[track_slot(chunk)].fetch_sub(1); }
	static bool is_tracked(Stripe& s, ktl::u64 chunk) { return s.tracked[track_slot(chunk)].load(); }

	ktl::size_t count();
	ktl::size_t memory_bytes();

private:
	static void compact_stripe(Stripe& s);
	// RunLoader::flush(): n sorted entries, any order, into the stripes.
	int place_lone(const ktl::u64* lone, ktl::size_t n);
	int insert_in_block(ktl::u64 old, ktl::u64 new_chunk, ktl::u64 n, bool noio);

	// By 64-chunk block, so that a run of consecutive exceptions lands
	// in one ChunkMap and packs into its blocks.
	static unsigned stripe_index(ktl::u64 chunk)
	{
		const ktl::u64 block = chunk >> ChunkMap::kBlockShift;
		return static_cast<unsigned>((block * 0x9e3779b97f4a7c15ull) >> 57) & (kStripes - 1);
	}
	static unsigned track_slot(ktl::u64 chunk)
	{
		return static_cast<unsigned>(chunk) & (kTrackSlots - 1);
	}

	Stripe* stripes_ = nullptr;
};

}  // namespace snapcore
