// SPDX-License-Identifier: GPL-2.0
// Block services of the fake kernel: memory-backed devices, dm-io (sync
// and async), kcopyd, and bios.  I/O happens when it is submitted;
// completions run on the work queue threads, as in the kernel.
#include <algorithm>
#include <chrono>
#include <cstring>
#include <string>

#include "fake_kernel.hpp"
#include "fake_workqueue.hpp"

using fake::FakeKernel;

namespace {

constexpr unsigned int kSectorBytes = 1u << DMS_SECTOR_SHIFT;

// Order of requests over all devices (IoRecord::seq).
std::atomic<std::uint64_t> g_io_seq{0};

// A device the core did not get from dms_target_get_device(), or put back.
void check_held(const dms_dev* dev, const char* what)
{
	if (!dev->holders)
		FakeKernel::instance().report_misuse(std::string(what) + " on a device not held: " +
						     dev->path);
}

unsigned int io_flags_of(const dms_bio_info& info)
{
	unsigned int flags = (info.flags & DMS_BIO_WRITE) ? DMS_IO_WRITE : DMS_IO_READ;
	if (info.flags & DMS_BIO_FLUSH)
		flags |= DMS_IO_FLUSH;
	if (info.flags & DMS_BIO_FUA)
		flags |= DMS_IO_FUA;
	return flags;
}

// A remapped bio's I/O on its device; a discard carries no data.
int bio_io(dms_bio* bio)
{
	if (!bio->dev) {
		FakeKernel::instance().report_misuse("bio submitted without dms_bio_remap()");
		return -DMS_EIO;
	}
	check_held(bio->dev, "bio");
	if (bio->info.flags & DMS_BIO_DISCARD)
		return 0;
	return bio->dev->io(io_flags_of(bio->info), bio->dev_sector, bio->info.sectors,
			    bio->data.data(), "bio");
}

}  // namespace

std::vector<unsigned char> dms_dev::read(dms_sector_t sector, dms_sector_t count) const
{
	std::vector<unsigned char> out(count * kSectorBytes);
	for (dms_sector_t i = 0; i < count; i++)
		copy_out(sector + i, out.data() + i * kSectorBytes);
	return out;
}

void dms_dev::write(dms_sector_t sector, const std::vector<unsigned char>& bytes)
{
	for (std::size_t off = 0; off + kSectorBytes <= bytes.size(); off += kSectorBytes)
		copy_in(sector + off / kSectorBytes, bytes.data() + off);
}

int dms_dev::io(unsigned int dms_io_flags, dms_sector_t sector, dms_sector_t count, void* buf,
		const char* via)
{
	fake::IoRecord rec{0, dms_io_flags, sector, count, via, 0, {}};
	bool injected;
	{
		std::unique_lock<std::mutex> guard(io_lock_);
		injected = fail_when_ && fail_when_(rec);
		if (hold_when_ && hold_when_(rec)) {
			const unsigned long gen = release_generation_;
			held_ios_++;
			io_released_.wait(guard, [&] { return release_generation_ != gen; });
			held_ios_--;
		}
	}
	auto* bytes = static_cast<unsigned char*>(buf);
	const dms_sector_t end = size;
	int r = 0;
	if (sector > end || count > end - sector) {
		r = -DMS_EIO;
	} else if (dms_io_flags & DMS_IO_WRITE) {
		if (fail_writes || injected) {
			r = -DMS_EIO;
		} else {
			for (dms_sector_t i = 0; i < count; i++)
				copy_in(sector + i, bytes + i * kSectorBytes);
		}
		if (rec.via == "sync")
			rec.data.assign(bytes, bytes + count * kSectorBytes);
	} else {
		if (fail_reads || injected) {
			r = -DMS_EIO;
		} else {
			for (dms_sector_t i = 0; i < count; i++)
				copy_out(sector + i, bytes + i * kSectorBytes);
		}
	}
	rec.result = r;
	std::lock_guard<std::mutex> guard(io_lock_);
	rec.seq = g_io_seq++;	// when it is over: data before anything later
	ios_.push_back(std::move(rec));
	return r;
}

std::vector<fake::IoRecord> dms_dev::ios() const
{
	std::lock_guard<std::mutex> guard(io_lock_);
	return ios_;
}

