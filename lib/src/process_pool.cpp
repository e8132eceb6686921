#include <ipc/error.hpp>
#include <ipc/pipe.hpp>
#include <ipc/process_pool.hpp>

#include "detail/eintr.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <mutex>
#include <thread>
#include <unordered_map>

namespace ipc {

// --- process_pool ----------------------------------------------------------------------------

detail::pool_task::~pool_task() = default;

namespace {

std::string pid_object(pid_t pid) { return "pid " + std::to_string(pid); }

// Request: task id (0 = stop), invoker address, function address, argument bytes.
// Result: task id, status (0 = value follows, 1 = exception text follows), payload.
constexpr std::size_t request_header = 3 * sizeof(std::uint64_t);
constexpr std::size_t result_header = sizeof(std::uint64_t) + 1;
constexpr std::size_t max_error_text = 4000;

void put_u64(std::vector<std::byte>& out, std::uint64_t v) {
  auto b = std::bit_cast<std::array<std::byte, 8>>(v);
  out.insert(out.end(), b.begin(), b.end());
}
std::uint64_t get_u64(const std::byte* p) {
  std::array<std::byte, 8> b{};
  std::memcpy(b.data(), p, 8);
  return std::bit_cast<std::uint64_t>(b);
}

// The worker's whole life: receive a request, run it, send the result. Runs in the forked child.
// It sleeps only on its own request pipe, and the collector on every worker's result pipe and
// pidfd, so no wake-up is a baton between processes: a worker that dies makes its pidfd readable
// and its task is failed or re-queued (docs/crash-behaviour.md, "No process waits for ever").
int worker_main(pipe_channel& requests, pipe_channel& results) {
  std::vector<std::byte> msg;
  std::vector<std::byte> value;
  std::vector<std::byte> reply;
  for (;;) {
    try {
      requests.receive(msg);
    } catch (...) {
      return 0;  // the pool is gone
    }
    if (msg.size() < request_header) return 3;
    std::uint64_t id = get_u64(msg.data());
    if (id == 0) return 0;
    auto invoker = reinterpret_cast<detail::pool_invoker>(static_cast<std::uintptr_t>(get_u64(msg.data() + 8)));
    auto fn = static_cast<std::uintptr_t>(get_u64(msg.data() + 16));
    std::byte status{0};
    std::string error;
    value.clear();
    try {
      invoker(fn, std::span<const std::byte>(msg).subspan(request_header), value);
    } catch (const std::exception& e) {
      status = std::byte{1};
      error = e.what();
    } catch (...) {
      status = std::byte{1};
      error = "unknown exception (not derived from std::exception)";
    }
    reply.clear();
    put_u64(reply, id);
    reply.push_back(status);
    if (status == std::byte{0}) {
      reply.insert(reply.end(), value.begin(), value.end());
    } else {
      auto text = as_bytes(error).first(std::min(error.size(), max_error_text));
      reply.insert(reply.end(), text.begin(), text.end());
    }
    try {
      results.send(reply);
    } catch (...) {
      return 0;
    }
    std::fflush(nullptr);
  }
}

}  // namespace

struct process_pool::impl {
  struct worker {
    process proc;
    std::unique_ptr<pipe_channel> requests;  // our sending end
    std::unique_ptr<pipe_channel> results;   // our receiving end
    std::uint64_t running = 0;               // task in flight, 0 = idle
    bool stop_sent = false;
  };

  std::size_t target = 0;
  std::chrono::milliseconds grace{};
  mutable std::mutex m;
  std::condition_variable cv;
  std::vector<std::unique_ptr<worker>> workers;  // changed only by the constructor and the collector
  std::unordered_map<std::uint64_t, std::unique_ptr<detail::pool_task>> tasks;
  std::deque<std::uint64_t> queue;
  std::uint64_t next_id = 1;
  std::uint64_t lost = 0;  // workers that died without being told to stop
  bool closed = false;
  bool terminating = false;
  bool done = false;  // the collector has reaped every worker and exited
  unique_fd wake;     // eventfd: wakes the collector's poll
  std::thread collector;

  void wake_collector() noexcept {
    std::uint64_t one = 1;
    if (::write(wake.get(), &one, sizeof one) < 0) {
      // EAGAIN: counter saturated, the collector is awake anyway
    }
  }

  // m held (or no collector yet).
  void spawn_worker() {
    pipe_options po;
    po.max_message = 64 * 1024;
    auto [req_tx, req_rx] = pipe_channel::create(po);
    auto [res_tx, res_rx] = pipe_channel::create(po);
    // The child closes every fd of ours it inherited, so a worker never holds another
    // worker's pipe ends (which would keep them from seeing EOF).
    std::vector<int> close_in_child{wake.get(), req_tx->fd(), res_rx->fd()};
    for (const auto& w : workers) {
      close_in_child.push_back(w->requests->fd());
      close_in_child.push_back(w->results->fd());
      close_in_child.push_back(w->proc.pidfd());
    }
    pipe_channel* in = req_rx.get();
    pipe_channel* out = res_tx.get();
    auto proc = process::fork([&close_in_child, in, out] {
      for (int fd : close_in_child) ::close(fd);
      return worker_main(*in, *out);
    });
    auto w = std::make_unique<worker>();
    w->proc = std::move(proc);
    w->requests = std::move(req_tx);
    w->results = std::move(res_rx);
    workers.push_back(std::move(w));
  }

