// A Boost.Asio executor's view of the toolkit: async receive for every channel (async_receiver), and
// a child process's end joining the loop through its pidfd (async_exit_waiter).
//
//   boost::asio::io_context io;
//   auto rx = ipc::open_channel("shm:demo", ipc::role::receiver);
//   ipc::async_receiver ar(io.get_executor(), *rx);
//   std::vector<std::byte> buf;
//   ar.async_receive(buf, [&](std::error_code ec, std::size_t n) {
//     if (ec == std::errc::operation_canceled) return;   // cancel() or destruction
//     if (ec == ipc::errc::closed) { rx->reopen(); /* peer gone: resume, no cast (channel::reopen) */ }
//     /* buf holds one whole message of n bytes; the channel is yours until the next async_receive */
//   });
//   io.run();
//
// Channels with a readable_fd() (pipe, fifo) wait for readiness on a dup of that fd with a
// posix::stream_descriptor, then take messages with try_receive (a readable fd may hold several,
// and these receivers buffer, so try_receive is always tried before waiting again). Channels
// without one (msgq, sem, shm) get a waiter thread that calls receive_for and posts the completion
// back to the executor. Their waits sleep in the kernel with no time slices and end at once on
// ipc::interrupt_wait (ipc/interrupt.hpp), which cancel() and the destructor send: the waiter
// wakes only for messages (msgq and sem also every 10 s, in case an interrupt landed just before
// they slept; shm's futex wait includes a word the interrupt changes, so it needs no such look).
// Other channels without an fd wait in short slices (`slice`); cancel() is seen within one.
//
// Rules: one operation at a time (a second async_receive while one is pending completes with
// std::errc::operation_in_progress); call async_receive/cancel from the executor's thread; do
// not touch the channel or the buffer while an operation is pending. Handlers always run on the
// executor, never inside async_receive. A pending handler is called with
// std::errc::operation_canceled (ECANCELED, the value of asio::error::operation_aborted) after
// cancel() or when the receiver is destroyed; a message that had already arrived is delivered
// instead. Channel errors arrive as the error_code (errc::closed, std::system_error codes); the
// exception's full text (e.g. which index was corrupt) is last_error() while the handler runs.
//
//   ipc::process child = ipc::process::exec({"/usr/bin/worker"});
//   ipc::async_exit_waiter w(io.get_executor(), child);
//   w.async_wait([&](std::error_code ec, ipc::exit_status st) {
//     if (ec == std::errc::operation_canceled) return;   // cancel() or destruction; child still running
//     if (ec) { /* waitid failed, e.g. ECHILD: someone else reaped it */ }
//     /* the child ended and is reaped: st == *child.status() */
//   });
//
// The exit waiter watches a dup of the child's pidfd with a posix::stream_descriptor (readable once
// the child has ended), then reaps it with process::try_join: no thread, no SIGCHLD, no waitpid, and
// a recycled pid is never waited for. Same rules as async_receiver: one operation at a time
// (operation_in_progress otherwise), call from the executor's thread, the handler always runs on the
// executor; cancel() or destruction completes a pending wait with operation_canceled (an end already
// seen is delivered instead) and leaves the child running and unreaped.
#pragma once

#include <ipc/channel.hpp>
#include <ipc/error.hpp>
#include <ipc/interrupt.hpp>
#include <ipc/process.hpp>
#include <ipc/unique_fd.hpp>

// Boost 1.74's scheduler trips GCC 12's -Wnull-dereference; not ours to fix.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wnull-dereference"
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/execution/outstanding_work.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/prefer.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#pragma GCC diagnostic pop

#include <fcntl.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <system_error>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