void dms_dev::fail_when(fake::IoFailFn fn)
{
	std::lock_guard<std::mutex> guard(io_lock_);
	fail_when_ = std::move(fn);
}

void dms_dev::hold_when(fake::IoFailFn fn)
{
	std::lock_guard<std::mutex> guard(io_lock_);
	hold_when_ = std::move(fn);
}

void dms_dev::release_held()
{
	{
		std::lock_guard<std::mutex> guard(io_lock_);
		hold_when_ = nullptr;
		release_generation_++;
	}
	io_released_.notify_all();
}

unsigned int dms_dev::held_ios() const
{
	std::lock_guard<std::mutex> guard(io_lock_);
	return held_ios_;
}

void dms_dev::copy_out(dms_sector_t sector, unsigned char* to) const
{
	constexpr unsigned int per_page = kPageBytes / kSectorBytes;
	std::lock_guard<std::mutex> guard(data_lock_);
	auto it = pages_.find(sector / per_page);
	if (it == pages_.end())
		std::memset(to, 0, kSectorBytes);
	else
		std::memcpy(to, it->second.get() + (sector % per_page) * kSectorBytes, kSectorBytes);
}

void dms_dev::copy_in(dms_sector_t sector, const unsigned char* from)
{
	constexpr unsigned int per_page = kPageBytes / kSectorBytes;
	std::lock_guard<std::mutex> guard(data_lock_);
	auto& page = pages_[sector / per_page];
	if (!page)
		page = std::make_unique<unsigned char[]>(kPageBytes);	// zeroed
	std::memcpy(page.get() + (sector % per_page) * kSectorBytes, from, kSectorBytes);
}

dms_bio::dms_bio(dms_sector_t sector, unsigned int sectors, unsigned int dms_bio_flags)
    : info{sector, sectors, dms_bio_flags}, data(static_cast<std::size_t>(sectors) * kSectorBytes)
{
}

bool dms_bio::ended() const
{
	std::lock_guard<std::mutex> guard(lock_);
	return ended_;
}

int dms_bio::error() const
{
	std::lock_guard<std::mutex> guard(lock_);
	return error_;
}

bool dms_bio::wait_ended(int timeout_ms) const
{
	std::unique_lock<std::mutex> guard(lock_);
	return ended_cv_.wait_for(guard, std::chrono::milliseconds(timeout_ms),
				  [this] { return ended_; });
}

void* dms_bio::per_data(unsigned int bytes)
{
	if (!per_bytes_) {
		// dm does not clear per-bio data: garbage catches a core that
		// relies on zeros.
		per_data_.assign((bytes + 7) / 8, 0xa5a5a5a5a5a5a5a5ull);
		per_bytes_ = bytes;
	} else if (bytes != per_bytes_) {
		FakeKernel::instance().report_misuse("dms_bio_per_data() with another size");
	}
	return per_data_.data();
}

void dms_bio::finish(int error)
{
	if (ended()) {
		FakeKernel::instance().report_misuse("bio ended twice");
		return;
	}
	if (on_end)
		on_end(this, error);
	{
		std::lock_guard<std::mutex> guard(lock_);
		ended_ = true;
		error_ = error;
	}
	ended_cv_.notify_all();
}

