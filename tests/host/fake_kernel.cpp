// SPDX-License-Identifier: GPL-2.0
#include "fake_kernel.hpp"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <thread>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <utility>

#include "fake_workqueue.hpp"

namespace fake {

namespace {

// "maj:min" as dm_get_device() and name_to_dev_t() accept it.
bool parse_maj_min(const char* s, dms_devt_t* out)
{
	unsigned int major, minor;
	int end = -1;
	if (std::sscanf(s, "%u:%u%n", &major, &minor, &end) != 2 || s[end] != '\0')
		return false;
	*out = mkdev(major, minor);
	return true;
}

}  // namespace

FakeKernel& FakeKernel::instance()
{
	static FakeKernel kernel;
	return kernel;
}

FakeKernel::FakeKernel()
    : module_wq_(std::make_unique<WorkQueue>(true)),
      away_wq_(std::make_unique<WorkQueue>(false)),
      kcopyd_wq_(std::make_unique<WorkQueue>(true))
{
}

FakeKernel::~FakeKernel() = default;

bool wait_until(const std::function<bool()>& pred, int timeout_ms)
{
	const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
	while (!pred()) {
		if (std::chrono::steady_clock::now() >= deadline)
			return pred();
		std::this_thread::sleep_for(std::chrono::microseconds(100));
	}
	return true;
}

void FakeKernel::reset()
{
	// Held copies would keep work in flight forever.
	release_all_copies();
	drain();
	std::lock_guard<std::mutex> guard(lock_);
	copy_jobs_.clear();
	msleeps_ = 0;
	spin_hook_ = nullptr;
	has_spin_hook_ = false;
	devices_.clear();
	log_.clear();
	misuse_.clear();
	// A leak was reported by the test that caused it; forgetting the
	// pointers leaves the memory to LeakSanitizer.
	live_.clear();
	allocation_calls_ = 0;
	fail_only_.reset();
	fail_after_.reset();
	cow_threshold = 2048;
	merge_batch = 64;
	classes_plain_ = 0;
	classes_irqsave_ = 0;
	cpus_offline_ = 0;
}

// Completions on one queue may queue work on another (a copy completion
// queues a commit): done when all were idle in one pass.
void FakeKernel::drain()
{
	// All idle when looked at is not enough: a kcopyd completion that
	// ends after the module queue was checked may have queued module
	// work.  Any job queued during the pass shows in the counts.
	WorkQueue* queues[] = {module_wq_.get(), away_wq_.get(), kcopyd_wq_.get()};
	auto queued = [&queues] {
		unsigned long n = 0;
		for (WorkQueue* q : queues)
			n += q->queued();
		return n;
	};
	for (;;) {
		const unsigned long before = queued();
		bool idle = true;
		for (WorkQueue* q : queues)
			idle = q->drain() && idle;
		if (idle && queued() == before)
			return;
	}
}

void FakeKernel::set_spin_lock_hook(std::function<void(unsigned int)> fn)
{
	std::lock_guard<std::mutex> guard(lock_);
	has_spin_hook_ = static_cast<bool>(fn);
	spin_hook_ = std::move(fn);
}

void FakeKernel::run_spin_lock_hook(unsigned int lock_class)
{
	if (!has_spin_hook_)
		return;
	std::function<void(unsigned int)> fn;
	{
		std::lock_guard<std::mutex> guard(lock_);
		fn = spin_hook_;
	}
	if (fn)
		fn(lock_class);
}

bool FakeKernel::note_spin_class_mode(unsigned int lock_class, bool irqsave)
{
	const unsigned int bit = 1u << lock_class;
	(irqsave ? classes_irqsave_ : classes_plain_).fetch_or(bit);
	return !((irqsave ? classes_plain_ : classes_irqsave_).load() & bit);
}

void FakeKernel::fail_allocation(unsigned long nth)
{
	std::lock_guard<std::mutex> guard(lock_);
	fail_only_ = allocation_calls_ + nth;
}

void FakeKernel::fail_allocations_after(unsigned long n)
{
	std::lock_guard<std::mutex> guard(lock_);
	fail_after_ = allocation_calls_ + n;
}

unsigned long FakeKernel::allocation_calls() const
{
	std::lock_guard<std::mutex> guard(lock_);
	return allocation_calls_;
}

std::size_t FakeKernel::live_allocations() const
{
	std::lock_guard<std::mutex> guard(lock_);
	return live_.size();
}

std::vector<LogEntry> FakeKernel::log() const
{
	std::lock_guard<std::mutex> guard(lock_);
	return log_;
}

dms_dev& FakeKernel::add_device(const std::string& path, unsigned int major,
				unsigned int minor, dms_sector_t size,
				unsigned int logical_block_size)
{
	auto dev = std::make_unique<dms_dev>();
	dev->path = path;
	dev->name = std::to_string(major) + ":" + std::to_string(minor);
	dev->devt = mkdev(major, minor);
	dev->logical_block_size = logical_block_size;
	dev->size = size;
	std::lock_guard<std::mutex> guard(lock_);
	devices_.push_back(std::move(dev));
	return *devices_.back();
}

std::size_t FakeKernel::held_devices() const
{
	std::lock_guard<std::mutex> guard(lock_);
	std::size_t n = 0;
	for (const auto& dev : devices_)
		n += dev->holders;
	return n;
}

std::vector<std::string> FakeKernel::take_misuse()
{
	std::lock_guard<std::mutex> guard(lock_);
	return std::exchange(misuse_, {});
}

void FakeKernel::report_misuse(std::string what)
{
	std::lock_guard<std::mutex> guard(lock_);
	misuse_.push_back(std::move(what));
}

void* FakeKernel::zalloc(std::size_t size)
{
	might_sleep("dms_zalloc");
	std::lock_guard<std::mutex> guard(lock_);
	const unsigned long call = ++allocation_calls_;
	if ((fail_only_ && call == *fail_only_) || (fail_after_ && call > *fail_after_))
		return nullptr;
	// calloc(0) may return NULL, which the core would take for a failure.
	void* p = std::calloc(1, size ? size : 1);
	if (p)
		live_.insert(p);
	return p;
}

void FakeKernel::zfree(void* p)
{
	if (!p)
		return;
	{
		std::lock_guard<std::mutex> guard(lock_);
		if (!live_.erase(p)) {
			misuse_.push_back("dms_free() of memory dms_zalloc() did not return");
			return;
		}
	}
	std::free(p);
}

void FakeKernel::add_log(int level, std::string text)
{
	std::lock_guard<std::mutex> guard(lock_);
	log_.push_back({level, std::move(text)});
}

int FakeKernel::get_device(dms_target* ti, const char* path, int mode, dms_dev** out)
{
	might_sleep("dms_target_get_device");
	std::lock_guard<std::mutex> guard(lock_);
	dms_dev* dev = nullptr;
	int r = resolve_locked(path, &dev);
	ti->requests.push_back({path, mode, r});
	if (r)
		return r;
	dev->holders++;
	ti->held.push_back(dev);
	*out = dev;
	return 0;
}

void FakeKernel::put_device(dms_target* ti, dms_dev* dev)
{
	std::lock_guard<std::mutex> guard(lock_);
	auto it = std::find(ti->held.begin(), ti->held.end(), dev);
	if (it == ti->held.end()) {
		misuse_.push_back("dms_target_put_device() of a device the target does not hold");
		return;
	}
	ti->held.erase(it);
	ti->puts++;
	dev->holders--;
}

dms_devt_t FakeKernel::lookup_devt(const char* path) const
{
	dms_devt_t devt;
	if (parse_maj_min(path, &devt))
		return devt;
	std::lock_guard<std::mutex> guard(lock_);
	for (const auto& dev : devices_)
		if (dev->path == path)
			return dev->devt;
	return 0;
}

// dm_get_device(): a "maj:min" nobody registered fails to open (-ENXIO),
// a path that names no device fails the lookup (-ENODEV).
int FakeKernel::resolve_locked(const char* path, dms_dev** out) const
{
	dms_devt_t devt;
	const bool by_number = parse_maj_min(path, &devt);
	for (const auto& dev : devices_) {
		if (by_number ? dev->devt == devt : dev->path == path) {
			*out = dev.get();
			return 0;
		}
	}
	return by_number ? -ENXIO : -ENODEV;
}

}  // namespace fake