namespace ipc {

class async_receiver {
 public:
  using executor_type = boost::asio::any_io_executor;
  using handler_type = std::function<void(std::error_code, std::size_t)>;
  static constexpr std::chrono::milliseconds default_slice{50};
  /// How long a msgq or sem waiter sleeps before it looks again without an interrupt.
  static constexpr std::chrono::milliseconds interruptible_slice{10'000};
  /// shm: an interrupt can never be missed (it changes a word the futex wait includes), so the
  /// waiter looks again only this rarely: an idle shm waiter makes no wake-ups.
  static constexpr std::chrono::milliseconds shm_slice{86'400'000};

  /// Binds `ch` (which must outlive this receiver) to `ex`. Never blocks.
  /// Throws std::system_error if the fd cannot be duplicated or the thread cannot start.
  async_receiver(executor_type ex, channel& ch, std::chrono::milliseconds slice = default_slice)
      : s_(std::make_shared<state>(std::move(ex), ch, slice)) {
    const int fd = ch.readable_fd();
    if (fd >= 0) {
      unique_fd dup{::fcntl(fd, F_DUPFD_CLOEXEC, 0)};
      if (!dup) ipc::throw_errno(errno, "fcntl(F_DUPFD_CLOEXEC)", ch.name());
      s_->descriptor.emplace(s_->ex, dup.get());
      (void)dup.release();  // the stream_descriptor owns it now
    } else {
      s_->waiter = std::thread([s = s_] { s->waiter_loop(); });
    }
  }

  /// Cancels a pending operation and joins the waiter thread (at once for msgq, sem and shm).
  /// Never throws.
  ~async_receiver() {
    cancel();
    {
      std::lock_guard lock(s_->mutex);
      s_->stopping = true;
    }
    s_->wake.notify_all();
    // An interrupt that landed just before the waiter slept is lost for that wait: repeat it.
    while (s_->waiter.joinable() && !s_->exited.load()) {
      if (const pid_t tid = s_->waiter_tid.load(); tid != 0 && s_->in_wait.load()) ipc::interrupt_wait(tid);
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    if (s_->waiter.joinable()) s_->waiter.join();
    if (s_->descriptor) {
      boost::system::error_code ignored;
      s_->descriptor->close(ignored);
    }
    s_->ch = nullptr;
  }

  async_receiver(const async_receiver&) = delete;
  async_receiver& operator=(const async_receiver&) = delete;

  /// Starts receiving one whole message into out; h(error_code, size) runs on the executor.
  /// Never blocks, never throws (errors go to the handler).
  template <class Handler>
  void async_receive(std::vector<std::byte>& out, Handler&& h) {
    using H = std::decay_t<Handler>;
    if constexpr (std::is_copy_constructible_v<H>) {
      start(out, handler_type(std::forward<Handler>(h)));
    } else {
      auto p = std::make_shared<H>(std::forward<Handler>(h));
      start(out, [p](std::error_code ec, std::size_t n) { (*p)(ec, n); });
    }
  }

  /// Asks a pending operation to complete with operation_canceled. Never blocks, never throws.
  void cancel() noexcept {
    s_->cancelled.store(true, std::memory_order_relaxed);
    if (s_->descriptor) {
      boost::system::error_code ignored;
      s_->descriptor->cancel(ignored);
    }
    if (const pid_t tid = s_->waiter_tid.load(); tid != 0 && s_->in_wait.load()) ipc::interrupt_wait(tid);
    s_->wake.notify_all();
  }

  /// The what() of the channel error the latest completion reported; empty when it reported none.
  /// Read it from the handler (the executor's thread). Never throws.
  [[nodiscard]] const std::string& last_error() const noexcept { return s_->error_text; }
  /// True when readiness comes from the channel's fd (no waiter thread).
  [[nodiscard]] bool uses_fd() const noexcept { return s_->descriptor.has_value(); }
  [[nodiscard]] executor_type get_executor() const noexcept { return s_->ex; }

 private:
  struct state : std::enable_shared_from_this<state> {
    state(executor_type e, channel& c, std::chrono::milliseconds sl) : ex(std::move(e)), ch(&c), slice(sl) {}

    executor_type ex;
    channel* ch;  // null once the receiver is gone: never touched after that
    std::chrono::milliseconds slice;
    std::optional<boost::asio::posix::stream_descriptor> descriptor;

    // Owned by the executor thread (the waiter thread reads out/requested under the mutex).
    bool pending = false;
    handler_type handler;
    std::vector<std::byte>* out = nullptr;
    std::atomic<bool> cancelled{false};
    executor_type work;  // tracks outstanding work while the waiter thread has an operation
    std::string error_text;  // last_error()

    // Waiter thread.
    std::thread waiter;
    std::mutex mutex;
    std::condition_variable wake;
    bool requested = false;
    bool stopping = false;
    std::atomic<pid_t> waiter_tid{0};  // set when the channel's waits end on ipc::interrupt_wait
    std::atomic<bool> in_wait{false};
    std::atomic<bool> exited{false};

    static std::error_code canceled() noexcept { return std::make_error_code(std::errc::operation_canceled); }

    void complete(std::error_code ec, std::size_t n, std::string text = {}) {
      error_text = std::move(text);
      pending = false;
      work = executor_type{};
      auto h = std::move(handler);
      handler = nullptr;
      out = nullptr;
      h(ec, n);
    }

    // fd path, on the executor: take what is buffered or readable, else wait for readiness.
    void try_fd(bool woken = false) {
      if (cancelled.load(std::memory_order_relaxed) || ch == nullptr) return complete(canceled(), 0);
      try {
        if (auto n = ch->try_receive(*out)) return complete({}, *n);
      } catch (const std::system_error& e) {
        return complete(e.code(), 0, e.what());
      }
      // Readiness without a message: half a frame, or the channel now reads from another open file
      // (a fifo's channel::reopen()) while we still watch a dup of the old one, which polls HUP for ever.
      // Watching a fresh dup of the channel's current fd covers both.
      if (woken) rebind();
      descriptor->async_wait(boost::asio::posix::stream_descriptor::wait_read,
                             [self = shared_from_this()](const boost::system::error_code& ec) {
                               if (ec == boost::asio::error::operation_aborted) return self->complete(canceled(), 0);
                               if (ec) return self->complete(std::error_code(ec.value(), std::system_category()), 0);
                               self->try_fd(true);
                             });
    }

    void rebind() noexcept {
      const int fd = ch->readable_fd();
      if (fd < 0) return;
      unique_fd fresh{::fcntl(fd, F_DUPFD_CLOEXEC, 0)};
      if (!fresh) return;  // keep watching the old one
      boost::system::error_code ec;
      descriptor->close(ec);
      descriptor->assign(fresh.get(), ec);
      if (!ec) (void)fresh.release();  // the stream_descriptor owns it now
    }

    // Waiter thread: one request at a time, receive_for (interrupted by cancel() for msgq, sem and
    // shm) until a message, an error, cancel() or shutdown; the completion is posted to the executor.
    void waiter_loop() {
      struct mark_exit {
        std::atomic<bool>& exited;
        ~mark_exit() { exited.store(true); }
      } on_exit{exited};
      // msgq, sem and shm waits sleep in the kernel and end on ipc::interrupt_wait: no slices needed.
      const bool shm = ch->kind() == "shm";
      const bool interruptible = shm || ch->kind() == "msgq" || ch->kind() == "sem";
      const std::chrono::milliseconds my_slice = shm ? shm_slice : interruptible ? interruptible_slice : slice;
      if (interruptible) waiter_tid.store(ipc::wait_thread_id());
      std::unique_lock lock(mutex);
      for (;;) {
        wake.wait(lock, [&] { return requested || stopping; });
        if (stopping && !requested) return;
        requested = false;
        std::vector<std::byte>* buf = out;
        lock.unlock();
        std::error_code ec = canceled();
        std::string text;
        std::size_t got = 0;
        in_wait.store(true);
        while (!cancelled.load(std::memory_order_relaxed)) {
          try {
            if (auto n = ch->receive_for(*buf, my_slice)) {
              ec = {};
              got = *n;
              break;
            }
          } catch (const std::system_error& e) {
            ec = e.code();
            text = e.what();
            break;
          }
        }
        in_wait.store(false);
        boost::asio::post(ex, [self = shared_from_this(), ec, got, text = std::move(text)]() mutable {
          self->complete(ec, got, std::move(text));
        });
        lock.lock();
      }
    }
  };

  void start(std::vector<std::byte>& out, handler_type h) {
    auto& s = *s_;
    if (s.pending) {
      boost::asio::post(s.ex, [h = std::move(h)] { h(std::make_error_code(std::errc::operation_in_progress), 0); });
      return;
    }
    s.pending = true;
    s.handler = std::move(h);
    s.cancelled.store(false, std::memory_order_relaxed);
    if (s.descriptor) {
      s.out = &out;
      boost::asio::post(s.ex, [self = s_] { self->try_fd(); });
      return;
    }
    // Nothing in the io_context is waiting while the thread works: keep run() from returning.
    s.work = boost::asio::prefer(s.ex, boost::asio::execution::outstanding_work.tracked);
    {
      std::lock_guard lock(s.mutex);
      s.out = &out;
      s.requested = true;
    }
    s.wake.notify_all();
  }

  std::shared_ptr<state> s_;
};

class async_exit_waiter {
 public:
  using executor_type = boost::asio::any_io_executor;
  using handler_type = std::function<void(std::error_code, exit_status)>;

  /// Binds `child` (which must outlive this waiter and stay where it is while a wait is pending) to
  /// `ex`. Never blocks, never throws but bad_alloc.
  async_exit_waiter(executor_type ex, process& child) : s_(std::make_shared<state>(std::move(ex), child)) {}

  /// Cancels a pending wait (its handler gets operation_canceled). Never blocks, never throws.
  ~async_exit_waiter() {
    cancel();
    s_->child = nullptr;
  }
  async_exit_waiter(const async_exit_waiter&) = delete;
  async_exit_waiter& operator=(const async_exit_waiter&) = delete;

  /// Starts waiting for the child's end; h(error_code, exit_status) runs on the executor once it has
  /// ended and been reaped (the status is meaningful only without an error). Completes at once
  /// (posted) with the status of a child already reaped;
  /// with EINVAL for an empty, detached or never started handle; with the errno of a failed dup or
  /// waitid (ECHILD: reaped by someone else). No timeout: pair it with a steady_timer and cancel().
  /// Never blocks, never throws (errors go to the handler).
  template <class Handler>
  void async_wait(Handler&& h) {
    using H = std::decay_t<Handler>;
    if constexpr (std::is_copy_constructible_v<H>) {
      start(handler_type(std::forward<Handler>(h)));
    } else {
      auto p = std::make_shared<H>(std::forward<Handler>(h));
      start([p](std::error_code ec, exit_status st) { (*p)(ec, st); });
    }
  }

  /// Asks a pending wait to complete with operation_canceled; the child is left as it is. Never
  /// blocks, never throws.
  void cancel() noexcept {
    if (!s_->descriptor) return;
    boost::system::error_code ignored;
    s_->descriptor->cancel(ignored);
  }

  [[nodiscard]] executor_type get_executor() const noexcept { return s_->ex; }

 private:
  struct state : std::enable_shared_from_this<state> {
    state(executor_type e, process& c) : ex(std::move(e)), child(&c) {}
    executor_type ex;
    process* child;  // null once the waiter is gone: never touched after that
    std::optional<boost::asio::posix::stream_descriptor> descriptor;  // a dup of the child's pidfd
    bool pending = false;

    void complete(const handler_type& h, std::error_code ec, exit_status st) {
      pending = false;
      if (descriptor) {
        boost::system::error_code ignored;
        descriptor->close(ignored);
        descriptor.reset();
      }
      h(ec, st);
    }

    void wait(handler_type h) {
      descriptor->async_wait(boost::asio::posix::stream_descriptor::wait_read,
                             [self = shared_from_this(), h = std::move(h)](const boost::system::error_code& ec) mutable {
                               self->on_ready(ec, std::move(h));
                             });
    }

    void on_ready(const boost::system::error_code& ec, handler_type h) {
      if (ec == boost::asio::error::operation_aborted || child == nullptr) {
        return complete(h, std::make_error_code(std::errc::operation_canceled), {});
      }
      if (ec) return complete(h, std::error_code(ec.value(), std::system_category()), {});
      try {
        if (auto st = child->try_join()) return complete(h, {}, *st);
      } catch (const std::system_error& e) {
        return complete(h, e.code(), {});
      }
      wait(std::move(h));  // readiness without an end: look again
    }
  };

  void start(handler_type h) {
    auto& s = *s_;
    auto post_now = [&s](handler_type fn, std::error_code ec, exit_status st) {
      boost::asio::post(s.ex, [fn = std::move(fn), ec, st] { fn(ec, st); });
    };
    if (s.pending) return post_now(std::move(h), std::make_error_code(std::errc::operation_in_progress), {});
    process& child = *s.child;
    if (!child.joinable()) {
      if (auto st = child.status()) return post_now(std::move(h), {}, *st);
      return post_now(std::move(h), std::make_error_code(std::errc::invalid_argument), {});
    }
    // Our own fd: join() closes the handle's pidfd, and the descriptor closes what it holds.
    unique_fd dup{::fcntl(child.pidfd(), F_DUPFD_CLOEXEC, 3)};
    if (!dup) return post_now(std::move(h), std::error_code(errno, std::system_category()), {});
    try {
      s.descriptor.emplace(s.ex, dup.get());
    } catch (const boost::system::system_error& e) {
      return post_now(std::move(h), std::error_code(e.code().value(), std::system_category()), {});
    }
    (void)dup.release();  // the stream_descriptor owns it now
    s.pending = true;
    s.wait(std::move(h));
  }

  std::shared_ptr<state> s_;
};

}  // namespace ipc
