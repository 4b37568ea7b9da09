// SPDX-License-Identifier: GPL-2.0
// The few <utility>/<algorithm> pieces the core needs, freestanding.
#pragma once

#include "ktl/types.hpp"

namespace ktl {

template <typename T> struct remove_reference { using type = T; };
template <typename T> struct remove_reference<T&> { using type = T; };
template <typename T> struct remove_reference<T&&> { using type = T; };

template <typename T>
constexpr typename remove_reference<T>::type&& move(T&& t) noexcept
{
	return static_cast<typename remove_reference<T>::type&&>(t);
}

template <typename T>
constexpr T&& forward(typename remove_reference<T>::type& t) noexcept
{
	return static_cast<T&&>(t);
}

template <typename T> constexpr const T& min(const T& a, const T& b) { return b < a ? b : a; }
template <typename T> constexpr const T& max(const T& a, const T& b) { return a < b ? b : a; }

template <typename T> constexpr bool is_power_of_2(T v) { return v != 0 && (v & (v - 1)) == 0; }

// Index of the lowest set bit; v must not be 0.
constexpr u32 ffs_index(u64 v) { return static_cast<u32>(__builtin_ctzll(v)); }

}  // namespace ktl
