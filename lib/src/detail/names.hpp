// The one place where names and paths given to the toolkit are judged, for every mechanism:
// URIs (channel_uri::parse, open_channel), resolve_name (key files, FIFOs), runtime_dir, and the
// POSIX segment names. Each returns what is wrong, or nothing. Rules (docs/errors.md, "Input rules"):
//   - no NUL or other control character anywhere (a NUL would silently cut a path short);
//   - a plain name: [A-Za-z0-9._-], 1..200 characters, not "." or "..";
//   - a path: 1..4095 bytes, every component at most 255, no ".." component (nothing resolves outside
//     the directory it is spelled in: `fifo:../x` cannot leave the runtime directory).
#pragma once

#include <ipc/config.hpp>

#include <optional>
#include <string>
#include <string_view>

namespace ipc::detail {

inline constexpr std::size_t max_plain_name = 200;
inline constexpr std::size_t max_path = 4095;       // PATH_MAX - 1
inline constexpr std::size_t max_component = 255;   // NAME_MAX
inline constexpr std::size_t max_uri = 8192;

/// What makes `text` unusable anywhere (a NUL or control character), else nullopt.
std::optional<std::string> text_problem(std::string_view text);
/// What keeps `name` from being a plain object name, else nullopt.
std::optional<std::string> plain_name_problem(std::string_view name);
/// What keeps `path` from being a path the toolkit resolves (see the rules above), else nullopt.
std::optional<std::string> path_problem(std::string_view path);

}  // namespace ipc::detail
