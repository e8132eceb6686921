#include <ipc/channel.hpp>
#include <ipc/error.hpp>
#include <ipc/record.hpp>

#include "detail/crc32c.hpp"

#include <catch2/catch.hpp>

#include <string>
#include <vector>

using ipc::decode_error;

namespace {

std::vector<std::byte> make(std::string_view payload, std::uint64_t seq = 7) {
  std::vector<std::byte> wire;
  ipc::encode({0x1122334455667788ULL, seq, 123456789ULL}, ipc::as_bytes(payload), wire);
  return wire;
}

}  // namespace

TEST_CASE("crc32c: both implementations give the standard check values", "[record]") {
  const auto check = ipc::as_bytes("123456789");
  CHECK(ipc::detail::crc32c(check) == 0xE3069283U);
  CHECK(ipc::detail::crc32c_portable(check) == 0xE3069283U);
  CHECK(ipc::detail::crc32c({}) == 0U);
  // RFC 3720 B.4: 32 bytes of zeros, and of 0xFF.
  std::vector<std::byte> zeros(32, std::byte{0}), ones(32, std::byte{0xFF});
  CHECK(ipc::detail::crc32c_portable(zeros) == 0x8A9136AAU);
  CHECK(ipc::detail::crc32c_portable(ones) == 0x62A8AB43U);
  if (ipc::detail::crc32c_hardware_available()) {
    CHECK(ipc::detail::crc32c_hardware(check) == 0xE3069283U);
    CHECK(ipc::detail::crc32c_hardware(zeros) == 0x8A9136AAU);
    CHECK(ipc::detail::crc32c_hardware(ones) == 0x62A8AB43U);
  }
}

TEST_CASE("crc32c: hardware and table agree on every length and alignment", "[record]") {
  std::vector<std::byte> data(300);
  for (std::size_t i = 0; i < data.size(); ++i) data[i] = static_cast<std::byte>(i * 131 + 7);
  for (std::size_t off = 0; off < 8; ++off) {
    for (std::size_t len = 0; off + len <= data.size(); len += 13) {
      std::span<const std::byte> s(data.data() + off, len);
      REQUIRE(ipc::detail::crc32c(s) == ipc::detail::crc32c_portable(s));
    }
  }
  // Continuation: crc(a+b) == crc(b, crc(a)).
  std::span<const std::byte> all(data);
  CHECK(ipc::detail::crc32c(all.subspan(100), ipc::detail::crc32c(all.first(100))) == ipc::detail::crc32c(all));
}

TEST_CASE("record: encode then decode gives back header and payload", "[record]") {
  auto wire = make("hello world", 42);
  REQUIRE(wire.size() == ipc::record_header_size + 11);
  auto r = ipc::decode(wire);
  REQUIRE(r);
  CHECK(r.header.session == 0x1122334455667788ULL);
  CHECK(r.header.sequence == 42);
  CHECK(r.header.send_time_ns == 123456789ULL);
  CHECK(ipc::as_text(r.payload) == "hello world");
}

TEST_CASE("record: the header is little-endian at fixed offsets", "[record]") {
  auto wire = make("x", 0x0102);
  CHECK(wire[0] == std::byte{0x49});
  CHECK(wire[1] == std::byte{0x52});
  CHECK(wire[2] == std::byte{ipc::record_version});
  CHECK(wire[4] == std::byte{1});  // payload length
  CHECK(wire[8] == std::byte{0x88});
  CHECK(wire[15] == std::byte{0x11});
  CHECK(wire[16] == std::byte{0x02});
  CHECK(wire[17] == std::byte{0x01});
}

TEST_CASE("record: an empty payload is a valid record", "[record]") {
  auto r = ipc::decode(make(""));
  REQUIRE(r);
  CHECK(r.payload.empty());
}

TEST_CASE("record: encode_into fills a fixed buffer and refuses a short one", "[record]") {
  std::vector<std::byte> buf(64);
  auto n = ipc::encode_into({1, 2, 3}, ipc::as_bytes("abc"), buf);
  CHECK(n == ipc::encoded_size(3));
  auto r = ipc::decode(std::span<const std::byte>(buf).first(n));
  REQUIRE(r);
  CHECK(r.header.sequence == 2);
  std::vector<std::byte> small(ipc::record_header_size + 2);
  REQUIRE_THROWS_AS(ipc::encode_into({1, 2, 3}, ipc::as_bytes("abc"), small), std::system_error);
  try {
    (void)ipc::encode_into({1, 2, 3}, ipc::as_bytes("abc"), small);
  } catch (const std::system_error& e) {
    CHECK(e.code() == ipc::errc::buffer_too_small);
  }
}