namespace fake {

namespace {

// The calling thread's block plug (dms_run_plugged): its depth, and the
// bios ended under it, ended for real when it is flushed.
struct HeldEnd {
	dms_bio* bio;
	int error;
};
thread_local unsigned int t_plug_depth = 0;
thread_local std::vector<HeldEnd> t_held_ends;

void end_or_hold(dms_bio* bio, int error)
{
	if (t_plug_depth && !in_atomic_context())
		t_held_ends.push_back({bio, error});
	else
		bio->finish(error);
}

}  // namespace

void flush_plug()
{
	const std::vector<HeldEnd> held = std::move(t_held_ends);
	t_held_ends.clear();
	for (const HeldEnd& h : held)
		h.bio->finish(h.error);
}

void FakeKernel::submit_copy(CopyJob job, dms_copy_done_fn fn, void* ctx)
{
	HeldCopy c{std::move(job), fn, ctx};
	{
		std::lock_guard<std::mutex> guard(lock_);
		c.job.id = static_cast<unsigned int>(copy_jobs_.size());
		copy_jobs_.push_back(c.job);
		if (holding_) {
			held_.push_back(std::move(c));
			return;
		}
	}
	run_copy(c);
}

// kcopyd's work for one job: read the source once, write every
// destination, then complete on kcopyd's queue.  The devices must still be
// held when a held job finally runs.
void FakeKernel::run_copy(const HeldCopy& c)
{
	const CopyJob& job = c.job;
	check_held(job.src, "dms_copy");
	std::vector<unsigned char> buf(job.count * kSectorBytes);
	const dms_copy_done_fn fn = c.fn;
	void* const ctx = c.ctx;
	if (job.src->io(DMS_IO_READ, job.src_sector, job.count, buf.data(), "copy")) {
		kcopyd_wq().run([fn, ctx] { fn(ctx, 1, 0); });
		return;
	}
	unsigned long mask = 0;
	for (std::size_t i = 0; i < job.dests.size(); i++) {
		check_held(job.dests[i].dev, "dms_copy");
		if (job.dests[i].dev->io(DMS_IO_WRITE, job.dests[i].sector, job.count, buf.data(),
					 "copy"))
			mask |= 1ul << i;
	}
	kcopyd_wq().run([fn, ctx, mask] { fn(ctx, 0, mask); });
}

std::vector<CopyJob> FakeKernel::copy_jobs() const
{
	std::lock_guard<std::mutex> guard(lock_);
	return copy_jobs_;
}

void FakeKernel::hold_copies()
{
	std::lock_guard<std::mutex> guard(lock_);
	holding_ = true;
}

void FakeKernel::release_all_copies()
{
	std::vector<HeldCopy> held;
	{
		std::lock_guard<std::mutex> guard(lock_);
		holding_ = false;
		held.swap(held_);
	}
	for (const HeldCopy& c : held)
		run_copy(c);
}

std::vector<unsigned int> FakeKernel::held_copies() const
{
	std::lock_guard<std::mutex> guard(lock_);
	std::vector<unsigned int> ids;
	for (const HeldCopy& c : held_)
		ids.push_back(c.job.id);
	return ids;
}

void FakeKernel::release_copy(unsigned int id)
{
	std::optional<HeldCopy> c;
	{
		std::lock_guard<std::mutex> guard(lock_);
		auto it = std::find_if(held_.begin(), held_.end(),
				       [id](const HeldCopy& h) { return h.job.id == id; });
		if (it != held_.end()) {
			c = std::move(*it);
			held_.erase(it);
		}
	}
	if (!c) {
		report_misuse("release_copy() of copy " + std::to_string(id) + ", not held");
		return;
	}
	run_copy(*c);
}

bool FakeKernel::wait_held_copies(std::size_t n, int timeout_ms)
{
	return wait_until(
		[this, n] {
			std::lock_guard<std::mutex> guard(lock_);
			return held_.size() >= n;
		},
		timeout_ms);
}

}  // namespace fake

