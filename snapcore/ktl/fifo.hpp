// SPDX-License-Identifier: GPL-2.0
// An intrusive singly linked FIFO: the element carries its own link (the
// member `Next`), so queueing never allocates and cannot fail.  Not
// thread-safe: the owner's lock covers the list and the links.
#pragma once

namespace ktl {

template <typename T, T* T::*Next>
class Fifo {
public:
	bool empty() const { return !head_; }
	void push(T* e)
	{
		e->*Next = nullptr;
		if (tail_)
			tail_->*Next = e;
		else
			head_ = e;
		tail_ = e;
	}
	// The oldest element, unlinked, or nullptr.
	T* pop()
	{
		T* e = head_;
		if (e) {
			head_ = e->*Next;
			if (!head_)
				tail_ = nullptr;
			e->*Next = nullptr;
		}
		return e;
	}
	// Takes every element, leaving this list empty.
	Fifo take()
	{
		Fifo l = *this;
		head_ = tail_ = nullptr;
		return l;
	}

private:
	T* head_ = nullptr;
	T* tail_ = nullptr;
};

}  // namespace ktl