TEST_CASE("record: fewer bytes than the header are reported as short", "[record]") {
  auto wire = make("payload");
  CHECK(ipc::decode(std::span<const std::byte>(wire).first(ipc::record_header_size - 1)).error == decode_error::too_short);
  CHECK(ipc::decode({}).error == decode_error::too_short);
}

TEST_CASE("record: a truncated or padded record is reported as a length mismatch", "[record]") {
  auto wire = make("payload");
  CHECK(ipc::decode(std::span<const std::byte>(wire).first(wire.size() - 1)).error == decode_error::length_mismatch);
  wire.push_back(std::byte{0});
  CHECK(ipc::decode(wire).error == decode_error::length_mismatch);
}

TEST_CASE("record: a wrong magic is reported as bad magic", "[record]") {
  auto wire = make("payload");
  wire[0] = std::byte{0x00};
  CHECK(ipc::decode(wire).error == decode_error::bad_magic);
}

TEST_CASE("record: another version or unknown flags are reported as bad version", "[record]") {
  auto wire = make("payload");
  wire[2] = std::byte{2};
  CHECK(ipc::decode(wire).error == decode_error::bad_version);
  wire = make("payload");
  wire[3] = std::byte{1};
  CHECK(ipc::decode(wire).error == decode_error::bad_version);
}

TEST_CASE("record: a damaged header field is caught by the header CRC", "[record]") {
  for (std::size_t at : {4U, 9U, 17U, 30U, 33U, 38U}) {
    auto wire = make("payload");
    wire[at] ^= std::byte{0x10};
    INFO("byte " << at);
    CHECK(ipc::decode(wire).error == decode_error::header_crc_mismatch);
  }
}

TEST_CASE("record: a flipped payload bit is caught by the payload CRC", "[record]") {
  auto wire = make("payload bytes");
  wire.back() ^= std::byte{0x01};
  auto r = ipc::decode(wire);
  CHECK(r.error == decode_error::payload_crc_mismatch);
  CHECK(r.payload.empty());
}

TEST_CASE("record: decode_or_throw reports errc::corrupt naming the reason", "[record]") {
  auto wire = make("payload");
  wire.back() ^= std::byte{0x01};
  REQUIRE_THROWS_WITH(ipc::decode_or_throw(wire), Catch::Contains("payload-crc") && Catch::Contains("decode(record)"));
  try {
    (void)ipc::decode_or_throw(wire);
  } catch (const std::system_error& e) {
    CHECK(e.code() == ipc::errc::corrupt);
  }
  CHECK(ipc::decode_or_throw(make("ok")).payload.size() == 2);
}

TEST_CASE("record: every decode error has its own name", "[record]") {
  CHECK(ipc::to_string(decode_error::too_short) == "short");
  CHECK(ipc::to_string(decode_error::length_mismatch) == "length");
  CHECK(ipc::to_string(decode_error::bad_magic) == "bad-magic");
  CHECK(ipc::to_string(decode_error::bad_version) == "bad-version");
  CHECK(ipc::to_string(decode_error::header_crc_mismatch) == "header-crc");
  CHECK(ipc::to_string(decode_error::payload_crc_mismatch) == "payload-crc");
}

TEST_CASE("record: random garbage never decodes and never reads out of bounds", "[record]") {
  std::uint64_t x = 88172645463325252ULL;
  std::vector<std::byte> buf;
  for (int i = 0; i < 2000; ++i) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    buf.resize(x % 128);
    for (auto& b : buf) {
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
      b = static_cast<std::byte>(x);
    }
    REQUIRE_FALSE(ipc::decode(buf));
  }
}

TEST_CASE("record: session ids are random and non-zero; the clock is monotonic", "[record]") {
  auto a = ipc::new_session_id();
  auto b = ipc::new_session_id();
  CHECK(a != 0);
  CHECK(a != b);
  auto t1 = ipc::monotonic_now_ns();
  auto t2 = ipc::monotonic_now_ns();
  CHECK(t2 >= t1);
  CHECK(t1 > 0);
}
