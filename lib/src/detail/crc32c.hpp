// CRC32C (Castagnoli, reflected polynomial 0x82F63B78), as used by iSCSI, ext4 and SSE4.2.
//
//   std::uint32_t c = ipc::detail::crc32c(bytes);   // crc32c("123456789") == 0xE3069283
//
// The SSE4.2 crc32 instruction is used when the CPU has it (checked once at run time);
// otherwise a 256-entry table. Both give the same value; tests check each against the vectors.
#pragma once

#include <ipc/config.hpp>

#include <cstddef>
#include <cstdint>
#include <span>

namespace ipc::detail {

/// CRC32C of `data`, continuing from `crc` (0 for a fresh checksum). Never blocks, never throws.
std::uint32_t crc32c(std::span<const std::byte> data, std::uint32_t crc = 0) noexcept;
/// The table implementation, always available. Never blocks, never throws.
std::uint32_t crc32c_portable(std::span<const std::byte> data, std::uint32_t crc = 0) noexcept;
/// True when crc32c() uses the SSE4.2 instruction on this CPU.
bool crc32c_hardware_available() noexcept;
/// The SSE4.2 implementation; call only when crc32c_hardware_available(). Never throws.
std::uint32_t crc32c_hardware(std::span<const std::byte> data, std::uint32_t crc = 0) noexcept;

}  // namespace ipc::detail
