// SPDX-License-Identifier: GPL-2.0
// ProbeTable: an open-addressing hash table of fixed-size entries keyed by
// a non-zero u64 `key` field (0 marks an empty slot).  Linear probing over
// a power-of-two array, at most 3/4 full, backward-shift deletion (no
// tombstones).  The owner supplies the array: growing needs memory, which
// callers allocate outside their spinlocks.
#pragma once

#include "dm-snap.h"
#include "ktl/types.hpp"

namespace snapcore {

template <typename Entry>
class ProbeTable {
public:
	using size_t = ktl::size_t;
	using u64 = ktl::u64;

	ProbeTable() = default;
	ProbeTable(const ProbeTable&) = delete;
	ProbeTable& operator=(const ProbeTable&) = delete;
	~ProbeTable() { dms_free(slots_); }

	size_t capacity() const { return cap_; }
	size_t used() const { return used_; }
	bool has_room() const { return cap_ && fits(used_ + 1, cap_); }
	// The capacity one more entry needs (the current one if enough).
	size_t needed_capacity() const
	{
		if (cap_ && fits(used_ + 1, cap_))
			return cap_;
		size_t cap = cap_ ? cap_ : kMinCapacity;
		while (!fits(used_ + 1, cap))
			cap *= 2;
		return cap;
	}
	// The smallest capacity that holds n entries (0 for none): what a
	// table shrunk to n entries needs.
	static size_t capacity_for(size_t n)
	{
		if (!n)
			return 0;
		size_t cap = kMinCapacity;
		while (!fits(n, cap))
			cap *= 2;
		return cap;
	}

	Entry* find(u64 key) const
	{
		if (!cap_)
			return nullptr;
		const size_t mask = cap_ - 1;
		for (size_t i = home(key); ; i = (i + 1) & mask) {
			if (slots_[i].key == key)
				return &slots_[i];
			if (!slots_[i].key)
				return nullptr;
		}
	}

	// Needs has_room().  Returns the new entry, key set, rest zeroed.
	Entry* put(u64 key)
	{
		const size_t mask = cap_ - 1;
		size_t i = home(key);
		while (slots_[i].key)
			i = (i + 1) & mask;
		slots_[i] = Entry{};
		slots_[i].key = key;
		used_++;
		return &slots_[i];
	}

	void erase(Entry* slot)
	{
		const size_t mask = cap_ - 1;
		size_t hole = static_cast<size_t>(slot - slots_);
		for (size_t pos = (hole + 1) & mask; slots_[pos].key; pos = (pos + 1) & mask) {
			if (may_fill_hole(hole, pos, home(slots_[pos].key))) {
				slots_[hole] = slots_[pos];
				hole = pos;
			}
		}
		slots_[hole] = Entry{};
		used_--;
	}

	// Moves every entry into `slots` (zeroed, `cap` entries) and returns
	// the old array for the caller to free.
	Entry* rehash_into(Entry* slots, size_t cap)
	{
		return rehash_into(slots, cap, [](const Entry&) { return true; });
	}

	// The same keeping only the entries keep(entry) accepts, which `cap`
	// must hold; a null `slots` with cap 0 empties the table (keep must
	// then accept nothing).
	template <typename Keep>
	Entry* rehash_into(Entry* slots, size_t cap, Keep&& keep)
	{
		Entry* old = slots_;
		const size_t old_cap = cap_;
		slots_ = slots;
		cap_ = cap;
		used_ = 0;
		for (size_t i = 0; i < old_cap; i++)
			if (old[i].key && keep(old[i]))
				*put(old[i].key) = old[i];
		return old;
	}

	template <typename Fn>
	void for_each(Fn&& fn) const
	{
		for (size_t i = 0; i < cap_; i++)
			if (slots_[i].key)
				fn(slots_[i]);
	}

private:
	static constexpr size_t kMinCapacity = 16;

	static bool fits(size_t used, size_t cap) { return used * 4 <= cap * 3; }

	// Fibonacci hashing: consecutive keys spread over the table.
	size_t home(u64 key) const
	{
		return static_cast<size_t>((key * 0x9e3779b97f4a7c15ull) >> 20) & (cap_ - 1);
	}

	// Backward-shift deletion: may the entry at pos, whose home slot is
	// `h`, move back into the hole?  Yes unless h lies in (hole, pos].
	static bool may_fill_hole(size_t hole, size_t pos, size_t h)
	{
		if (hole <= pos)
			return h <= hole || h > pos;
		return h <= hole && h > pos;
	}

	Entry* slots_ = nullptr;
	size_t cap_ = 0;
	size_t used_ = 0;
};

}  // namespace snapcore
