// libFuzzer target: the URI parser and the name judge (lib/src/uri.cpp, detail/names.hpp). Any bytes:
// parse either succeeds or throws errc::bad_uri; every option reader and the name rule likewise; a name
// the judge accepts holds no NUL and no '..' component.
#include <ipc/error.hpp>
#include <ipc/uri.hpp>

#include "detail/names.hpp"

#include <cstdlib>
#include <string_view>
#include <system_error>

namespace {

template <typename F>
void bad_uri_or_nothing(F&& f) {
  try {
    f();
  } catch (const std::system_error& e) {
    if (e.code() != ipc::errc::bad_uri) std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  if (!ipc::detail::path_problem(text)) {
    if (text.find('\0') != std::string_view::npos) std::abort();
    if (text == ".." || text.starts_with("../") || text.ends_with("/..") || text.find("/../") != std::string_view::npos) {
      std::abort();
    }
  }
  if (!ipc::detail::plain_name_problem(text) && text.find('/') != std::string_view::npos) std::abort();
  ipc::channel_uri u;
  try {
    u = ipc::channel_uri::parse(text);
  } catch (const std::system_error& e) {
    if (e.code() != ipc::errc::bad_uri) std::abort();
    return 0;
  }
  bad_uri_or_nothing([&] { (void)u.size_option("capacity", 1); });
  bad_uri_or_nothing([&] { (void)u.size_option("max_message", 1); });
  bad_uri_or_nothing([&] { (void)u.mode_option(); });
  bad_uri_or_nothing([&] { (void)u.open_option(); });
  bad_uri_or_nothing([&] { u.require_safe_name(); });
  bad_uri_or_nothing([&] { u.allow_only({"capacity", "max_message", "mode", "open"}); });
  return 0;
}
