// Exceptions that cross a process boundary (process_pool tasks).
//
//   try { pool.apply_async(parse, "x").get(); }
//   catch (const std::invalid_argument& e) { }   // a standard exception comes back as its own type
//   catch (const ipc::remote_error& e) {         // anything else: its type name and message
//     e.type_name();   // "config_error" (demangled)
//   }
//
// A standard exception is re-thrown as the same type with the same what(): std::logic_error,
// std::invalid_argument, std::domain_error, std::length_error, std::out_of_range,
// std::runtime_error, std::range_error, std::overflow_error, std::underflow_error,
// std::system_error (generic, system and ipc categories keep their code; others become
// remote_error), std::bad_alloc, and std::exception itself. Types derived from those (a user's
// `struct config_error : std::runtime_error`) cannot be rebuilt in the receiving process without
// knowing them: they arrive as ipc::remote_error, which derives from std::runtime_error, so
// catch (const std::runtime_error&) still catches them. A thrown non-exception (throw 42) arrives
// as remote_error with type_name "unknown (not derived from std::exception)".
#pragma once

#include <ipc/config.hpp>

#include <msgpack.hpp>

#include <exception>
#include <stdexcept>
#include <string>

namespace ipc {

/// An exception thrown in another process whose type cannot be rebuilt here.
class IPC_API remote_error : public std::runtime_error {
 public:
  /// what() = "<type_name>: <message>".
  remote_error(std::string type_name, std::string message);
  /// The original type, demangled ("config_error", "std::filesystem::__cxx11::filesystem_error").
  [[nodiscard]] const std::string& type_name() const noexcept { return type_name_; }
  /// The original what().
  [[nodiscard]] const std::string& message() const noexcept { return message_; }

 private:
  std::string type_name_;
  std::string message_;
};

namespace detail {

/// An exception as it travels: which standard type (or none), its demangled type name, what(),
/// and for system_error the code and category name. Packed as an array of the five fields.
struct exception_record {
  int kind = 0;
  std::string type_name;
  std::string what;
  int code = 0;
  std::string category;
  MSGPACK_DEFINE(kind, type_name, what, code, category)
};

/// Describes the exception `error` (what() cut to `max_what` bytes). Never throws except bad_alloc.
IPC_API exception_record record_exception(const std::exception_ptr& error, std::size_t max_what = 4000);
/// Rebuilds the exception a record describes: the same standard type, else remote_error.
IPC_API std::exception_ptr rebuild_exception(const exception_record& record);

}  // namespace detail
}  // namespace ipc
