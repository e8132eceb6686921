// The libipc transports: every channel through ipc::open_channel (pipe through pipe_channel::create,
// since an anonymous pipe has no name to open), used through the ipc::channel interface only.
#include "transport_common.hpp"

#include <ipc/channel.hpp>
#include <ipc/error.hpp>
#include <ipc/msg_queue.hpp>
#include <ipc/pipe.hpp>
#include <ipc/sem_buffer.hpp>
#include <ipc/shm_ring.hpp>
#include <ipc/uri.hpp>

#include <sys/msg.h>
#include <sys/sem.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <exception>

namespace ipc::bench {
namespace {

class channel_endpoint final : public endpoint {
 public:
  channel_endpoint(std::unique_ptr<channel> ch, std::size_t size) : ch_(std::move(ch)), msg_(size) {}
  std::span<std::byte> message() override { return msg_; }
  void send() override { ch_->send(msg_); }
  std::span<const std::byte> receive() override {
    ch_->receive(in_);
    return in_;
  }
  channel& chan() noexcept { return *ch_; }

 private:
  std::unique_ptr<channel> ch_;
  std::vector<std::byte> msg_;
  std::vector<std::byte> in_;
};

void warn(std::string_view what, const std::exception& e) noexcept {
  std::fprintf(stderr, "ipc-bench: cleanup: %.*s: %s\n", static_cast<int>(what.size()), what.data(), e.what());
}

// ---- pipe: pipe_channel::create() before fork; each process keeps its ends ---------------------

class lib_pipe final : public link_transport {
 public:
  using link_transport::link_transport;

  void setup(std::size_t size, std::vector<side> senders) override {
    begin(size, std::move(senders));
    for (std::size_t i = 0; i < links(); ++i) {
      auto [tx, rx] = pipe_channel::create({.max_message = size, .capacity = 0});
      tx_.push_back(std::move(tx));
      rx_.push_back(std::move(rx));
    }
  }
  void open_child() override { keep(side::child); }
  void open_parent() override { keep(side::parent); }
  void interrupt() noexcept override {}  // the child's death closes its ends: EOF / EPIPE wake us
  void teardown() noexcept override {
    ends_.clear();
    tx_.clear();
    rx_.clear();
  }

 private:
  // Takes this side's end of every link and closes the other (so EOF and EPIPE work).
  void keep(side me) {
    for (std::size_t i = 0; i < links(); ++i) {
      std::unique_ptr<channel> mine;
      if (role_of(i, me) == role::sender) mine = std::move(tx_[i]);
      else mine = std::move(rx_[i]);
      ends_[i] = std::make_unique<channel_endpoint>(std::move(mine), size_);
    }
    tx_.clear();
    rx_.clear();
  }
  std::vector<std::unique_ptr<pipe_channel>> tx_;
  std::vector<std::unique_ptr<pipe_channel>> rx_;
};

// ---- named channels: the parent creates by URI before fork, the child opens by URI after ------

class lib_named : public link_transport {
 public:
  lib_named(std::string prefix, std::string_view scheme) : link_transport(std::move(prefix)), scheme_(scheme) {}

  void setup(std::size_t size, std::vector<side> senders) override {
    begin(size, std::move(senders));
    for (std::size_t i = 0; i < links(); ++i) {
      ends_[i] = std::make_unique<channel_endpoint>(open_channel(uri(i, true), role_of(i, side::parent)), size_);
      created_.push_back(i);
      after_create(i, static_cast<channel_endpoint&>(*ends_[i]).chan());
    }
  }
  void open_child() override {
    // The parent's handles were copied by fork; drop them (closing the child's copies of its fds).
    for (auto& e : ends_) e.reset();
    for (std::size_t i = 0; i < links(); ++i) {
      ends_[i] = std::make_unique<channel_endpoint>(open_channel(uri(i, false), role_of(i, side::child)), size_);
    }
  }
  void open_parent() override {}
  void teardown() noexcept override {
    for (std::size_t i : created_) {
      if (ends_[i]) {
        try {
          static_cast<channel_endpoint&>(*ends_[i]).chan().remove();
        } catch (const std::exception& e) {
          // After interrupt() the kernel object is gone already; remove_leftovers() finishes.
          if (!interrupted_) warn(link_name(i), e);
        }
      }
      ends_[i].reset();
      try {
        remove_leftovers(i);
      } catch (const std::exception& e) {
        warn(link_name(i), e);
      }
    }
    created_.clear();
    ends_.clear();
  }

 protected:
  virtual std::string uri(std::size_t i, bool create) const = 0;
  virtual void after_create(std::size_t, channel&) {}
  // After remove() (which may have found the object gone already): what it may have left.
  virtual void remove_leftovers(std::size_t) {}

