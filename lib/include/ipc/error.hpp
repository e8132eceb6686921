// libipc errors: one style for the whole toolkit.
//
//   try { ch->send(msg); }
//   catch (const std::system_error& e) {
//     if (e.code() == ipc::errc::closed) { /* peer gone for good */ }
//     std::cerr << e.what() << '\n';   // "msgsnd(msgq:demo): peer closed the channel"
//   }
//
// Operating-system failures throw std::system_error with the errno in
// std::system_category(); toolkit-level failures use ipc::errc in
// ipc::category(). Either way what() names the call and the object.
// A timeout is not an error: timed calls return false / std::nullopt.
// The helpers that build these errors (throw_errno, check_unix, throw_error) are public: tools
// use them too, with a detail argument instead of text pushed into the call name.
#pragma once

#include <ipc/config.hpp>

#include <cerrno>
#include <string>
#include <string_view>
#include <system_error>

namespace ipc {

enum class errc {
  closed = 1,         ///< the peer is gone for good (last writer closed, reader closed, object removed)
  message_too_large,  ///< message exceeds the channel's max_message_size; nothing was sent
  corrupt,            ///< a frame, record or shared index failed validation
  not_owner,          ///< the object belongs to another user or has a foreign mode
  incompatible,       ///< a shared header has another magic, layout version or size
  bad_uri,            ///< a channel URI could not be parsed or names an unknown option
  buffer_too_small,   ///< a receive buffer cannot hold the message (message left in place)
  removed,            ///< the object's name was removed while attached (rm /dev/shm/…); reopen() recreates it
};

/// The error category of ipc::errc ("ipc").
IPC_API const std::error_category& category() noexcept;

inline std::error_code make_error_code(errc e) noexcept {
  return {static_cast<int>(e), category()};
}

/// Throws std::system_error(e) with what() = "<call>(<object>): <detail>: <message>" (": <detail>"
/// only when given).
[[noreturn]] IPC_API void throw_error(errc e, std::string_view call, std::string_view object,
                                      std::string_view detail = {});

/// Throws std::system_error(err, std::system_category()) with what() =
/// "<call>(<object>): <detail>: <strerror>" (": <detail>" only when given), e.g.
/// throw_errno(EPIPE, "write", "stdout", "sink") → "write(stdout): sink: Broken pipe".
[[noreturn]] IPC_API void throw_errno(int err, std::string_view call, std::string_view object,
                                      std::string_view detail = {});

/// Returns ret unless it is -1, in which case throws throw_errno(errno, call, object, detail).
///   int fd = ipc::check_unix(::open(path, O_RDONLY | O_CLOEXEC), "open", path);
template <typename T>
T check_unix(T ret, std::string_view call, std::string_view object, std::string_view detail = {}) {
  if (ret == static_cast<T>(-1)) throw_errno(errno, call, object, detail);
  return ret;
}

}  // namespace ipc

template <>
struct std::is_error_code_enum<ipc::errc> : std::true_type {};
