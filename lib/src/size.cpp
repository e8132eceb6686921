#include <ipc/size.hpp>

#include <charconv>
#include <system_error>

namespace ipc {

std::optional<std::uint64_t> parse_size(std::string_view text) noexcept {
  // The suffix: K, M or G in either case, optionally spelled KiB, MiB, GiB.
  if (text.ends_with("iB")) {
    text.remove_suffix(2);
    if (text.empty()) return std::nullopt;
    const char unit = text.back();
    if (unit != 'K' && unit != 'k' && unit != 'M' && unit != 'm' && unit != 'G' && unit != 'g') return std::nullopt;
  }
  unsigned shift = 0;
  if (!text.empty()) {
    switch (text.back()) {
      case 'K': case 'k': shift = 10; break;
      case 'M': case 'm': shift = 20; break;
      case 'G': case 'g': shift = 30; break;
      default: break;
    }
    if (shift != 0) text.remove_suffix(1);
  }
  int base = 10;
  if (text.size() > 2 && text[0] == '0' && (text[1] == 'x' || text[1] == 'X')) {
    base = 16;
    text.remove_prefix(2);
  }
  // from_chars would take a sign for other types and skips nothing, but say it: digits only.
  const bool digit_first = !text.empty() && ((text.front() >= '0' && text.front() <= '9') ||
                                             (base == 16 && ((text.front() | 0x20) >= 'a' && (text.front() | 0x20) <= 'f')));
  if (!digit_first) return std::nullopt;
  std::uint64_t v = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v, base);
  if (ec != std::errc{} || end != text.data() + text.size()) return std::nullopt;  // ERANGE: no wrap-around
  if (v > (UINT64_MAX >> shift)) return std::nullopt;
  return v << shift;
}

}  // namespace ipc
