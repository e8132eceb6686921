// libFuzzer target: the record decoder (lib/src/record.cpp) on any bytes. decode() must never crash,
// read out of bounds or throw; a record it accepts must re-encode to exactly the bytes it came from.
#include <ipc/record.hpp>

#include <cstdlib>
#include <cstring>
#include <span>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::byte> wire(reinterpret_cast<const std::byte*>(data), size);
  const auto r = ipc::decode(wire);
  if (!r) {
    (void)ipc::to_string(r.error);
    return 0;
  }
  std::vector<std::byte> again;
  ipc::encode(r.header, r.payload, again);
  if (again.size() != size || std::memcmp(again.data(), data, size) != 0) std::abort();  // not a round trip
  return 0;
}