  void fail_task(std::uint64_t id, std::string_view object, std::string_view detail_text) {
    auto it = tasks.find(id);
    if (it == tasks.end()) return;
    try {
      throw_error(errc::closed, "process_pool", object, detail_text);
    } catch (...) {
      it->second->fail(std::current_exception());
    }
    tasks.erase(it);
  }

  void fail_queued(std::string_view why) {
    for (auto id : queue) fail_task(id, "pool", why);
    queue.clear();
  }

  // m held. Gives queued work to idle workers; with nothing left after close(), tells them to stop.
  void dispatch() {
    std::vector<std::byte> req;
    for (auto& w : workers) {
      if (w->running != 0 || w->stop_sent) continue;
      req.clear();
      if (!queue.empty()) {
        std::uint64_t id = queue.front();
        queue.pop_front();
        const auto& t = *tasks.at(id);
        put_u64(req, id);
        put_u64(req, reinterpret_cast<std::uintptr_t>(t.invoker));
        put_u64(req, t.fn);
        req.insert(req.end(), t.arg.begin(), t.arg.end());
        w->running = id;
      } else if (closed) {
        put_u64(req, 0);
        put_u64(req, 0);
        put_u64(req, 0);
        w->stop_sent = true;
      } else {
        continue;
      }
      try {
        // One message in flight per worker and it fits the pipe: this never waits on a busy worker.
        w->requests->send(req);
      } catch (const std::exception&) {
        // The worker is gone; its pidfd reports that and fails its task.
      }
    }
  }

  void handle_result(worker& w, const std::vector<std::byte>& msg) {
    if (msg.size() < result_header) return;
    std::uint64_t id = get_u64(msg.data());
    if (w.running == id) w.running = 0;
    auto it = tasks.find(id);
    if (it == tasks.end()) return;
    auto payload = std::span<const std::byte>(msg).subspan(result_header);
    if (msg[8] == std::byte{0}) {
      if (payload.size() != it->second->result_size) {
        try {
          throw_error(errc::corrupt, "process_pool", "worker " + pid_object(w.proc.pid()),
                      "result of " + std::to_string(payload.size()) + " bytes, expected " + std::to_string(it->second->result_size));
        } catch (...) {
          it->second->fail(std::current_exception());
        }
      } else {
        it->second->deliver(payload);
      }
    } else {
      it->second->fail(std::make_exception_ptr(std::runtime_error(std::string(as_text(payload)))));
    }
    tasks.erase(it);
  }

  void drain_results(worker& w) {
    std::vector<std::byte> msg;
    try {
      while (w.results->try_receive(msg)) handle_result(w, msg);
    } catch (const std::exception&) {
      // EOF: the worker's end is closed; its death is reported through the pidfd.
    }
  }

  // m held; the worker's pidfd polled readable: it has ended.
  void handle_exit(std::size_t index) {
    worker& w = *workers[index];
    drain_results(w);
    std::optional<exit_status> st;
    try {
      st = w.proc.try_join();
    } catch (const std::exception&) {
      st = exit_status{};  // reaped by someone else: status unknown
    }
    if (!st) return;
    if (w.running != 0) {
      fail_task(w.running, "worker " + pid_object(w.proc.pid()),
                st->to_string() + " while running task " + std::to_string(w.running));
    }
    if (!w.stop_sent && !terminating) ++lost;
    workers.erase(workers.begin() + static_cast<std::ptrdiff_t>(index));
  }

  // m held. Keeps `target` workers while there is or may be work; spawn failures with no worker
  // left fail the queued tasks instead of leaving them hanging.
  void top_up() {
    while (!terminating && (!closed || !queue.empty()) && workers.size() < target) {
      try {
        spawn_worker();
      } catch (const std::exception& e) {
        if (workers.empty()) fail_queued(std::string("no worker could be started: ") + e.what());
        return;
      }
    }
  }

  // m held. Kills and reaps every worker and fails every task with `why`.
  void abandon(const std::string& why) {
    terminating = true;
    closed = true;
    fail_queued(why);
    for (auto& w : workers) {
      if (w->running != 0) fail_task(w->running, "worker " + pid_object(w->proc.pid()), why);
    }
    workers.clear();  // each process handle SIGKILLs and reaps its worker
  }

