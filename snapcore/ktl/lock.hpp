// SPDX-License-Identifier: GPL-2.0
// Scoped lock guards over the shim's locks: a lock taken is a lock
// released, on every return path.
#pragma once

#include "dm-snap.h"

namespace ktl {

class [[nodiscard]] SpinGuard {
public:
	explicit SpinGuard(dms_spinlock* l) : l_(l) { dms_spin_lock(l_); }
	~SpinGuard() { dms_spin_unlock(l_); }
	SpinGuard(const SpinGuard&) = delete;
	SpinGuard& operator=(const SpinGuard&) = delete;

private:
	dms_spinlock* l_;
};

// For a lock also taken in bio completion context (possibly an interrupt):
// interrupts stay off while it is held.
class [[nodiscard]] IrqSpinGuard {
public:
	explicit IrqSpinGuard(dms_spinlock* l) : l_(l) { dms_spin_lock_irqsave(l_, &flags_); }
	~IrqSpinGuard() { dms_spin_unlock_irqrestore(l_, flags_); }
	IrqSpinGuard(const IrqSpinGuard&) = delete;
	IrqSpinGuard& operator=(const IrqSpinGuard&) = delete;

private:
	dms_spinlock* l_;
	unsigned long flags_ = 0;
};

class [[nodiscard]] ReadGuard {
public:
	explicit ReadGuard(dms_rwsem* l) : l_(l) { dms_down_read(l_); }
	~ReadGuard() { dms_up_read(l_); }
	ReadGuard(const ReadGuard&) = delete;
	ReadGuard& operator=(const ReadGuard&) = delete;

private:
	dms_rwsem* l_;
};

class [[nodiscard]] WriteGuard {
public:
	explicit WriteGuard(dms_rwsem* l) : l_(l) { dms_down_write(l_); }
	~WriteGuard() { dms_up_write(l_); }
	WriteGuard(const WriteGuard&) = delete;
	WriteGuard& operator=(const WriteGuard&) = delete;

private:
	dms_rwsem* l_;
};

// Relaxed-enough atomics for counters and flags, on the compiler builtins
// (the kernel's own atomics are macros, unreachable from C++).
// A full memory barrier (smp_mb): orders a store before a later load, which
// acquire/release alone does not (store-buffer litmus: "set my flag, then
// look at yours" on both sides).
inline void full_barrier() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }

template <typename T>
class Atomic {
public:
	constexpr Atomic() = default;
	constexpr explicit Atomic(T v) : v_(v) {}
	T load() const { return __atomic_load_n(&v_, __ATOMIC_ACQUIRE); }
	void store(T v) { __atomic_store_n(&v_, v, __ATOMIC_RELEASE); }
	T fetch_add(T d) { return __atomic_fetch_add(&v_, d, __ATOMIC_ACQ_REL); }
	T fetch_sub(T d) { return __atomic_fetch_sub(&v_, d, __ATOMIC_ACQ_REL); }
	T exchange(T v) { return __atomic_exchange_n(&v_, v, __ATOMIC_ACQ_REL); }

private:
	T v_{};
};

}  // namespace ktl
