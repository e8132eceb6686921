#include <ipc/error.hpp>

#include <string>

namespace ipc {
namespace {

class ipc_category final : public std::error_category {
 public:
  const char* name() const noexcept override { return "ipc"; }
  std::string message(int value) const override {
    switch (static_cast<errc>(value)) {
      case errc::closed: return "peer closed the channel";
      case errc::message_too_large: return "message too large for the channel";
      case errc::corrupt: return "corrupt data";
      case errc::not_owner: return "object owned by another user or with a foreign mode";
      case errc::incompatible: return "incompatible shared layout";
      case errc::bad_uri: return "bad channel URI";
      case errc::buffer_too_small: return "receive buffer too small";
      case errc::removed: return "object removed while attached";
    }
    return "unknown ipc error " + std::to_string(value);
  }
};

std::string describe(std::string_view call, std::string_view object) {
  std::string s;
  s.reserve(call.size() + object.size() + 2);
  s.append(call).append("(").append(object).append(")");
  return s;
}

}  // namespace

const std::error_category& category() noexcept {
  static const ipc_category instance;
  return instance;
}

void throw_error(errc e, std::string_view call, std::string_view object, std::string_view detail) {
  std::string what = describe(call, object);
  if (!detail.empty()) what.append(": ").append(detail);
  // system_error appends ": <category message>"; put the detail before it so the
  // text reads "msgsnd(msgq:demo): 70000 > 65536 bytes: message too large for the channel".
  throw std::system_error(make_error_code(e), what);
}

void throw_errno(int err, std::string_view call, std::string_view object, std::string_view detail) {
  std::string what = describe(call, object);
  if (!detail.empty()) what.append(": ").append(detail);
  throw std::system_error(err, std::system_category(), what);
}

}  // namespace ipc
