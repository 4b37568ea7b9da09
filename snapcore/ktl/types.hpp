// SPDX-License-Identifier: GPL-2.0
// Fixed-width integer names for the core.  Builtin types only: the core is
// compiled freestanding in the kernel and hosted in unit tests, and must not
// depend on either side's <stdint.h>.
#pragma once

namespace ktl {

using u8 = unsigned char;
using u16 = unsigned short;
using u32 = unsigned int;
using u64 = unsigned long long;
using i32 = int;
using i64 = long long;
using size_t = __SIZE_TYPE__;
using uintptr_t = __UINTPTR_TYPE__;

static_assert(sizeof(u16) == 2 && sizeof(u32) == 4 && sizeof(u64) == 8,
	      "unexpected integer widths");

constexpr u32 kU32Max = 0xffffffffu;
constexpr i32 kIntMax = 0x7fffffff;

}  // namespace ktl