using fake::FakeKernel;

extern "C" {

void* dms_zalloc(dms_size_t size)
{
	return FakeKernel::instance().zalloc(size);
}

// GFP_NOIO only changes how the kernel reclaims; here it is the same.
void* dms_zalloc_noio(dms_size_t size)
{
	return FakeKernel::instance().zalloc(size);
}

void dms_free(void* p)
{
	FakeKernel::instance().zfree(p);
}

void dms_log(int level, const char* fmt, ...)
{
	va_list args;
	va_start(args, fmt);
	va_list measure;
	va_copy(measure, args);
	const int n = std::vsnprintf(nullptr, 0, fmt, measure);
	va_end(measure);
	std::string text(n > 0 ? static_cast<std::size_t>(n) : 0, '\0');
	std::vsnprintf(text.data(), text.size() + 1, fmt, args);
	va_end(args);
	FakeKernel::instance().add_log(level, std::move(text));
}

void dms_target_set_error(dms_target* ti, const char* static_msg)
{
	ti->error = static_msg;
}

int dms_target_get_device(dms_target* ti, const char* path, int dms_dev_mode, dms_dev** out)
{
	return FakeKernel::instance().get_device(ti, path, dms_dev_mode, out);
}

void dms_target_put_device(dms_target* ti, dms_dev* dev)
{
	FakeKernel::instance().put_device(ti, dev);
}

dms_sector_t dms_target_len(dms_target* ti)
{
	return ti->len;
}

int dms_target_suspended(dms_target* ti)
{
	return ti->suspended;
}

dms_devt_t dms_lookup_devt(const char* path)
{
	return FakeKernel::instance().lookup_devt(path);
}

dms_devt_t dms_dev_devt(dms_dev* dev)
{
	return dev->devt;
}

const char* dms_dev_name(dms_dev* dev)
{
	return dev->name.c_str();
}

unsigned int dms_dev_logical_block_size(dms_dev* dev)
{
	return dev->logical_block_size;
}

dms_sector_t dms_dev_size(dms_dev* dev)
{
	return dev->size;
}

void dms_target_event(dms_target* ti)
{
	fake::might_sleep("dms_target_event");
	ti->events++;
}

unsigned int dms_param_cow_threshold(void)
{
	return FakeKernel::instance().cow_threshold;
}

unsigned int dms_param_merge_batch(void)
{
	return FakeKernel::instance().merge_batch;
}

}  // extern "C"
