// Channel URIs and the runtime directory.
//
//   auto u = ipc::channel_uri::parse("shm:demo?capacity=1M&max_message=4096");
//   u.scheme == "shm"; u.name == "demo";
//   u.size_option("capacity", 65536) == 1048576;
//   ipc::resolve_name("demo")  ->  "$IPC_RUNTIME_DIR/demo" (or $RUNTIME_DIRECTORY, /run/ipc, $XDG_RUNTIME_DIR/ipc)
#pragma once

#include <ipc/config.hpp>

#include <sys/types.h>

#include <cstddef>
#include <filesystem>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace ipc {

/// How a named object is opened.
enum class open_mode { create_only, open_only, open_or_create };

struct IPC_API channel_uri {
  std::string text;    ///< the URI as given
  std::string scheme;  ///< "pipe", "fifo", "msgq", "sem", "shm"
  std::string name;    ///< what follows "scheme:" up to '?', percent-decoding not applied
  std::vector<std::pair<std::string, std::string>> options;

  /// Parses "scheme[:name][?k=v&k=v]". Throws errc::bad_uri naming the bad part; a NUL or other control
  /// character anywhere, or more than 8192 bytes, is refused (`text` then shows them as \xNN).
  static channel_uri parse(std::string_view uri);

  /// The option's value, if present.
  [[nodiscard]] std::optional<std::string_view> option(std::string_view key) const;
  /// A size option, spelled as ipc::parse_size takes it (<ipc/size.hpp>: decimal - a leading 0 is not
  /// octal -, 0x hex, an optional K/M/G or KiB/MiB/GiB suffix, powers of 1024). Zero is refused, like
  /// any size above 1 TiB. Throws errc::bad_uri naming the option.
  [[nodiscard]] std::size_t size_option(std::string_view key, std::size_t fallback) const;
  /// A permission option in octal (e.g. mode=0660); must not grant world write. Throws errc::bad_uri.
  [[nodiscard]] mode_t mode_option(std::string_view key = "mode", mode_t fallback = 0600) const;
  /// shm: URIs' `mode` option is a comma-separated list whose items' form decides (docs/shm-modes.md):
  /// a word names the channel mode, octal digits the permissions (shm:jobs?mode=mpmc,0660).
  struct shm_mode_parts {
    std::string mode = "spsc";               ///< the word ("spsc", "mpmc", "broadcast", …), "spsc" when none
    std::optional<std::string> permissions;  ///< what is left for mode_option(); nullopt: the value was the word alone
  };
  /// Splits `mode` into its parts (no option: "spsc", no permissions). Whether the word is a known
  /// channel mode is open_channel's to judge. Throws errc::bad_uri when it names two channel modes or
  /// two permissions.
  [[nodiscard]] shm_mode_parts shm_mode() const;
  /// open=create_only|open_only|open_or_create. Throws errc::bad_uri.
  [[nodiscard]] open_mode open_option(open_mode fallback = open_mode::open_or_create) const;
  /// Throws errc::bad_uri naming the first option not in `allowed`.
  void allow_only(std::initializer_list<std::string_view> allowed) const;
  /// Throws errc::bad_uri unless name is a plain object name: [A-Za-z0-9._-], 1..200 chars, not "." or "..".
  void require_plain_name() const;
  /// The name rule of the scheme, checked for every mechanism by open_channel: a plain name for msgq, sem and
  /// shm (msgq:?key=N has none); for fifo a path of at most 4095 bytes (components at most 255) with no '..' component; none for
  /// pipe. Throws errc::bad_uri naming what is wrong.
  void require_safe_name() const;
};

/// The runtime directory: $IPC_RUNTIME_DIR, else $RUNTIME_DIRECTORY (systemd, first entry),
/// else /run/ipc for root, else $XDG_RUNTIME_DIR/ipc. Created 0700 if missing. Throws
/// errc::not_owner if it belongs to another user (root-owned is accepted), is world-writable, is a
/// symlink (however spelled: "link/", "link/." are the symlink) or is spelled with a '..' component.
IPC_API std::filesystem::path runtime_dir();

/// An absolute name stays as it is; a relative one resolves inside runtime_dir(). Throws EINVAL naming the
/// name when it holds a NUL or control character, is empty or too long, or has a '..' component.
IPC_API std::filesystem::path resolve_name(std::string_view name);

}  // namespace ipc
