// SPDX-License-Identifier: GPL-2.0
// The core's extern "C" entry points (declared in dm-snap.h): trampolines
// from opaque C handles to typed C++ objects, in one place.
#include "dm-snap.h"
#include "ktl/new.hpp"
#include "origin.hpp"
#include "origin_registry.hpp"
#include "snapshot.hpp"
#include "text.hpp"

using snapcore::Origin;
using snapcore::Snapshot;
using snapcore::SnapshotKind;
using snapcore::TextSink;

namespace {

// The opaque handles C sees are never defined: each is a C++ object's
// address under another name, converted only here.
Snapshot* as_cxx(dmscore_snapshot* s) { return reinterpret_cast<Snapshot*>(s); }
Origin* as_cxx(dmscore_origin* o) { return reinterpret_cast<Origin*>(o); }
dmscore_snapshot* as_handle(Snapshot* s) { return reinterpret_cast<dmscore_snapshot*>(s); }
dmscore_origin* as_handle(Origin* o) { return reinterpret_cast<dmscore_origin*>(o); }

}  // namespace

extern "C" {

int dmscore_init(void)
{
	return snapcore::OriginRegistry::init();
}

void dmscore_exit(void)
{
	snapcore::OriginRegistry::exit();
}

int dmscore_snapshot_ctr(dms_target* ti, int kind, unsigned int argc, char** argv,
			 dmscore_target_setup* setup, dmscore_snapshot** out)
{
	Snapshot* s;
	int r = Snapshot::create(ti,
				 kind == DMSCORE_SNAPSHOT_MERGE ? SnapshotKind::kMerge
								: SnapshotKind::kSnapshot,
				 argc, argv, setup, &s);
	if (r == 0)
		*out = as_handle(s);
	return r;
}

void dmscore_snapshot_dtr(dmscore_snapshot* s)
{
	ktl::destroy(as_cxx(s));
}

void dmscore_snapshot_status(dmscore_snapshot* s, int type, const char* target_name,
			     char* result, unsigned int maxlen)
{
	TextSink out(result, maxlen);
	as_cxx(s)->status(type, target_name, out);
}

int dmscore_snapshot_iterate_devices(dmscore_snapshot* s, dms_dev_iter_fn fn, void* ctx)
{
	return as_cxx(s)->iterate_devices(fn, ctx);
}

void dmscore_snapshot_io_hints(dmscore_snapshot* s, dmscore_io_hints* out)
{
	as_cxx(s)->io_hints(out);
}

int dmscore_snapshot_map(dmscore_snapshot* s, dms_bio* bio)
{
	return as_cxx(s)->map(bio);
}

void dmscore_snapshot_end_io(dmscore_snapshot* s, dms_bio* bio, int error)
{
	as_cxx(s)->end_io(bio, error);
}

void dmscore_snapshot_presuspend(dmscore_snapshot* s)
{
	as_cxx(s)->presuspend();
}

int dmscore_snapshot_preresume(dmscore_snapshot* s)
{
	return as_cxx(s)->preresume();
}

void dmscore_snapshot_resume(dmscore_snapshot* s)
{
	as_cxx(s)->resume();
}

void dmscore_snapshot_postsuspend(dmscore_snapshot* s)
{
	as_cxx(s)->postsuspend();
}

int dmscore_origin_ctr(dms_target* ti, unsigned int argc, char** argv,
		       dmscore_target_setup* setup, dmscore_origin** out)
{
	Origin* o;
	int r = Origin::create(ti, argc, argv, setup, &o);
	if (r == 0)
		*out = as_handle(o);
	return r;
}

void dmscore_origin_dtr(dmscore_origin* o)
{
	ktl::destroy(as_cxx(o));
}

void dmscore_origin_status(dmscore_origin* o, int type, const char* target_name,
			   char* result, unsigned int maxlen)
{
	TextSink out(result, maxlen);
	as_cxx(o)->status(type, target_name, out);
}

dms_dev* dmscore_origin_dev(dmscore_origin* o)
{
	return as_cxx(o)->dev();
}

int dmscore_origin_map(dmscore_origin* o, dms_bio* bio)
{
	return as_cxx(o)->map(bio);
}

void dmscore_origin_resume(dmscore_origin* o)
{
	as_cxx(o)->resume();
}

// Nothing to undo: an origin registers nothing at resume.
void dmscore_origin_postsuspend(dmscore_origin* o)
{
}

}  // extern "C"