  std::string_view scheme_;
  std::vector<std::size_t> created_;
};

class lib_fifo final : public lib_named {
 public:
  explicit lib_fifo(std::string prefix) : lib_named(std::move(prefix), "fifo") {}
  void interrupt() noexcept override {}  // the child's death closes its fds

 private:
  std::string uri(std::size_t i, bool create) const override {
    return "fifo:" + link_name(i) + ".fifo?open=" + (create ? "create_only" : "open_only") +
           "&max_message=" + std::to_string(size_);
  }
};

class lib_msgq final : public lib_named {
 public:
  explicit lib_msgq(std::string prefix) : lib_named(std::move(prefix), "msgq") {}
  // A queue has no notion of a dead peer: removing it makes the parent's msgrcv fail (EIDRM).
  void interrupt() noexcept override {
    interrupted_ = true;
    for (int id : ids_) ::msgctl(id, IPC_RMID, nullptr);
  }

 private:
  std::string uri(std::size_t i, bool create) const override {
    return "msgq:" + link_name(i) + "?open=" + (create ? "create_only" : "open_only");
  }
  void after_create(std::size_t, channel& ch) override { ids_.push_back(dynamic_cast<msg_queue&>(ch).id()); }
  void remove_leftovers(std::size_t i) override {
    // msg_queue::remove() leaves the key file alone when the queue was already gone (interrupt()).
    const auto key_file = runtime_dir() / (link_name(i) + ".msgq");
    if (::unlink(key_file.c_str()) != 0 && errno != ENOENT) ipc::throw_errno(errno, "unlink", key_file.string());
  }
  std::vector<int> ids_;
};

class lib_sem final : public lib_named {
 public:
  explicit lib_sem(std::string prefix) : lib_named(std::move(prefix), "sem") {}
  // Removing the semaphores makes the parent's semop fail (EIDRM); teardown() removes the rest.
  void interrupt() noexcept override {
    interrupted_ = true;
    for (int id : ids_) ::semctl(id, 0, IPC_RMID);
  }

 private:
  std::string uri(std::size_t i, bool create) const override {
    if (!create) return "sem:" + link_name(i) + "?open=open_only";
    return "sem:" + link_name(i) + "?open=create_only&slots=" + std::to_string(sem_slots) +
           "&max_message=" + std::to_string(size_);
  }
  void after_create(std::size_t, channel& ch) override {
    ids_.push_back(dynamic_cast<sem_buffer&>(ch).semaphores().id());
  }
  void remove_leftovers(std::size_t i) override { sem_buffer::remove(link_name(i)); }
  std::vector<int> ids_;
};

class lib_shm final : public lib_named {
 public:
  explicit lib_shm(std::string prefix) : lib_named(std::move(prefix), "shm") {}
  // shm_ring notices a dead peer by itself (within one 100 ms sleep slice).
  void interrupt() noexcept override {}

 private:
  std::string uri(std::size_t i, bool create) const override {
    if (!create) return "shm:" + link_name(i) + "?open=open_only";
    return "shm:" + link_name(i) + "?open=create_only&capacity=" + std::to_string(shm_capacity) +
           "&max_message=" + std::to_string(size_);
  }
  void remove_leftovers(std::size_t i) override { shm_ring::remove(link_name(i)); }
};

// ---- a uri_channels entry: any channel open_channel() makes by name --------------------------

class lib_uri final : public lib_named {
 public:
  lib_uri(std::string prefix, const uri_channel& u) : lib_named(std::move(prefix), u.scheme), options_(u.options) {}
  // The channel notices a dead peer by itself, as every open_channel() channel must.
  void interrupt() noexcept override {}

 private:
  std::string uri(std::size_t i, bool create) const override {
    return std::string(scheme_) + ":" + link_name(i) + "?" + std::string(options_) +
           (create ? "&open=create_only&max_message=" + std::to_string(size_) : std::string("&open=open_only"));
  }
  std::string_view options_;
};

}  // namespace

std::unique_ptr<transport> make_libipc_transport(std::string_view channel, std::string prefix) {
  if (channel == "pipe") return std::make_unique<lib_pipe>(std::move(prefix));
  if (channel == "fifo") return std::make_unique<lib_fifo>(std::move(prefix));
  if (channel == "msgq") return std::make_unique<lib_msgq>(std::move(prefix));
  if (channel == "sem") return std::make_unique<lib_sem>(std::move(prefix));
  if (channel == "shm") return std::make_unique<lib_shm>(std::move(prefix));
  for (const auto& u : uri_channels) {
    if (channel == u.label) return std::make_unique<lib_uri>(std::move(prefix), u);
  }
  return nullptr;
}

}  // namespace ipc::bench
