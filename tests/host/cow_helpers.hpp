// SPDX-License-Identifier: GPL-2.0
// Driving the copy-on-write I/O path as device-mapper does, on the fake
// kernel: targets that are constructed and resumed, bios split and sent
// through the map functions, dm's handling of each map result, and readers
// of what the core left on the devices (data, metadata areas, headers).
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <ostream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "disk_format.hpp"
#include "target_helpers.hpp"

using Bytes = std::vector<unsigned char>;

namespace snapcore::disk {
inline bool operator==(const Exception& a, const Exception& b)
{
	return a.old_chunk == b.old_chunk && a.new_chunk == b.new_chunk;
}
inline void PrintTo(const Exception& e, std::ostream* os)
{
	*os << "{" << e.old_chunk << " -> " << e.new_chunk << "}";
}
}  // namespace snapcore::disk
using Exceptions = std::vector<snapcore::disk::Exception>;

// Contents that differ per seed and per sector: byte j of sector s is a
// function of (seed, s, j), so a sector in the wrong place shows.
Bytes pattern(unsigned int seed, dms_sector_t first_sector, dms_sector_t sectors);

// A target instance the test owns, with the dm_target it runs against
// (which must outlive it: `obj` is declared last, so it goes first).
struct SnapshotTarget {
	std::unique_ptr<dms_target> ti = std::make_unique<dms_target>();
	dmscore_target_setup setup{};
	unsigned int chunk = 0;	// sectors, from setup.max_io_len
	SnapshotPtr obj;
	dmscore_snapshot* get() const { return obj.get(); }
};

struct OriginTarget {
	std::unique_ptr<dms_target> ti = std::make_unique<dms_target>();
	OriginPtr obj;
	dmscore_origin* get() const { return obj.get(); }
};

// Where a snapshot read of one sector went.
struct Route {
	int r;			// map result
	dms_dev* dev;		// remapped onto (null unless remapped)
	dms_sector_t sector;
};

// Copies of the metadata a persistent COW holds.
struct AreaWrite {
	std::uint64_t seq;
	unsigned int flags;
	std::vector<snapcore::disk::Exception> entries;	// up to the first new_chunk 0
};
std::vector<snapcore::disk::Exception> decode_area(const Bytes& area);
// Synchronous writes the core made to metadata area `area` of a COW with
// `chunk`-sector chunks, oldest first.
std::vector<AreaWrite> area_writes(const dms_dev& cow, unsigned int chunk, std::uint64_t area);
snapcore::disk::Header read_header(const dms_dev& cow);

// Writes an image onto a COW device: a header, and metadata areas.
void write_header(dms_dev& cow, unsigned int chunk, unsigned int valid);
void write_area(dms_dev& cow, unsigned int chunk, std::uint64_t area,
		const std::vector<snapcore::disk::Exception>& entries);

// Log lines at `level` whose text is `text`.
std::size_t log_count(const fake::FakeKernel& kernel, int level, const std::string& text);

class CowTest : public DeviceTest {
protected:
	static constexpr const char* kCow2 = "/dev/vg/cow2";
	static constexpr const char* kCow3 = "/dev/vg/cow3";

	void SetUp() override;
	void TearDown() override;

	// Constructs (and resumes, as dm does before I/O) a target; a
	// failed constructor fails the test.
	SnapshotTarget snapshot(const Args& args, bool resume = true, int kind = DMSCORE_SNAPSHOT);
	SnapshotTarget merge(const Args& args, bool resume = true)
	{
		return snapshot(args, resume, DMSCORE_SNAPSHOT_MERGE);
	}
	OriginTarget origin_target(bool resume = true);

	// A bio the fixture owns (it outlives every target of the test).
	// Thread-safe.
	dms_bio* bio(dms_sector_t sector, unsigned int sectors, unsigned int flags,
		     const Bytes& data = {});

