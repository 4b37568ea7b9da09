// SPDX-License-Identifier: GPL-2.0
// Fallible allocation for the core.
//
// There is no throwing operator new here: objects are created with
// ktl::make<T>(...), which returns nullptr when the kernel allocator fails,
// and destroyed with ktl::destroy().  Memory comes from dms_zalloc(), so the
// same code runs on kernel memory in the module and on the fake kernel's
// (failure-injecting) allocator in unit tests.
#pragma once

#include "dm-snap.h"
#include "ktl/utility.hpp"

#if __STDC_HOSTED__
#include <new>
#else
inline void* operator new(__SIZE_TYPE__, void* where) noexcept { return where; }
#endif

namespace ktl {

template <typename T, typename... Args>
T* make(Args&&... args)
{
	void* mem = dms_zalloc(sizeof(T));
	if (!mem)
		return nullptr;
	return new (mem) T(forward<Args>(args)...);
}

template <typename T>
void destroy(T* obj)
{
	if (!obj)
		return;
	obj->~T();
	dms_free(obj);
}

// Sole owner of an object made with make<T>(); destroys it on scope exit
// unless release()d.  Keeps constructor unwind paths free of gotos.
template <typename T>
class Owned {
public:
	constexpr Owned() = default;
	explicit Owned(T* p) : p_(p) {}
	Owned(const Owned&) = delete;
	Owned& operator=(const Owned&) = delete;
	Owned(Owned&& o) noexcept : p_(o.release()) {}
	Owned& operator=(Owned&& o) noexcept
	{
		if (this != &o) {
			destroy(p_);
			p_ = o.release();
		}
		return *this;
	}
	~Owned() { destroy(p_); }

	T* get() const { return p_; }
	T* operator->() const { return p_; }
	T& operator*() const { return *p_; }
	explicit operator bool() const { return p_ != nullptr; }
	[[nodiscard]] T* release()
	{
		T* p = p_;
		p_ = nullptr;
		return p;
	}

private:
	T* p_ = nullptr;
};

}  // namespace ktl
