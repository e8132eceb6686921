#include <ipc/error.hpp>
#include <ipc/remote_error.hpp>

#include <cxxabi.h>

#include <cstdlib>
#include <memory>
#include <new>
#include <system_error>
#include <typeinfo>

namespace ipc {

remote_error::remote_error(std::string type_name, std::string message)
    : std::runtime_error(type_name + ": " + message), type_name_(std::move(type_name)), message_(std::move(message)) {}

namespace detail {
namespace {

// The standard types rebuilt as themselves. Numbers are the wire format: append only.
enum kind : int {
  other = 0,
  exception_kind = 1,
  logic_error = 2,
  invalid_argument = 3,
  domain_error = 4,
  length_error = 5,
  out_of_range = 6,
  runtime_error = 7,
  range_error = 8,
  overflow_error = 9,
  underflow_error = 10,
  system_error = 11,
  bad_alloc = 12,
};

std::string demangle(const std::type_info& t) {
  int status = 0;
  std::unique_ptr<char, void (*)(void*)> name(abi::__cxa_demangle(t.name(), nullptr, nullptr, &status), std::free);
  return status == 0 && name ? std::string(name.get()) : std::string(t.name());
}

// Exact type only: a user's subclass of runtime_error is not a runtime_error we could rebuild.
int kind_of(const std::exception& e) {
  const std::type_info& t = typeid(e);
  if (t == typeid(std::exception)) return exception_kind;
  if (t == typeid(std::logic_error)) return logic_error;
  if (t == typeid(std::invalid_argument)) return invalid_argument;
  if (t == typeid(std::domain_error)) return domain_error;
  if (t == typeid(std::length_error)) return length_error;
  if (t == typeid(std::out_of_range)) return out_of_range;
  if (t == typeid(std::runtime_error)) return runtime_error;
  if (t == typeid(std::range_error)) return range_error;
  if (t == typeid(std::overflow_error)) return overflow_error;
  if (t == typeid(std::underflow_error)) return underflow_error;
  if (t == typeid(std::bad_alloc)) return bad_alloc;
  if (t == typeid(std::system_error)) {
    const auto& cat = static_cast<const std::system_error&>(e).code().category();
    if (cat == std::generic_category() || cat == std::system_category() || cat == ipc::category()) return system_error;
  }
  return other;
}

// system_error's what() is "<our text>: <message of the code>"; rebuilding appends the message
// again, so strip it off here.
std::string system_error_prefix(const std::system_error& e) {
  std::string w = e.what();
  std::string tail = ": " + e.code().message();
  if (w.size() >= tail.size() && w.compare(w.size() - tail.size(), tail.size(), tail) == 0) {
    return w.substr(0, w.size() - tail.size());
  }
  if (w == e.code().message()) return {};
  return w;
}

}  // namespace

exception_record record_exception(const std::exception_ptr& error, std::size_t max_what) {
  exception_record r;
  try {
    std::rethrow_exception(error);
  } catch (const std::exception& e) {
    r.kind = kind_of(e);
    r.type_name = demangle(typeid(e));
    if (r.kind == system_error) {
      const auto& se = static_cast<const std::system_error&>(e);
      r.what = system_error_prefix(se);
      r.code = se.code().value();
      r.category = se.code().category().name();
    } else {
      r.what = e.what();
    }
  } catch (...) {
    r.kind = other;
    r.type_name = "unknown (not derived from std::exception)";
    r.what = "a value that is not a std::exception was thrown";
  }
  if (r.what.size() > max_what) r.what.resize(max_what);
  return r;
}

std::exception_ptr rebuild_exception(const exception_record& r) {
  switch (r.kind) {
    case exception_kind: return std::make_exception_ptr(std::exception());
    case logic_error: return std::make_exception_ptr(std::logic_error(r.what));
    case invalid_argument: return std::make_exception_ptr(std::invalid_argument(r.what));
    case domain_error: return std::make_exception_ptr(std::domain_error(r.what));
    case length_error: return std::make_exception_ptr(std::length_error(r.what));
    case out_of_range: return std::make_exception_ptr(std::out_of_range(r.what));
    case runtime_error: return std::make_exception_ptr(std::runtime_error(r.what));
    case range_error: return std::make_exception_ptr(std::range_error(r.what));
    case overflow_error: return std::make_exception_ptr(std::overflow_error(r.what));
    case underflow_error: return std::make_exception_ptr(std::underflow_error(r.what));
    case bad_alloc: return std::make_exception_ptr(std::bad_alloc());
    case system_error: {
      const std::error_category* cat = nullptr;
      if (r.category == std::generic_category().name()) cat = &std::generic_category();
      else if (r.category == std::system_category().name()) cat = &std::system_category();
      else if (r.category == ipc::category().name()) cat = &ipc::category();
      if (cat == nullptr) break;
      if (r.what.empty()) return std::make_exception_ptr(std::system_error(r.code, *cat));
      return std::make_exception_ptr(std::system_error(r.code, *cat, r.what));
      break;
    }
    default: break;
  }
  return std::make_exception_ptr(remote_error(r.type_name, r.what));
}

}  // namespace detail
}  // namespace ipc