	// dm's side of one map call: REMAPPED bios are submitted, KILLed
	// ones end with -EIO; SUBMITTED ones are the core's.  For a snapshot,
	// the target's end_io runs when a bio it saw ends (except KILL).
	int map_origin(OriginTarget& o, dms_bio* b);
	int map_snapshot(SnapshotTarget& s, dms_bio* b);
	// The map call alone; the test submits a REMAPPED bio later with
	// dms_bio_submit().
	int map_snapshot_only(SnapshotTarget& s, dms_bio* b);

	// Writes through the origin target, split as dm splits it (the
	// target accepts part of a bio; dm sends the rest as a new bio).
	std::vector<dms_bio*> write_origin(OriginTarget& o, dms_sector_t sector, const Bytes& data);
	// I/O through a snapshot target, split at its chunk size as dm does
	// (max_io_len).  `data` for writes.
	std::vector<dms_bio*> io_snapshot(SnapshotTarget& s, dms_sector_t sector,
					  dms_sector_t sectors, unsigned int flags,
					  const Bytes& data = {});

	// Waits for every bio; the first error (0 if none), or -ETIMEDOUT.
	static int wait_all(const std::vector<dms_bio*>& bios);
	// Whole operations, waited for: their result (first error).
	int write_origin_sync(OriginTarget& o, dms_sector_t sector, const Bytes& data);
	int write_snapshot_sync(SnapshotTarget& s, dms_sector_t sector, const Bytes& data);
	// Reads through the snapshot; *error (if given) gets the result.
	Bytes read_snapshot(SnapshotTarget& s, dms_sector_t sector, dms_sector_t sectors,
			    int* error = nullptr);
	// Where a one-sector snapshot read at `sector` goes (the read is then
	// completed as dm would).
	Route route(SnapshotTarget& s, dms_sector_t sector);

	std::string info(SnapshotTarget& s) { return snapshot_status(s.get(), DMSCORE_STATUS_INFO); }

	dms_dev* cow2 = nullptr;
	dms_dev* cow3 = nullptr;

private:
	std::mutex bios_lock_;	// tests send bios from several threads
	std::deque<std::unique_ptr<dms_bio>> bios_;
};

// A CowTest whose origin starts with pattern 1 in its first 4 MiB: the
// data every snapshot must keep.
class FilledOriginTest : public CowTest {
protected:
	void SetUp() override
	{
		CowTest::SetUp();
		origin->write(0, old(0, 8192));
	}
	static Bytes old(dms_sector_t sector, dms_sector_t n) { return pattern(1, sector, n); }
};

// Holds kcopyd's copies for its lifetime (declare it after the targets, so
// that it releases everything before they are destroyed).
class CopyHold {
public:
	CopyHold() { fake::FakeKernel::instance().hold_copies(); }
	~CopyHold() { fake::FakeKernel::instance().release_all_copies(); }
	CopyHold(const CopyHold&) = delete;
	CopyHold& operator=(const CopyHold&) = delete;
};

// Lets a device's held requests go on scope exit (dms_dev::hold_when).
class IoHoldRelease {
public:
	explicit IoHoldRelease(dms_dev* dev) : dev_(dev) {}
	~IoHoldRelease() { dev_->release_held(); }
	IoHoldRelease(const IoHoldRelease&) = delete;
	IoHoldRelease& operator=(const IoHoldRelease&) = delete;

private:
	dms_dev* dev_;
};

// A test thread that is joined on scope exit, after releasing every held
// copy (what it may be waiting for): a test that fails half-way still ends,
// with its failures reported, instead of terminating.
class Background {
public:
	template <typename Fn>
	explicit Background(Fn&& fn) : thread_(std::forward<Fn>(fn))
	{
	}
	~Background()
	{
		if (thread_.joinable()) {
			fake::FakeKernel::instance().release_all_copies();
			thread_.join();
		}
	}
	Background(const Background&) = delete;
	Background& operator=(const Background&) = delete;
	void join() { thread_.join(); }

private:
	std::thread thread_;
};
