// SPDX-License-Identifier: GPL-2.0
#include "target_helpers.hpp"

#include <cstring>
#include <sstream>

namespace {

// The argv a constructor receives: pointers into a copy the test keeps.
class Argv {
public:
	explicit Argv(const Args& args) : words_(args.words())
	{
		for (auto& w : words_)
			ptrs_.push_back(w.data());
	}
	unsigned int argc() const { return static_cast<unsigned int>(ptrs_.size()); }
	char** argv() { return ptrs_.data(); }

private:
	std::vector<std::string> words_;
	std::vector<char*> ptrs_;
};

template <typename Handle, typename Fn>
std::string status_into(Handle* h, unsigned int maxlen, Fn&& fn)
{
	auto buf = std::make_unique<char[]>(maxlen);
	fn(h, buf.get());
	if (maxlen == 0)
		return {};
	if (!std::memchr(buf.get(), '\0', maxlen)) {
		ADD_FAILURE() << "status line not NUL-terminated within " << maxlen << " bytes";
		return {};
	}
	return buf.get();
}

}  // namespace

Args::Args(const char* line)
{
	std::istringstream in(line);
	for (std::string w; in >> w;)
		words_.push_back(w);
}

Ctr<SnapshotPtr> snapshot_ctr(dms_target& ti, const Args& args, int kind)
{
	Argv a(args);
	Ctr<SnapshotPtr> c;
	dmscore_snapshot* s = nullptr;
	c.r = dmscore_snapshot_ctr(&ti, kind, a.argc(), a.argv(), &c.setup, &s);
	if (c.r == 0)
		c.obj.reset(s);
	return c;
}

Ctr<OriginPtr> origin_ctr(dms_target& ti, const Args& args)
{
	Argv a(args);
	Ctr<OriginPtr> c;
	dmscore_origin* o = nullptr;
	c.r = dmscore_origin_ctr(&ti, a.argc(), a.argv(), &c.setup, &o);
	if (c.r == 0)
		c.obj.reset(o);
	return c;
}

std::string snapshot_status(dmscore_snapshot* s, int type, const char* target_name,
			    unsigned int maxlen)
{
	return status_into(s, maxlen, [&](dmscore_snapshot* h, char* buf) {
		dmscore_snapshot_status(h, type, target_name, buf, maxlen);
	});
}

std::string origin_status(dmscore_origin* o, int type, unsigned int maxlen)
{
	return status_into(o, maxlen, [&](dmscore_origin* h, char* buf) {
		dmscore_origin_status(h, type, "snapshot-origin", buf, maxlen);
	});
}