extern "C" {

int dms_dev_io_sync(dms_dev* dev, unsigned int dms_io_flags, dms_sector_t sector,
		    dms_sector_t count, void* buf)
{
	fake::might_sleep("dms_dev_io_sync");
	check_held(dev, "dms_dev_io_sync");
	return dev->io(dms_io_flags, sector, count, buf, "sync");
}

int dms_dev_flush(dms_dev* dev)
{
	fake::might_sleep("dms_dev_flush");
	check_held(dev, "dms_dev_flush");
	return dev->io(DMS_IO_WRITE | DMS_IO_FLUSH, 0, 0, nullptr, "flush");
}

int dms_dev_io_async(dms_dev* dev, unsigned int dms_io_flags, dms_sector_t sector,
		     dms_sector_t count, void* buf, dms_io_done_fn fn, void* ctx)
{
	fake::might_sleep("dms_dev_io_async");
	check_held(dev, "dms_dev_io_async");
	const int r = dev->io(dms_io_flags & ~DMS_IO_DONE_ATOMIC, sector, count, buf, "async");
	if (dms_io_flags & DMS_IO_DONE_ATOMIC) {
		auto done = [fn, ctx, r] {
			fake::AtomicContext atomic;
			fn(ctx, r ? -DMS_EIO : 0);
		};
		// kcopyd's queue stands in for the interrupt: another thread.
		if (dev->defer_atomic_completions)
			FakeKernel::instance().kcopyd_wq().run(done);
		else
			done();
		return 0;
	}
	FakeKernel::instance().module_wq().run([fn, ctx, r] { fn(ctx, r ? -DMS_EIO : 0); });
	return 0;
}

void dms_copy(dms_dev* src, dms_sector_t src_sector, dms_sector_t count,
	      const dms_copy_dest* dests, unsigned int ndest, dms_copy_done_fn fn, void* ctx)
{
	fake::might_sleep("dms_copy");
	auto& kernel = FakeKernel::instance();
	if (ndest == 0 || ndest > DMS_COPY_MAX_DESTS)
		kernel.report_misuse("dms_copy() with " + std::to_string(ndest) + " destinations");
	fake::CopyJob job{0, src, src_sector, count, {}};
	for (unsigned int i = 0; i < ndest && i < DMS_COPY_MAX_DESTS; i++)
		job.dests.push_back(dests[i]);
	kernel.submit_copy(std::move(job), fn, ctx);
}

// kcopyd's zeroing: written at submission, completed on kcopyd's queue.
void dms_zero(dms_dev* dev, dms_sector_t sector, dms_sector_t count, dms_copy_done_fn fn, void* ctx)
{
	fake::might_sleep("dms_zero");
	check_held(dev, "dms_zero");
	std::vector<unsigned char> zeros(count * kSectorBytes);
	const unsigned long mask = dev->io(DMS_IO_WRITE, sector, count, zeros.data(), "zero") ? 1 : 0;
	FakeKernel::instance().kcopyd_wq().run([fn, ctx, mask] { fn(ctx, 0, mask); });
}

unsigned int dms_bio_target_nr(dms_bio* bio)
{
	return bio->target_nr;
}

void dms_bio_get_info(dms_bio* bio, dms_bio_info* out)
{
	*out = bio->info;
}

void* dms_bio_per_data(dms_bio* bio, unsigned int per_bio_bytes)
{
	return bio->per_data(per_bio_bytes);
}

void dms_bio_remap(dms_bio* bio, dms_dev* dev, dms_sector_t sector)
{
	bio->dev = dev;
	bio->dev_sector = sector;
}

void dms_bio_accept_partial(dms_bio* bio, unsigned int sectors)
{
	if (sectors == 0 || sectors > bio->info.sectors) {
		FakeKernel::instance().report_misuse("dms_bio_accept_partial() of " +
						     std::to_string(sectors) + " sectors");
		return;
	}
	bio->info.sectors = sectors;
	bio->data.resize(static_cast<std::size_t>(sectors) * kSectorBytes);
}

void dms_bio_submit(dms_bio* bio)
{
	fake::might_sleep("dms_bio_submit");
	bio->finish(bio_io(bio));
}

void dms_bio_endio(dms_bio* bio, int error)
{
	bio->finish(error);
}

void dms_bio_submit_hooked(dms_bio* bio, dms_io_done_fn fn, void* ctx)
{
	fake::might_sleep("dms_bio_submit_hooked");
	const int r = bio_io(bio);
	// Completion context: an interrupt, or the submitter's own.
	auto done = [fn, ctx, r] {
		fake::AtomicContext atomic;
		fn(ctx, r);
	};
	if (bio->dev->defer_atomic_completions)
		FakeKernel::instance().kcopyd_wq().run(done);
	else
		done();
}

void dms_run_plugged(void (*fn)(void* ctx), void* ctx)
{
	fake::t_plug_depth++;
	fn(ctx);
	if (--fake::t_plug_depth == 0)
		fake::flush_plug();
}

void dms_bio_submit_held(dms_bio* bio)
{
	fake::might_sleep("dms_bio_submit_held");
	const int r = bio_io(bio);
	if (bio->dev->defer_atomic_completions)	// an interrupt: no plug
		FakeKernel::instance().kcopyd_wq().run([bio, r] {
			fake::AtomicContext atomic;
			bio->finish(r);
		});
	else
		fake::end_or_hold(bio, r);
}

void dms_bio_endio_held(dms_bio* bio, int error)
{
	fake::end_or_hold(bio, error);
}

}  // extern "C"
