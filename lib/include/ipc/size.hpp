// Sizes as people write them: the one size parser of the toolkit (channel URI options, the
// daemons' and ipcctl's --size style flags, the bench's --sizes).
//
//   ipc::parse_size("64")       == 64
//   ipc::parse_size("4K")       == 4096             // also 4k, 4KiB
//   ipc::parse_size("0x100")    == 256              // hex with 0x; a leading 0 is not octal: "0100" == 100
//   ipc::parse_size("1GiB")     == 1073741824
//   ipc::parse_size("18446744073709551616")  -> std::nullopt   // 2^64 does not fit: never wraps
//   ipc::parse_size(" 1"), ("-1"), ("1.5K"), ("")            -> std::nullopt
#pragma once

#include <ipc/config.hpp>

#include <cstdint>
#include <optional>
#include <string_view>

namespace ipc {

/// Parses a size in bytes: decimal digits, or 0x followed by hex digits, then an optional suffix
/// K, M or G (either case, optionally followed by "iB": KiB, MiB, GiB) meaning 2^10, 2^20, 2^30.
/// Nothing else is accepted: no sign, no white space, no fraction, no other suffix, nothing empty.
/// Returns std::nullopt for text that is not such a size and for a value above 2^64-1 (digits or
/// digits times the suffix): it never wraps around. Zero is a size; a caller that needs at least
/// one byte (or a ceiling) checks the result. Never blocks, never throws.
IPC_API std::optional<std::uint64_t> parse_size(std::string_view text) noexcept;

}  // namespace ipc
