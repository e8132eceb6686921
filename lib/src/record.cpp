#include <ipc/error.hpp>
#include <ipc/record.hpp>

#include "detail/crc32c.hpp"

#include <sys/random.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <string>

namespace ipc {
namespace {

// Explicit little-endian stores/loads: the wire format is the same on every host.
template <typename T>
void put_le(std::byte* p, T v) noexcept {
  for (std::size_t i = 0; i < sizeof(T); ++i) p[i] = static_cast<std::byte>((v >> (8 * i)) & 0xFFU);
}

template <typename T>
T get_le(const std::byte* p) noexcept {
  T v = 0;
  for (std::size_t i = 0; i < sizeof(T); ++i) v = static_cast<T>(v | (static_cast<T>(std::to_integer<unsigned>(p[i])) << (8 * i)));
  return v;
}

constexpr std::size_t header_crc_offset = 36;

void write_record(const record_header& h, std::span<const std::byte> payload, std::byte* out) noexcept {
  put_le<std::uint16_t>(out + 0, record_magic);
  out[2] = static_cast<std::byte>(record_version);
  out[3] = std::byte{0};
  put_le<std::uint32_t>(out + 4, static_cast<std::uint32_t>(payload.size()));
  put_le<std::uint64_t>(out + 8, h.session);
  put_le<std::uint64_t>(out + 16, h.sequence);
  put_le<std::uint64_t>(out + 24, h.send_time_ns);
  put_le<std::uint32_t>(out + 32, detail::crc32c(payload));
  put_le<std::uint32_t>(out + header_crc_offset, detail::crc32c({out, header_crc_offset}));
  if (!payload.empty()) std::memcpy(out + record_header_size, payload.data(), payload.size());
}

void check_payload(std::span<const std::byte> payload) {
  if (payload.size() > record_max_payload) {
    throw_error(errc::message_too_large, "encode", "record",
                std::to_string(payload.size()) + " payload bytes do not fit the u32 length field");
  }
}

}  // namespace

std::string_view to_string(decode_error e) noexcept {
  switch (e) {
    case decode_error::none: return "ok";
    case decode_error::too_short: return "short";
    case decode_error::length_mismatch: return "length";
    case decode_error::bad_magic: return "bad-magic";
    case decode_error::bad_version: return "bad-version";
    case decode_error::header_crc_mismatch: return "header-crc";
    case decode_error::payload_crc_mismatch: return "payload-crc";
  }
  return "unknown";
}

void encode(const record_header& h, std::span<const std::byte> payload, std::vector<std::byte>& out) {
  check_payload(payload);
  out.resize(encoded_size(payload.size()));
  write_record(h, payload, out.data());
}

std::size_t encode_into(const record_header& h, std::span<const std::byte> payload, std::span<std::byte> out) {
  check_payload(payload);
  const std::size_t need = encoded_size(payload.size());
  if (out.size() < need) {
    throw_error(errc::buffer_too_small, "encode_into", "record",
                std::to_string(out.size()) + " < " + std::to_string(need) + " bytes");
  }
  write_record(h, payload, out.data());
  return need;
}

decoded_record decode(std::span<const std::byte> wire) noexcept {
  decoded_record r;
  if (wire.size() < record_header_size) {
    r.error = decode_error::too_short;
    return r;
  }
  const std::byte* p = wire.data();
  if (get_le<std::uint16_t>(p) != record_magic) {
    r.error = decode_error::bad_magic;
    return r;
  }
  if (std::to_integer<std::uint8_t>(p[2]) != record_version || p[3] != std::byte{0}) {
    r.error = decode_error::bad_version;
    return r;
  }
  // The header CRC comes before the length check: a damaged length field is reported as damage.
  if (get_le<std::uint32_t>(p + header_crc_offset) != detail::crc32c({p, header_crc_offset})) {
    r.error = decode_error::header_crc_mismatch;
    return r;
  }
  const std::uint32_t length = get_le<std::uint32_t>(p + 4);
  if (length != wire.size() - record_header_size) {
    r.error = decode_error::length_mismatch;
    return r;
  }
  r.payload = wire.subspan(record_header_size);
  if (get_le<std::uint32_t>(p + 32) != detail::crc32c(r.payload)) {
    r.payload = {};
    r.error = decode_error::payload_crc_mismatch;
    return r;
  }
  r.header.session = get_le<std::uint64_t>(p + 8);
  r.header.sequence = get_le<std::uint64_t>(p + 16);
  r.header.send_time_ns = get_le<std::uint64_t>(p + 24);
  return r;
}

decoded_record decode_or_throw(std::span<const std::byte> wire) {
  auto r = decode(wire);
  if (!r) {
    throw_error(errc::corrupt, "decode", "record",
                std::string(to_string(r.error)) + " (" + std::to_string(wire.size()) + " bytes)");
  }
  return r;
}

std::uint64_t monotonic_now_ns() noexcept {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000'000U + static_cast<std::uint64_t>(ts.tv_nsec);
}

std::uint64_t new_session_id() {
  for (;;) {
    std::uint64_t id = 0;
    ssize_t n = ::getrandom(&id, sizeof id, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) ipc::throw_errno(errno, "getrandom", "session id");
    if (static_cast<std::size_t>(n) == sizeof id && id != 0) return id;
  }
}

}  // namespace ipc