  void run() {
    std::unique_lock lk(m);
    std::vector<pollfd> fds;
    std::vector<worker*> polled;
    for (;;) {
      top_up();
      dispatch();
      cv.notify_all();
      if (workers.empty() && (terminating || (closed && queue.empty()))) break;
      fds.assign(1, pollfd{wake.get(), POLLIN, 0});
      polled.clear();
      for (auto& w : workers) {
        fds.push_back(pollfd{w->results->readable_fd(), POLLIN, 0});
        fds.push_back(pollfd{w->proc.pidfd(), POLLIN, 0});
        polled.push_back(w.get());
      }
      bool buffered = std::any_of(workers.begin(), workers.end(), [](const auto& w) { return w->results->has_buffered_message(); });
      lk.unlock();
      int rc = ::poll(fds.data(), fds.size(), buffered ? 0 : -1);
      if (rc < 0 && errno != EINTR) {
        // ENOMEM or a broken fd set: the pool cannot watch its workers any more. Fail everything
        // rather than leave futures hanging.
        int err = errno;
        lk.lock();
        abandon(std::string("poll: ") + std::strerror(err));
        break;
      }
      std::uint64_t ignored = 0;
      if ((fds[0].revents & POLLIN) != 0 && ::read(wake.get(), &ignored, sizeof ignored) < 0) {
        // EAGAIN: consumed already
      }
      lk.lock();
      for (std::size_t i = 0; i < polled.size(); ++i) {
        if (fds[1 + 2 * i].revents != 0 || polled[i]->results->has_buffered_message()) drain_results(*polled[i]);
      }
      // Exits last: results a worker sent before dying are delivered first.
      for (std::size_t i = polled.size(); i-- > 0;) {
        if (fds[2 + 2 * i].revents == 0) continue;
        auto it = std::find_if(workers.begin(), workers.end(), [&](const auto& w) { return w.get() == polled[i]; });
        if (it != workers.end()) handle_exit(static_cast<std::size_t>(it - workers.begin()));
      }
    }
    done = true;
    cv.notify_all();
  }
};

process_pool::process_pool(std::size_t workers, std::chrono::milliseconds shutdown_grace) : impl_(new impl) {
  if (workers == 0) detail::throw_errno(EINVAL, "process_pool", "0 workers");
  impl_->target = workers;
  impl_->grace = shutdown_grace;
  impl_->wake.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!impl_->wake) detail::throw_errno(errno, "eventfd", "process_pool");
  // On a failure here impl_ is destroyed and every forked worker is SIGKILLed and reaped.
  for (std::size_t i = 0; i < workers; ++i) impl_->spawn_worker();
  impl_->collector = std::thread([p = impl_.get()] { p->run(); });
}

process_pool::~process_pool() {
  close();
  if (!join_for(impl_->grace)) terminate();
  {
    std::unique_lock lk(impl_->m);
    impl_->cv.wait(lk, [&] { return impl_->done; });  // SIGKILLed workers are reaped promptly
  }
  impl_->collector.join();
}

void process_pool::submit(std::unique_ptr<detail::pool_task> task) {
  std::lock_guard lk(impl_->m);
  if (impl_->closed) throw_error(errc::closed, "process_pool::apply_async", "pool", "the pool is closed");
  std::uint64_t id = impl_->next_id++;
  impl_->tasks.emplace(id, std::move(task));
  impl_->queue.push_back(id);
  impl_->dispatch();
  if (impl_->workers.size() < impl_->target) impl_->wake_collector();
}

void process_pool::close() noexcept {
  std::lock_guard lk(impl_->m);
  if (impl_->closed) return;
  impl_->closed = true;
  impl_->dispatch();
  impl_->wake_collector();
}

void process_pool::join() {
  close();
  std::unique_lock lk(impl_->m);
  impl_->cv.wait(lk, [&] { return impl_->done; });
}

bool process_pool::join_for(std::chrono::nanoseconds timeout) {
  close();
  auto d = deadline::in(timeout);
  std::unique_lock lk(impl_->m);
  if (d.is_never()) {
    impl_->cv.wait(lk, [&] { return impl_->done; });
    return true;
  }
  return impl_->cv.wait_until(lk, d.time_point(), [&] { return impl_->done; });
}

void process_pool::terminate() noexcept {
  std::lock_guard lk(impl_->m);
  impl_->closed = true;
  impl_->terminating = true;
  impl_->fail_queued("the pool was terminated before the task ran");
  for (auto& w : impl_->workers) {
    try {
      w->proc.kill(SIGKILL);
    } catch (const std::exception&) {
      // already reaped: nothing to kill
    }
  }
  impl_->wake_collector();
}

std::size_t process_pool::workers() const {
  std::lock_guard lk(impl_->m);
  return impl_->workers.size();
}

std::vector<pid_t> process_pool::worker_pids() const {
  std::lock_guard lk(impl_->m);
  std::vector<pid_t> out;
  for (const auto& w : impl_->workers) out.push_back(w->proc.pid());
  return out;
}

std::uint64_t process_pool::workers_lost() const {
  std::lock_guard lk(impl_->m);
  return impl_->lost;
}

}  // namespace ipc
