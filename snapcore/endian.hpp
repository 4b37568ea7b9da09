// SPDX-License-Identifier: GPL-2.0
// Little-endian loads and stores through bytes: correct on any host byte
// order and any alignment, and compiled to plain moves on x86.
#pragma once

#include "ktl/types.hpp"

namespace snapcore {

inline ktl::u32 load_le32(const ktl::u8* p)
{
	return static_cast<ktl::u32>(p[0]) | static_cast<ktl::u32>(p[1]) << 8 |
	       static_cast<ktl::u32>(p[2]) << 16 | static_cast<ktl::u32>(p[3]) << 24;
}

inline ktl::u64 load_le64(const ktl::u8* p)
{
	return static_cast<ktl::u64>(load_le32(p)) |
	       static_cast<ktl::u64>(load_le32(p + 4)) << 32;
}

inline void store_le32(ktl::u8* p, ktl::u32 v)
{
	p[0] = static_cast<ktl::u8>(v);
	p[1] = static_cast<ktl::u8>(v >> 8);
	p[2] = static_cast<ktl::u8>(v >> 16);
	p[3] = static_cast<ktl::u8>(v >> 24);
}

inline void store_le64(ktl::u8* p, ktl::u64 v)
{
	store_le32(p, static_cast<ktl::u32>(v));
	store_le32(p + 4, static_cast<ktl::u32>(v >> 32));
}

}  // namespace snapcore
