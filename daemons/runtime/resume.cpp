#include "resume.hpp"

#include <exception>

namespace ipc::daemon {

bool is_byte_stream(const channel& ch) noexcept { return ch.kind() == "fifo" || ch.kind() == "pipe"; }

void resumer::failed(const channel* ch) noexcept {
  // An object handle back through reopen() that failed before a message moved: reopen() cannot resume it.
  if (in_place_ && (ch == nullptr || !is_byte_stream(*ch))) may_reopen_ = false;
  in_place_ = false;
}

std::unique_ptr<channel> resumer::resume(std::unique_ptr<channel> lost, const opener& open, std::string* why) {
  if (lost && may_reopen_) {
    try {
      lost->reopen();
      in_place_ = true;
      ++in_place_total_;
      return lost;
    } catch (const std::exception& e) {
      if (why != nullptr) *why = e.what();
    }
  }
  in_place_ = false;
  lost.reset();  // first: a role the old handle holds must be free for the new one
  return open();
}

}  // namespace ipc::daemon
