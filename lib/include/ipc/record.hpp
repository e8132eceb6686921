// The daemons' record: a fixed little-endian header, then the payload.
//
//   ipc::record_header h{.session = ipc::new_session_id(), .sequence = 1, .send_time_ns = ipc::monotonic_now_ns()};
//   std::vector<std::byte> wire;
//   ipc::encode(h, payload, wire);                // or encode_into(h, payload, fixed_buffer)
//   auto r = ipc::decode(wire);                   // never trusts its input
//   if (!r) log(ipc::to_string(r.error));          // short, length, bad magic/version, CRC mismatch
//   else use(r.header.sequence, r.payload);
//
// Wire layout (40 bytes, little-endian):
//   0 u16 magic 0x5249 ("IR")   2 u8 version (1)   3 u8 flags (0)   4 u32 payload length
//   8 u64 session id            16 u64 sequence    24 u64 send time (CLOCK_MONOTONIC ns)
//   32 u32 CRC32C of the payload                   36 u32 CRC32C of bytes 0..35
// The session id is random per producer start, so a restarted producer (sequence back at 1)
// is told apart from reordering. CLOCK_MONOTONIC is one clock for every process on a host.
#pragma once

#include <ipc/config.hpp>

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

namespace ipc {

inline constexpr std::uint16_t record_magic = 0x5249;
inline constexpr std::uint8_t record_version = 1;
inline constexpr std::size_t record_header_size = 40;
/// The largest payload the u32 length field can describe.
inline constexpr std::size_t record_max_payload = 0xFFFF'FFFFU;

struct record_header {
  std::uint64_t session = 0;       ///< random per producer start
  std::uint64_t sequence = 0;      ///< 1, 2, 3 … within a session
  std::uint64_t send_time_ns = 0;  ///< CLOCK_MONOTONIC at send
};

/// Why decode() refused a record.
enum class decode_error {
  none = 0,
  too_short,             ///< fewer bytes than the header
  length_mismatch,       ///< the length field differs from the bytes after the header (truncated or trailing bytes)
  bad_magic,             ///< not a record
  bad_version,           ///< a record of another version (or with unknown flags)
  header_crc_mismatch,   ///< header bytes damaged
  payload_crc_mismatch,  ///< payload bytes damaged
};

/// A short name for logs: "short", "length", "bad-magic", "bad-version", "header-crc", "payload-crc".
IPC_API std::string_view to_string(decode_error e) noexcept;

/// A decoded record; payload points into the decoded buffer. Converts to false on error.
struct decoded_record {
  record_header header{};
  std::span<const std::byte> payload{};
  decode_error error = decode_error::none;
  explicit operator bool() const noexcept { return error == decode_error::none; }
};

/// Bytes a record with this payload occupies on the wire.
constexpr std::size_t encoded_size(std::size_t payload_size) noexcept { return record_header_size + payload_size; }

/// Writes header + payload into out (resized; reuses its capacity). Never blocks.
/// Throws errc::message_too_large when the payload exceeds record_max_payload.
IPC_API void encode(const record_header& h, std::span<const std::byte> payload, std::vector<std::byte>& out);
/// Writes header + payload into the front of out and returns the bytes used. Never blocks, never allocates.
/// Throws errc::buffer_too_small when out is shorter than encoded_size(payload.size()).
IPC_API std::size_t encode_into(const record_header& h, std::span<const std::byte> payload, std::span<std::byte> out);
/// Validates and decodes one whole record. Never blocks, never throws: errors come back in .error.
IPC_API decoded_record decode(std::span<const std::byte> wire) noexcept;
/// As decode(), but throws errc::corrupt naming the reason (what() contains to_string(error)).
IPC_API decoded_record decode_or_throw(std::span<const std::byte> wire);

/// CLOCK_MONOTONIC now, in nanoseconds. Never throws.
IPC_API std::uint64_t monotonic_now_ns() noexcept;
/// A fresh random non-zero session id (getrandom). Throws std::system_error if the kernel refuses.
IPC_API std::uint64_t new_session_id();

}  // namespace ipc
