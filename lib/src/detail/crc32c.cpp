#include "detail/crc32c.hpp"

#include <array>
#include <cstring>

#if defined(__x86_64__)
#include <nmmintrin.h>
#endif

namespace ipc::detail {
namespace {

constexpr std::array<std::uint32_t, 256> make_table() noexcept {
  std::array<std::uint32_t, 256> t{};
  for (std::uint32_t i = 0; i < 256; ++i) {
    std::uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1U) != 0 ? (c >> 1) ^ 0x82F63B78U : c >> 1;
    t[i] = c;
  }
  return t;
}

constexpr auto table = make_table();

}  // namespace

std::uint32_t crc32c_portable(std::span<const std::byte> data, std::uint32_t crc) noexcept {
  std::uint32_t c = ~crc;
  for (std::byte b : data) c = table[(c ^ std::to_integer<std::uint32_t>(b)) & 0xFFU] ^ (c >> 8);
  return ~c;
}

#if defined(__x86_64__)

bool crc32c_hardware_available() noexcept {
  static const bool has = __builtin_cpu_supports("sse4.2") != 0;
  return has;
}

__attribute__((target("sse4.2"))) std::uint32_t crc32c_hardware(std::span<const std::byte> data,
                                                                 std::uint32_t crc) noexcept {
  std::uint64_t c = ~crc;
  const std::byte* p = data.data();
  std::size_t n = data.size();
  while (n >= 8) {
    std::uint64_t w;
    std::memcpy(&w, p, 8);  // unaligned-safe; x86 is little-endian as the CRC expects
    c = _mm_crc32_u64(c, w);
    p += 8;
    n -= 8;
  }
  auto c32 = static_cast<std::uint32_t>(c);
  while (n > 0) {
    c32 = _mm_crc32_u8(c32, std::to_integer<unsigned char>(*p));
    ++p;
    --n;
  }
  return ~c32;
}

#else

bool crc32c_hardware_available() noexcept { return false; }

std::uint32_t crc32c_hardware(std::span<const std::byte> data, std::uint32_t crc) noexcept {
  return crc32c_portable(data, crc);
}

#endif

std::uint32_t crc32c(std::span<const std::byte> data, std::uint32_t crc) noexcept {
  return crc32c_hardware_available() ? crc32c_hardware(data, crc) : crc32c_portable(data, crc);
}

}  // namespace ipc::detail
