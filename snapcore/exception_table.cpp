// SPDX-License-Identifier: GPL-2.0
#include "exception_table.hpp"

#include "ktl/lock.hpp"
#include "ktl/new.hpp"

namespace snapcore {

ExceptionTable::~ExceptionTable()
{
	if (!stripes_)
		return;
	for (unsigned i = 0; i < kStripes; i++) {
		stripes_[i].complete.~ChunkMap();
		if (stripes_[i].lock)
			dms_spinlock_destroy(stripes_[i].lock);
	}
	dms_free(stripes_);
}

int ExceptionTable::init()
{
	stripes_ = static_cast<Stripe*>(dms_zalloc(sizeof(Stripe) * kStripes));
	if (!stripes_)
		return -DMS_ENOMEM;
	// Every map is constructed before anything can fail, so the
	// destructor may destroy them all.
	for (unsigned i = 0; i < kStripes; i++)
		new (&stripes_[i].complete) ChunkMap();
	for (unsigned i = 0; i < kStripes; i++) {
		stripes_[i].lock = dms_spinlock_create(DMS_LOCK_STRIPE);
		if (!stripes_[i].lock)
			return -DMS_ENOMEM;
	}
	return 0;
}

bool ExceptionTable::erase(ktl::u64 old)
{
	Stripe& s = stripe(old);
	ktl::SpinGuard g(s.lock);
	return s.complete.erase(old);
}

int ExceptionTable::insert(ktl::u64 old, ktl::u64 new_chunk, bool noio)
{
	return insert_in_block(old, new_chunk, 1, noio);
}

int ExceptionTable::insert_run(ktl::u64 old, ktl::u64 new_chunk, ktl::u64 len, bool noio)
{
	while (len) {
		const ktl::u64 n = ktl::min<ktl::u64>(len, ChunkMap::kBlockChunks - (old & (ChunkMap::kBlockChunks - 1)));
		if (int r = insert_in_block(old, new_chunk, n, noio))
			return r;
		old += n;
		new_chunk += n;
		len -= n;
	}
	return 0;
}

// Chunks old .. old + n - 1 lie in one aligned block, so in one stripe:
// one lock for all of them, dropped only to grow the map.
int ExceptionTable::insert_in_block(ktl::u64 old, ktl::u64 new_chunk, ktl::u64 n, bool noio)
{
	Stripe& s = stripe(old);
	ktl::u64 done = 0;
	for (;;) {
		ktl::size_t want_singles, want_blocks;
		bool grow_singles, grow_blocks;
		{
			ktl::SpinGuard g(s.lock);
			for (; done < n; done++) {
				const ChunkMap::InsertResult r = s.complete.try_insert(old + done, new_chunk + done);
				if (r == ChunkMap::InsertResult::kDuplicate)
					return -DMS_EEXIST;
				if (r == ChunkMap::InsertResult::kNeedMemory)
					break;
			}
			if (done == n)
				return 0;
			want_singles = s.complete.needed_single_capacity();
			want_blocks = s.complete.needed_block_capacity();
			grow_singles = want_singles > s.complete.single_capacity();
			grow_blocks = want_blocks > s.complete.block_capacity();
		}
		// Allocate outside the spinlock, then recheck under it: another
		// thread may have grown the map meanwhile.
		auto alloc = [noio](ktl::size_t bytes) {
			return noio ? dms_zalloc_noio(bytes) : dms_zalloc(bytes);
		};
		ChunkMap::Single* singles = nullptr;
		ChunkMap::Block* blocks = nullptr;
		if (grow_singles)
			singles = static_cast<ChunkMap::Single*>(alloc(want_singles * sizeof(*singles)));
		if (grow_blocks)
			blocks = static_cast<ChunkMap::Block*>(alloc(want_blocks * sizeof(*blocks)));
		if ((grow_singles && !singles) || (grow_blocks && !blocks)) {
			dms_free(singles);
			dms_free(blocks);
			return -DMS_ENOMEM;
		}
		ChunkMap::Single* unused_singles = nullptr;
		ChunkMap::Block* unused_blocks = nullptr;
		{
			ktl::SpinGuard g(s.lock);
			if (singles && s.complete.single_capacity() >= want_singles) {
				unused_singles = singles;
				singles = nullptr;
			}
			if (blocks && s.complete.block_capacity() >= want_blocks) {
				unused_blocks = blocks;
				blocks = nullptr;
			}
			ChunkMap::Single* old_singles;
			ChunkMap::Block* old_blocks;
			s.complete.grow(singles, want_singles, blocks, want_blocks, &old_singles,
					&old_blocks);
			if (old_singles)
				unused_singles = old_singles;
			if (old_blocks)
				unused_blocks = old_blocks;
		}
		dms_free(unused_singles);
		dms_free(unused_blocks);
	}
}

int ExceptionTable::RunLoader::end_run()
{
	const ktl::u64 len = len_;
	len_ = 0;
	if (!len)
		return 0;
	if (len == 1 && ChunkMap::fits_sorted(old_, new_))
		return set_aside(ChunkMap::sorted_entry(old_, new_));
	return table_.insert_run(old_, new_, len, false);
}

int ExceptionTable::RunLoader::set_aside(ktl::u64 entry)
{
	if (lone_n_ == lone_cap_) {
		const ktl::size_t cap = lone_cap_ ? 2 * lone_cap_ : 1024;
		auto* grown = static_cast<ktl::u64*>(dms_zalloc(cap * sizeof(ktl::u64)));
		if (!grown)
			return -DMS_ENOMEM;
		for (ktl::size_t i = 0; i < lone_n_; i++)
			grown[i] = lone_[i];
		dms_free(lone_);
		lone_ = grown;
		lone_cap_ = cap;
	}
	lone_[lone_n_++] = entry;
	return 0;
}

int ExceptionTable::RunLoader::flush()
{
	int r = end_run();
	if (!r)
		r = table_.place_lone(lone_, lone_n_);
	dms_free(lone_);
	lone_ = nullptr;
	lone_n_ = lone_cap_ = 0;
	return r;
}

// Two passes over the entries: count each stripe's share, then copy it
// into an array of exactly that size, which the stripe's map adopts once
// sorted (sorting outside the lock).
int ExceptionTable::place_lone(const ktl::u64* lone, ktl::size_t n)
{
	if (!n)
		return 0;
	struct Share {
		ktl::u64* entries;
		ktl::size_t n;
	};
	auto* shares = static_cast<Share*>(dms_zalloc(kStripes * sizeof(Share)));
	if (!shares)
		return -DMS_ENOMEM;
	int r = 0;
	for (ktl::size_t i = 0; i < n; i++)
		shares[stripe_index(lone[i] >> 32)].n++;
	for (unsigned k = 0; k < kStripes && !r; k++) {
		if (shares[k].n &&
		    !(shares[k].entries = static_cast<ktl::u64*>(dms_zalloc(shares[k].n * sizeof(ktl::u64)))))
			r = -DMS_ENOMEM;
		shares[k].n = 0;
	}
	if (!r)
		for (ktl::size_t i = 0; i < n; i++) {
			Share& sh = shares[stripe_index(lone[i] >> 32)];
			sh.entries[sh.n++] = lone[i];
		}
	for (unsigned k = 0; k < kStripes; k++) {
		Share& sh = shares[k];
		if (r || !sh.n) {
			dms_free(sh.entries);
			continue;
		}
		ChunkMap::sort_entries(sh.entries, sh.n);
		Stripe& s = stripes_[k];
		bool adopted = false, fresh;
		{
			ktl::SpinGuard g(s.lock);
			fresh = !s.complete.has_sorted();
			if (fresh)
				adopted = s.complete.adopt_sorted(sh.entries, sh.n);
		}
		if (!fresh) {
			// The new half of an entry: its low 32 bits.
			for (ktl::size_t i = 0; i < sh.n && !r; i++)
				r = insert(sh.entries[i] >> 32, sh.entries[i] & ChunkMap::kTombstone, false);
		} else if (!adopted) {
			r = -DMS_EEXIST;
		}
		if (!adopted)
			dms_free(sh.entries);
	}
	dms_free(shares);
	return r;
}

void ExceptionTable::compact()
{
	for (unsigned i = 0; i < kStripes; i++)
		compact_stripe(stripes_[i]);
}

void ExceptionTable::compact_stripe(Stripe& s)
{
	for (;;) {
		ChunkMap::CompactPlan plan;
		{
			ktl::SpinGuard g(s.lock);
			plan = s.complete.compact_plan();
		}
		if (!plan.sorted)
			return;
		auto* sorted = static_cast<ktl::u64*>(dms_zalloc(plan.sorted * sizeof(ktl::u64)));
		ChunkMap::Single* singles = nullptr;
		if (plan.single_capacity)
			singles = static_cast<ChunkMap::Single*>(
				dms_zalloc(plan.single_capacity * sizeof(*singles)));
		if (!sorted || (plan.single_capacity && !singles)) {
			dms_free(sorted);
			dms_free(singles);
			return;
		}
		// Recheck under the lock: the map may have changed meanwhile
		// (not at activation, but the plan must match what compact()
		// finds).
		ktl::u64* unused_sorted = sorted;
		ChunkMap::Single* unused_singles = singles;
		ChunkMap::Block* unused_blocks = nullptr;
		bool done = false;
		{
			ktl::SpinGuard g(s.lock);
			if (s.complete.compact_plan() == plan) {
				s.complete.compact(sorted, plan, singles, &unused_sorted,
						   &unused_singles, &unused_blocks);
				done = true;
			}
		}
		dms_free(unused_sorted);
		dms_free(unused_singles);
		dms_free(unused_blocks);
		if (done)
			return;
	}
}

Pending* ExceptionTable::find_pending_locked(Stripe& s, ktl::u64 old)
{
	for (Pending* pe = s.pending; pe; pe = pe->stripe_next)
		if (pe->old_chunk == old)
			return pe;
	return nullptr;
}

void ExceptionTable::add_pending_locked(Stripe& s, Pending* pe)
{
	pe->stripe_next = s.pending;
	s.pending = pe;
}

void ExceptionTable::remove_pending_locked(Stripe& s, Pending* pe)
{
	for (Pending** p = &s.pending; *p; p = &(*p)->stripe_next) {
		if (*p == pe) {
			*p = pe->stripe_next;
			return;
		}
	}
}

ktl::size_t ExceptionTable::count()
{
	ktl::size_t n = 0;
	for (unsigned i = 0; i < kStripes; i++) {
		ktl::SpinGuard g(stripes_[i].lock);
		n += stripes_[i].complete.size();
	}
	return n;
}

ktl::size_t ExceptionTable::memory_bytes()
{
	ktl::size_t n = sizeof(Stripe) * kStripes;
	for (unsigned i = 0; i < kStripes; i++) {
		ktl::SpinGuard g(stripes_[i].lock);
		n += stripes_[i].complete.memory_bytes();
	}
	return n;
}

}  // namespace snapcore
