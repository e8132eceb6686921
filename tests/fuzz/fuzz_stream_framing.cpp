// libFuzzer target: the stream frame decoder (lib/src/detail/stream_framing.cpp). The first byte picks
// the framing and max_message; the rest is what a hostile writer put into the pipe. frame_reader must
// hand out whole messages no longer than max_message, or report errc::corrupt / errc::closed - never
// crash, over-read or allocate what the stream claims.
#include <ipc/deadline.hpp>
#include <ipc/error.hpp>

#include "detail/stream_framing.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cstdlib>
#include <system_error>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1 || size > 60000) return 0;  // a pipe holds 64 KiB: the writer never blocks
  const auto framing = (data[0] & 1) != 0 ? ipc::detail::stream_framing::lines : ipc::detail::stream_framing::length_prefixed;
  const std::size_t max_message = std::size_t{1} << (data[0] >> 4);  // 1 B .. 32 KiB
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC | O_NONBLOCK) != 0) std::abort();
  if (size > 1 && ::write(fds[1], data + 1, size - 1) != static_cast<ssize_t>(size - 1)) std::abort();
  ::close(fds[1]);
  ipc::detail::frame_reader reader(framing, max_message);
  std::vector<std::byte> out;
  std::size_t total = 0;
  try {
    for (int i = 0; i < 100000; ++i) {
      if (!reader.read(ipc::detail::stream_end{fds[0]}, out, ipc::deadline::now(), "fuzz")) break;
      if (out.size() > max_message) std::abort();
      total += out.size();
      if (total > size) std::abort();  // more payload than bytes written
    }
  } catch (const std::system_error& e) {
    if (e.code() != ipc::errc::corrupt && e.code() != ipc::errc::closed) std::abort();
  }
  ::close(fds[0]);
  return 0;
}
