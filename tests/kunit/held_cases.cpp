// SPDX-License-Identifier: GPL-2.0
// Suite dm-snapshot-held-completions: the shim's held bio completions
// (dms_run_plugged).  The commit releases a batch of bios under a block
// plug; those that complete inside their own submission are ended when the
// batch is done, never later than the plug's flush, and never held by an
// interrupt or by a task without a plug.
#include "kt.hpp"

namespace {

constexpr unsigned int kBios = 3;

class Bio {
public:
	explicit Bio(dmskt* t) : b_(dmskt_bio_create(t)) {}
	~Bio() { dmskt_bio_destroy(b_); }
	Bio(const Bio&) = delete;
	Bio& operator=(const Bio&) = delete;
	explicit operator bool() const { return b_ != nullptr; }
	void end(bool from_irq = false) { dmskt_bio_end_or_hold(b_, from_irq); }
	unsigned int ended() const { return dmskt_bio_ended(b_); }

private:
	dmskt_bio* b_;
};

struct Section {
	Bio* bios;
	// Each bio's end count, seen inside the section after all were ended.
	unsigned int inside[kBios];
	bool sleep;
	bool from_irq;

	static void run(void* ctx)
	{
		auto* s = static_cast<Section*>(ctx);
		for (unsigned int i = 0; i < kBios; i++)
			s->bios[i].end(s->from_irq);
		if (s->sleep)
			dms_msleep(1);
		for (unsigned int i = 0; i < kBios; i++)
			s->inside[i] = s->bios[i].ended();
	}
};

// Runs a section ending kBios bios, then checks that each had ended
// `inside` times before the section returned, and once after it.
void check_section(dmskt* t, bool sleep, bool from_irq, unsigned int inside)
{
	Bio bios[kBios] = {Bio(t), Bio(t), Bio(t)};
	for (Bio& b : bios)
		KT_ASSERT(t, b);
	Section s{bios, {}, sleep, from_irq};
	dms_run_plugged(&Section::run, &s);
	for (unsigned int i = 0; i < kBios; i++) {
		KT_EXPECT_EQ(t, s.inside[i], inside);
		KT_EXPECT_EQ(t, bios[i].ended(), 1u);
	}
}

}  // namespace

extern "C" void dmskt_held_ended_when_the_section_returns(dmskt* t)
{
	check_section(t, false, false, 0);
}

extern "C" void dmskt_held_ended_at_once_without_a_plug(dmskt* t)
{
	Bio b(t);
	KT_ASSERT(t, b);
	b.end();
	KT_EXPECT_EQ(t, b.ended(), 1u);
}

// A task that sleeps while holding bios could be waiting for one of them:
// the block layer flushes its plug first.
extern "C" void dmskt_held_ended_before_the_task_sleeps(dmskt* t)
{
	check_section(t, true, false, 1);
}

// An interrupt must not touch the plug of the task it interrupts.
extern "C" void dmskt_held_ended_at_once_from_an_interrupt(dmskt* t)
{
	check_section(t, false, true, 1);
}
