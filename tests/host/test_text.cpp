// SPDX-License-Identifier: GPL-2.0
// text: the kernel's number parsers and the status-line sink.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>

#include "text.hpp"

using snapcore::TextSink;
using snapcore::u32;

namespace {

constexpr u32 kUntouched = 12345;

struct Accepted {
	const char* in;
	u32 value;
};

// Non-printing characters made visible in failure messages.
std::string quoted(const char* s)
{
	std::string out = "\"";
	for (; *s; s++) {
		const auto c = static_cast<unsigned char>(*s);
		if (c >= 0x20 && c < 0x7f) {
			out += static_cast<char>(c);
		} else {
			char esc[8];
			std::snprintf(esc, sizeof(esc), "\\x%02x", c);
			out += esc;
		}
	}
	return out + "\"";
}

}  // namespace

// kstrtouint(s, 10, &v): optional '+', digits, one optional '\n'.
TEST(ParseU32, AcceptsKstrtouintForms)
{
	const Accepted cases[] = {
		{"0", 0},	  {"8", 8},	    {"+8", 8},		 {"8\n", 8},
		{"007", 7},	  {"+0\n", 0},	    {"4294967295", 4294967295u},
		{"+4294967295\n", 4294967295u},
	};
	for (const auto& c : cases) {
		SCOPED_TRACE(quoted(c.in));
		u32 v = kUntouched;
		EXPECT_TRUE(snapcore::parse_u32(c.in, &v));
		EXPECT_EQ(v, c.value);
	}
}

TEST(ParseU32, RejectsEverythingElseAndLeavesOutputAlone)
{
	const char* const cases[] = {
		"",	  "+",	    "\n",    "0x8",   "0X8",	"-1",  "-0",	     " 8",
		"8 ",	  "\t8",    "\n8",   "8\n\n", "8\r",	"++8", "+-8",	     "8a",
		"1e3",	  "8.0",    "4294967296",     "99999999999999999999999",
	};
	for (const char* in : cases) {
		SCOPED_TRACE(quoted(in));
		u32 v = kUntouched;
		EXPECT_FALSE(snapcore::parse_u32(in, &v));
		EXPECT_EQ(v, kUntouched);
	}
}

// The kernel's vsscanf("%u%c") (lib/vsprintf.c), not glibc's: no sign is
// accepted, and overflow wraps instead of failing.
TEST(ParseScanfU32, AcceptsKernelSscanfForms)
{
	const Accepted cases[] = {
		{"0", 0},
		{"2", 2},
		{"002", 2},
		{" 2", 2},
		{"\t\n\v\f\r 2", 2},
		{"\xa0" "2", 2},	// the kernel's isspace() includes NBSP
		{"4294967295", 4294967295u},
		{"4294967296", 0},
		{"4294967298", 2},
		{"18446744073709551617", 1},	// 2^64 + 1
	};
	for (const auto& c : cases) {
		SCOPED_TRACE(quoted(c.in));
		u32 v = kUntouched;
		EXPECT_TRUE(snapcore::parse_scanf_u32(c.in, &v));
		EXPECT_EQ(v, c.value);
	}
}

TEST(ParseScanfU32, RejectsSignsTrailingCharactersAndNonNumbers)
{
	const char* const cases[] = {
		"", " ", "-1", "-0", "+1", "2 ", "2\n", "2x", "x2", "0x2", "2:", "- 1",
	};
	for (const char* in : cases) {
		SCOPED_TRACE(quoted(in));
		u32 v = kUntouched;
		EXPECT_FALSE(snapcore::parse_scanf_u32(in, &v));
		EXPECT_EQ(v, kUntouched);
	}
}

TEST(EqualsIgnoreCase, FoldsAsciiLettersOnly)
{
	EXPECT_TRUE(snapcore::equals_ignore_case("discard_zeroes_cow", "DISCARD_Zeroes_cow"));
	EXPECT_TRUE(snapcore::equals_ignore_case("", ""));
	EXPECT_TRUE(snapcore::equals_ignore_case("p", "P"));
	EXPECT_FALSE(snapcore::equals_ignore_case("abc", "abd"));
	EXPECT_FALSE(snapcore::equals_ignore_case("abc", "ab"));
	EXPECT_FALSE(snapcore::equals_ignore_case("ab", "abc"));
	EXPECT_FALSE(snapcore::equals_ignore_case("a", ""));
	// Pairs that differ only in bit 5 but are not letters.
	EXPECT_FALSE(snapcore::equals_ignore_case("@", "`"));
	EXPECT_FALSE(snapcore::equals_ignore_case("[", "{"));
	EXPECT_FALSE(snapcore::equals_ignore_case("_", "\x7f"));
}

class TextSinkTest : public ::testing::Test {
protected:
	// Filled with a marker so writes past the terminator show.
	void SetUp() override { std::memset(buf, 'x', sizeof(buf)); }
	char buf[32];
};

TEST_F(TextSinkTest, AppendsStringsCharactersAndNumbers)
{
	TextSink out(buf, sizeof(buf));
	out.str("ab").chr('c').dec(42).str("").chr('/').dec(0);
	EXPECT_STREQ(buf, "abc42/0");
	EXPECT_EQ(out.size(), 7u);
	EXPECT_FALSE(out.truncated());
}

TEST_F(TextSinkTest, FormatsExtremeNumbers)
{
	TextSink out(buf, sizeof(buf));
	out.dec(0).chr(' ').dec(10).chr(' ').dec(UINT64_MAX);
	EXPECT_STREQ(buf, "0 10 18446744073709551615");
	EXPECT_FALSE(out.truncated());
}

TEST_F(TextSinkTest, ExactFitUsesMaxlenMinusOneCharacters)
{
	TextSink out(buf, 4);
	out.str("abc");
	EXPECT_STREQ(buf, "abc");
	EXPECT_EQ(out.size(), 3u);
	EXPECT_FALSE(out.truncated());
	out.chr('d');
	EXPECT_STREQ(buf, "abc");
	EXPECT_TRUE(out.truncated());
	EXPECT_EQ(buf[4], 'x');
}

TEST_F(TextSinkTest, TruncatesAtMaxlenIncludingTerminator)
{
	TextSink out(buf, 4);
	out.str("abcdef").chr('z').dec(7);
	EXPECT_STREQ(buf, "abc");
	EXPECT_EQ(out.size(), 3u);
	EXPECT_TRUE(out.truncated());
	EXPECT_EQ(std::string(buf + 4, 4), "xxxx");
}

TEST_F(TextSinkTest, TruncatedNumberKeepsItsLeadingDigits)
{
	TextSink out(buf, 3);
	out.dec(12345);
	EXPECT_STREQ(buf, "12");
	EXPECT_TRUE(out.truncated());
}

TEST_F(TextSinkTest, MaxlenZeroWritesNothing)
{
	TextSink out(buf, 0);
	out.str("a").dec(1);
	EXPECT_EQ(buf[0], 'x');
	EXPECT_EQ(out.size(), 0u);
	EXPECT_TRUE(out.truncated());
}

TEST_F(TextSinkTest, MaxlenOneHoldsOnlyTheTerminator)
{
	TextSink out(buf, 1);
	EXPECT_EQ(buf[0], '\0');
	EXPECT_FALSE(out.truncated());
	out.str("a");
	EXPECT_EQ(buf[0], '\0');
	EXPECT_EQ(buf[1], 'x');
	EXPECT_TRUE(out.truncated());
}
