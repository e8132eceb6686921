// Whole reads and writes on a file descriptor: the one write-all loop and the one read-all loop.
//
//   ipc::write_all(1, "hello\n", "stdout");            // short writes and EINTR retried
//   std::string text = ipc::read_all(fd.get(), "report pipe");   // until EOF
//
// A non-blocking fd is waited for with poll (no busy loop). SIGPIPE follows the process's
// disposition: ignore it (the daemons do) to get EPIPE as an error instead of a death.
#pragma once

#include <ipc/config.hpp>

#include <cstddef>
#include <span>
#include <string>
#include <string_view>

namespace ipc {

/// Writes every byte of data to fd. Blocks while fd is full. Throws std::system_error naming
/// "write" and object (EPIPE: the reader is gone; ENOSPC, EIO, ...); nothing is retried but EINTR,
/// short writes and EAGAIN (waited for with poll).
IPC_API void write_all(int fd, std::span<const std::byte> data, std::string_view object);
/// The same for text.
IPC_API void write_all(int fd, std::string_view text, std::string_view object);

/// Reads from fd until EOF and returns everything read. Blocks until the writer closes.
/// Throws std::system_error naming "read" and object.
IPC_API std::string read_all(int fd, std::string_view object);

/// Reads until out is full or EOF; returns the bytes read (< out.size() only at EOF). Blocks.
/// Throws std::system_error naming "read" and object.
IPC_API std::size_t read_full(int fd, std::span<std::byte> out, std::string_view object);

}  // namespace ipc
