// ipc::parse_size, the one size parser of the toolkit (URI options, daemon and ipcctl flags, the bench).
#include <ipc/size.hpp>
#include <ipc/uri.hpp>

#include <catch2/catch.hpp>

#include <cstdint>

using ipc::parse_size;

TEST_CASE("size: decimal, 0x hex and K/M/G suffixes in powers of 1024 are sizes", "[size]") {
  CHECK(parse_size("0") == 0U);
  CHECK(parse_size("64") == 64U);
  CHECK(parse_size("0100") == 100U);  // a leading zero is not octal
  CHECK(parse_size("0x100") == 256U);
  CHECK(parse_size("0XfF") == 255U);
  CHECK(parse_size("4K") == 4096U);
  CHECK(parse_size("4k") == 4096U);
  CHECK(parse_size("4KiB") == 4096U);
  CHECK(parse_size("1m") == 1048576U);
  CHECK(parse_size("1MiB") == 1048576U);
  CHECK(parse_size("2G") == (std::uint64_t{2} << 30));
  CHECK(parse_size("2g") == (std::uint64_t{2} << 30));
  CHECK(parse_size("2GiB") == (std::uint64_t{2} << 30));
  CHECK(parse_size("0x10K") == 16384U);
}

TEST_CASE("size: the largest 64-bit value is a size and one more is refused, never wrapped", "[size]") {
  CHECK(parse_size("18446744073709551615") == UINT64_MAX);
  CHECK(parse_size("0xffffffffffffffff") == UINT64_MAX);
  CHECK_FALSE(parse_size("18446744073709551616"));   // 2^64
  CHECK_FALSE(parse_size("99999999999999999999999"));
  CHECK_FALSE(parse_size("0x10000000000000000"));    // 2^64 in hex
}

TEST_CASE("size: a suffix that takes the value past 2^64-1 is refused", "[size]") {
  CHECK(parse_size("17179869183G") == (std::uint64_t{17179869183} << 30));  // 2^64 - 2^30
  CHECK_FALSE(parse_size("17179869184G"));  // 2^34 G = 2^64
  CHECK_FALSE(parse_size("18014398509481984K"));  // 2^54 K = 2^64
  CHECK_FALSE(parse_size("18446744073709551615K"));
}

TEST_CASE("size: empty text, signs, white space, fractions and other suffixes are not sizes", "[size]") {
  for (const char* junk : {"", "-1", "+1", "-0", " 1", "1 ", "\t1", "1\n", "1 K", "1.5K", "1e3", "K", "KiB", "iB", "1iB",
                           "1B", "1KB", "1Ki", "12x", "0x", "0xK", "0x-1", "x10", "1KK", "1Kib"}) {
    INFO("'" << junk << "'");
    CHECK_FALSE(parse_size(junk));
  }
}

TEST_CASE("size: channel URI options take the same spellings and add their own floor and ceiling", "[size]") {
  const auto u = ipc::channel_uri::parse("shm:x?a=4KiB&b=0x10&c=1m&z=0&big=2T&huge=18446744073709551616&t=1024GiB");
  CHECK(u.size_option("a", 0) == 4096U);
  CHECK(u.size_option("b", 0) == 16U);
  CHECK(u.size_option("c", 0) == 1048576U);
  CHECK(u.size_option("t", 0) == (std::size_t{1} << 40));
  CHECK_THROWS_WITH(u.size_option("z", 1), Catch::Contains("z=0") && Catch::Contains("zero"));
  CHECK_THROWS_WITH(u.size_option("big", 1), Catch::Contains("big=2T") && Catch::Contains("not a size"));
  CHECK_THROWS_WITH(u.size_option("huge", 1), Catch::Contains("huge=18446744073709551616") && Catch::Contains("not a size"));
  CHECK_THROWS_WITH(ipc::channel_uri::parse("shm:x?c=1025G").size_option("c", 1), Catch::Contains("above 1 TiB"));
}
