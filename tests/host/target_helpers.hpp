// SPDX-License-Identifier: GPL-2.0
// Running the targets through the core's C entry points, as the shims do.
#pragma once

#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "dm-snap.h"
#include "kernel_test.hpp"

// A table line's arguments: "a b c" splits on blanks like dm_split_args()
// (no escapes); a braced list gives the words verbatim, empty ones included.
class Args {
public:
	Args(const char* line);	// implicit: tests pass table lines as literals
	Args(std::initializer_list<const char*> words) : words_(words.begin(), words.end()) {}
	const std::vector<std::string>& words() const { return words_; }

private:
	std::vector<std::string> words_;
};

struct SnapshotDeleter {
	void operator()(dmscore_snapshot* s) const { dmscore_snapshot_dtr(s); }
};
struct OriginDeleter {
	void operator()(dmscore_origin* o) const { dmscore_origin_dtr(o); }
};
using SnapshotPtr = std::unique_ptr<dmscore_snapshot, SnapshotDeleter>;
using OriginPtr = std::unique_ptr<dmscore_origin, OriginDeleter>;

// The outcome of a constructor: its return value, the setup it asked for,
// and the object when it succeeded.
template <typename Ptr>
struct Ctr {
	int r = 0;
	dmscore_target_setup setup{};
	Ptr obj;
};

Ctr<SnapshotPtr> snapshot_ctr(dms_target& ti, const Args& args, int kind = DMSCORE_SNAPSHOT);
Ctr<OriginPtr> origin_ctr(dms_target& ti, const Args& args);

// A status line, produced into a buffer of exactly maxlen bytes so that
// AddressSanitizer catches any write past it.
std::string snapshot_status(dmscore_snapshot* s, int type, const char* target_name = "snapshot",
			    unsigned int maxlen = 1024);
std::string origin_status(dmscore_origin* o, int type, unsigned int maxlen = 1024);

// The devices most tests use: a 1 GiB origin and a 100 MiB COW, 512-byte
// logical blocks, registered as dm devices 253:0 and 253:1.
class DeviceTest : public CoreTest {
protected:
	static constexpr const char* kOrigin = "/dev/vg/lv";
	static constexpr const char* kCow = "/dev/vg/lv-cow";
	static constexpr dms_sector_t kOriginSectors = 2097152;
	static constexpr dms_sector_t kCowSectors = 204800;

	void SetUp() override
	{
		CoreTest::SetUp();
		origin = &kernel.add_device(kOrigin, 253, 0, kOriginSectors);
		cow = &kernel.add_device(kCow, 253, 1, kCowSectors);
	}

	// Zeroes the first 4 KiB of the COW, as lvcreate does: the next
	// constructor finds a new COW, whatever an earlier one wrote.
	void fresh_cow() { cow->write(0, std::vector<unsigned char>(4096)); }

	dms_dev* origin = nullptr;
	dms_dev* cow = nullptr;
};
