// SPDX-License-Identifier: GPL-2.0
// Expectations for the C++ KUnit cases: each failure is reported through
// the glue (KUNIT_FAIL) with file, line and the values involved.
#pragma once

#include "kunit-abi.h"
#include "ktl/types.hpp"

#define KT_EXPECT(t, cond)                                                             \
	do {                                                                           \
		if (!(cond))                                                           \
			dmskt_fail((t), __FILE__, __LINE__, "expected %s", #cond);     \
	} while (0)

#define KT_EXPECT_EQ(t, a, b)                                                          \
	do {                                                                           \
		const auto kt_a_ = (a);                                                \
		const auto kt_b_ = (b);                                                \
		if (!(kt_a_ == kt_b_))                                                 \
			dmskt_fail((t), __FILE__, __LINE__, "%s == %s: %llu != %llu", #a, #b, \
				   static_cast<unsigned long long>(kt_a_),             \
				   static_cast<unsigned long long>(kt_b_));            \
	} while (0)

// Ends the case (returns from it) when the condition fails.
#define KT_ASSERT(t, cond)                                                             \
	do {                                                                           \
		if (!(cond)) {                                                         \
			dmskt_fail((t), __FILE__, __LINE__, "assertion %s", #cond);    \
			return;                                                        \
		}                                                                      \
	} while (0)

namespace kt {

// A zeroed buffer from the kernel allocator, freed on scope exit.
class Buffer {
public:
	explicit Buffer(ktl::size_t bytes) : p_(static_cast<ktl::u8*>(dms_zalloc(bytes))), n_(bytes) {}
	~Buffer() { dms_free(p_); }
	Buffer(const Buffer&) = delete;
	Buffer& operator=(const Buffer&) = delete;
	ktl::u8* get() const { return p_; }
	ktl::size_t size() const { return n_; }
	explicit operator bool() const { return p_ != nullptr; }

private:
	ktl::u8* p_;
	ktl::size_t n_;
};

// A brd disk held for the case.
class Ram {
public:
	Ram(dmskt* t, unsigned int index) : d_(dmskt_open_ram(t, index)) {}
	~Ram() { dmskt_close(d_); }
	Ram(const Ram&) = delete;
	Ram& operator=(const Ram&) = delete;
	dms_dev* get() const { return d_; }
	explicit operator bool() const { return d_ != nullptr; }

private:
	dms_dev* d_;
};

// Byte i of sector s under `seed`: content that shows misplaced sectors.
inline ktl::u8 pattern_byte(unsigned int seed, ktl::u64 sector, unsigned int i)
{
	ktl::u32 x = seed * 2654435761u ^ static_cast<ktl::u32>(sector) * 40503u ^ i * 2246822519u;
	x ^= x >> 15;
	x *= 2246822519u;
	x ^= x >> 13;
	return static_cast<ktl::u8>(x);
}

inline void fill(ktl::u8* buf, unsigned int seed, ktl::u64 first_sector, ktl::u64 sectors)
{
	for (ktl::u64 s = 0; s < sectors; s++)
		for (unsigned int i = 0; i < 512; i++)
			buf[s * 512 + i] = pattern_byte(seed, first_sector + s, i);
}

// Sectors that differ from the pattern (0: all match).
inline ktl::u64 mismatches(const ktl::u8* buf, unsigned int seed, ktl::u64 first_sector,
			   ktl::u64 sectors)
{
	ktl::u64 bad = 0;
	for (ktl::u64 s = 0; s < sectors; s++) {
		for (unsigned int i = 0; i < 512; i++) {
			if (buf[s * 512 + i] != pattern_byte(seed, first_sector + s, i)) {
				bad++;
				break;
			}
		}
	}
	return bad;
}

}  // namespace kt
