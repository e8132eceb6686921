#include <ipc/error.hpp>
#include <ipc/pipe.hpp>
#include <ipc/process_pool.hpp>

#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <deque>
#include <mutex>
#include <thread>
#include <unordered_map>

namespace ipc {

detail::pool_job::~pool_job() = default;

namespace {

std::string pid_object(pid_t pid) { return "pid " + std::to_string(pid); }

// Parent → worker: job id (0 = stop), invoker address, then the job's payload.
// Worker → parent: a kind byte and a job id, then for `result` the packed outcomes, for
// `init_failed` the packed exception_record.
constexpr std::size_t request_header = 2 * sizeof(std::uint64_t);
constexpr std::size_t reply_header = 1 + sizeof(std::uint64_t);
enum class reply_kind : unsigned char { started = 1, result = 2, init_failed = 3 };

void put_u64(std::vector<std::byte>& out, std::uint64_t v) {
  std::byte b[8];
  std::memcpy(b, &v, 8);
  out.insert(out.end(), b, b + 8);
}
std::uint64_t get_u64(const std::byte* p) {
  std::uint64_t v = 0;
  std::memcpy(&v, p, 8);
  return v;
}

void begin_reply(std::vector<std::byte>& out, reply_kind k, std::uint64_t id) {
  out.clear();
  out.push_back(static_cast<std::byte>(k));
  put_u64(out, id);
}

// The worker's whole life: initializer, then receive a request, acknowledge it, run it, send the
// outcomes — until told to stop, the parent is gone, or max_tasks jobs are done. Runs in the fork.
// It sleeps only on its own request pipe, and the collector on every worker's result pipe and
// pidfd, so no wake-up is a baton between processes: a worker that dies makes its pidfd readable
// and its task is failed or re-queued (docs/crash-behaviour.md, "No process waits for ever").
int worker_main(pipe_channel& requests, pipe_channel& results, const std::function<void()>& initializer,
                std::size_t max_tasks) {
  std::vector<std::byte> msg;
  std::vector<std::byte> reply;
  if (initializer) {
    try {
      initializer();
    } catch (...) {
      begin_reply(reply, reply_kind::init_failed, 0);
      pack_into(reply, detail::record_exception(std::current_exception()));
      try {
        results.send(reply);
      } catch (...) {
        // the pool is gone: nobody to tell
      }
      return 3;
    }
  }
  for (std::size_t done = 0; max_tasks == 0 || done < max_tasks; ++done) {
    try {
      requests.receive(msg);
    } catch (...) {
      return 0;  // the pool is gone
    }
    if (msg.size() < request_header) return 3;
    std::uint64_t id = get_u64(msg.data());
    if (id == 0) return 0;
    auto invoker = reinterpret_cast<detail::pool_invoker>(static_cast<std::uintptr_t>(get_u64(msg.data() + 8)));
    // "Started" goes out before any user code runs: a job the parent never saw acknowledged was
    // never started, so it is safe to run it elsewhere.
    begin_reply(reply, reply_kind::started, id);
    try {
      results.send(reply);
    } catch (...) {
      return 0;
    }
    begin_reply(reply, reply_kind::result, id);
    invoker(std::span<const std::byte>(msg).subspan(request_header), reply);
    std::fflush(nullptr);
    try {
      results.send(reply);
    } catch (...) {
      return 0;
    }
  }
  return 0;  // retired after max_tasks
}

std::exception_ptr closed_error(std::string_view object, std::string_view why) {
  try {
    throw_error(errc::closed, "process_pool", object, why);
  } catch (...) {
    return std::current_exception();
  }
}

}  // namespace

struct process_pool::impl {
  struct worker {
    process proc;
    std::unique_ptr<pipe_channel> requests;  // our sending end
    std::unique_ptr<pipe_channel> results;   // our receiving end
    std::uint64_t running = 0;               // job in flight, 0 = idle
    bool started = false;                    // the worker acknowledged `running`
    std::size_t jobs_done = 0;
    bool stop_sent = false;
    bool refreshing = false;  // stopped to make room for a newer fork (carried callables)
    std::uint64_t born = 0;   // `generation` when forked: it holds every carried copy up to this one
  };
  struct queued_job {
    std::unique_ptr<detail::pool_job> job;
    int requeues = 0;
    std::uint64_t generation = 0;  // carried callable: runs only on a worker born at or after this; 0: anywhere
  };

  std::size_t target = 0;
  std::size_t max_tasks = 0;
  std::function<void()> initializer;
  std::chrono::milliseconds grace{};
  mutable std::mutex m;
  std::condition_variable cv;
  std::vector<std::unique_ptr<worker>> workers;  // changed only by the constructor and the collector
  std::unordered_map<std::uint64_t, queued_job> jobs;
  std::deque<std::uint64_t> queue;
  std::uint64_t next_id = 1;
  std::uint64_t generation = 0;  // carried callables queued so far
  std::uint64_t lost = 0;      // workers that died without being told to stop
  std::uint64_t retired = 0;   // workers that exited after max_tasks jobs
  std::uint64_t requeued = 0;  // jobs re-queued after their worker died before starting them
  bool closed = false;
  bool terminating = false;
  std::string closed_why = "the pool is closed";
  std::exception_ptr init_error;  // the initializer threw in a worker: the pool is closed for good
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
    po.max_message = max_message_size;
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
    const std::function<void()>* init = &initializer;
    std::size_t max = max_tasks;
    auto proc = process::fork([&close_in_child, in, out, init, max] {
      for (int fd : close_in_child) ::close(fd);
      return worker_main(*in, *out, *init, max);
    });
    auto w = std::make_unique<worker>();
    w->born = generation;
    w->proc = std::move(proc);
    w->requests = std::move(req_tx);
    w->results = std::move(res_rx);
    workers.push_back(std::move(w));
  }

  void fail_job(std::uint64_t id, const std::exception_ptr& error) {
    auto it = jobs.find(id);
    if (it == jobs.end()) return;
    for (std::size_t i = 0; i < it->second.job->items; ++i) it->second.job->fail(i, error);
    jobs.erase(it);
  }

  void fail_queued(const std::exception_ptr& error) {
    for (auto id : queue) fail_job(id, error);
    queue.clear();
  }

  [[nodiscard]] bool retiring(const worker& w) const { return max_tasks != 0 && w.jobs_done >= max_tasks; }

  // Workers that count towards `target`: all but those stopped to be replaced by a newer fork.
  [[nodiscard]] std::size_t active_workers() const {
    return static_cast<std::size_t>(std::count_if(workers.begin(), workers.end(), [](const auto& w) { return !w->refreshing; }));
  }

  // m held. The first queued job this worker can run: a carried callable needs a worker forked
  // after its copy was made (so that the copy is in the worker's memory).
  std::optional<std::deque<std::uint64_t>::iterator> runnable_by(const worker& w) {
    for (auto it = queue.begin(); it != queue.end(); ++it) {
      if (jobs.at(*it).generation <= w.born) return it;
    }
    return std::nullopt;
  }

  // m held. Gives queued work to idle workers; with nothing left after close(), tells them to stop.
  // Idle workers too old for every queued job (carried callables submitted after their fork) are
  // stopped, as many as such jobs wait, and top_up() forks their replacements. Returns true when it
  // stopped one (the collector must then top up).
  bool dispatch() {
    std::vector<std::byte> req;
    std::vector<worker*> stale;
    for (auto& w : workers) {
      if (w->running != 0 || w->stop_sent || retiring(*w)) continue;
      req.clear();
      std::optional<std::deque<std::uint64_t>::iterator> next;
      if (!queue.empty()) {
        next = runnable_by(*w);
        if (!next) {
          stale.push_back(w.get());
          continue;
        }
      }
      if (next) {
        std::uint64_t id = **next;
        queue.erase(*next);
        const auto& job = *jobs.at(id).job;
        put_u64(req, id);
        put_u64(req, reinterpret_cast<std::uintptr_t>(job.invoker));
        req.insert(req.end(), job.payload.begin(), job.payload.end());
        w->running = id;
        w->started = false;
      } else if (closed) {
        put_u64(req, 0);
        put_u64(req, 0);
        w->stop_sent = true;
      } else {
        continue;
      }
      send_request(*w, req);
    }
    return refresh(stale);
  }

  static void send_request(worker& w, const std::vector<std::byte>& req) noexcept {
    try {
      // The worker is idle, reading its request pipe: this does not wait on a busy worker.
      w.requests->send(req);
    } catch (const std::exception&) {
      // The worker is gone; its pidfd reports that and the job is re-queued (never started).
    }
  }

  // m held. Stops idle workers that no queued job can run on, one per job that no live worker can
  // run and no pending fork will take: a fork per carried submission at most, fewer when several
  // wait (one new worker holds every copy made before it).
  bool refresh(const std::vector<worker*>& stale) {
    if (stale.empty() || terminating) return false;
    std::uint64_t newest = 0;
    for (const auto& w : workers) {
      if (!w->refreshing) newest = std::max(newest, w->born);
    }
    std::size_t waiting = static_cast<std::size_t>(
        std::count_if(queue.begin(), queue.end(), [&](std::uint64_t id) { return jobs.at(id).generation > newest; }));
    std::size_t active = active_workers();
    std::size_t pending_forks = target > active ? target - active : 0;
    if (waiting == 0) waiting = 1;  // the newest worker is busy: free a slot for another fork
    std::size_t wanted = waiting > pending_forks ? waiting - pending_forks : 0;
    std::vector<std::byte> stop;
    put_u64(stop, 0);
    put_u64(stop, 0);
    std::size_t stopped = 0;
    for (worker* w : stale) {
      if (stopped == wanted) break;
      w->stop_sent = true;
      w->refreshing = true;
      send_request(*w, stop);
      ++stopped;
    }
    return stopped != 0;
  }

  void handle_reply(worker& w, const std::vector<std::byte>& msg) {
    if (msg.size() < reply_header) return;
    auto kind = static_cast<reply_kind>(msg[0]);
    std::uint64_t id = get_u64(msg.data() + 1);
    auto body = std::span<const std::byte>(msg).subspan(reply_header);
    if (kind == reply_kind::started) {
      if (w.running == id) w.started = true;
      return;
    }
    if (kind == reply_kind::init_failed) {
      std::exception_ptr error;
      try {
        error = detail::rebuild_exception(unpack<detail::exception_record>(body, "initializer failure"));
      } catch (...) {
        error = std::current_exception();
      }
      // A failing initializer fails in every worker: stop taking work, start no more workers, and
      // fail what is queued and what was sent to this worker (it never started it).
      closed = true;
      closed_why = "the initializer failed in worker " + pid_object(w.proc.pid());
      init_error = error;
      fail_queued(error);
      if (w.running != 0) fail_job(std::exchange(w.running, 0), error);
      return;
    }
    if (w.running == id) {
      w.running = 0;
      ++w.jobs_done;
    }
    auto it = jobs.find(id);
    if (it == jobs.end()) return;
    detail::pool_job& job = *it->second.job;
    std::size_t delivered = 0;
    try {
      msgpack::object_handle oh = msgpack::unpack(reinterpret_cast<const char*>(body.data()), body.size());
      const msgpack::object& outcomes = oh.get();
      if (outcomes.type != msgpack::type::ARRAY || outcomes.via.array.size != job.items) throw msgpack::type_error();
      for (; delivered < job.items; ++delivered) {
        const msgpack::object& o = outcomes.via.array.ptr[delivered];
        if (o.type != msgpack::type::ARRAY || o.via.array.size != 2) throw msgpack::type_error();
        if (o.via.array.ptr[0].as<int>() == 0) {
          job.deliver(delivered, o.via.array.ptr[1]);
        } else {
          job.fail(delivered, detail::rebuild_exception(o.via.array.ptr[1].as<detail::exception_record>()));
        }
      }
    } catch (...) {
      auto error = closed_error("worker " + pid_object(w.proc.pid()), "a reply that does not decode");
      for (; delivered < job.items; ++delivered) job.fail(delivered, error);
    }
    jobs.erase(it);
  }

  void drain_replies(worker& w) {
    std::vector<std::byte> msg;
    try {
      while (w.results->try_receive(msg)) handle_reply(w, msg);
    } catch (const std::exception&) {
      // EOF: the worker's end is closed; its exit is reported through the pidfd.
    }
  }

  // m held; the worker's pidfd polled readable: it has ended.
  void handle_exit(std::size_t index) {
    worker& w = *workers[index];
    drain_replies(w);
    std::optional<exit_status> st;
    try {
      st = w.proc.try_join();
    } catch (const std::exception&) {
      st = exit_status{};  // reaped by someone else: status unknown
    }
    if (!st) return;
    std::string object = "worker " + pid_object(w.proc.pid());
    if (w.running != 0) {
      auto it = jobs.find(w.running);
      if (w.started || it == jobs.end()) {
        fail_job(w.running, closed_error(object, st->to_string() + " while running task " + std::to_string(w.running)));
      } else if (terminating) {
        fail_job(w.running, closed_error(object, "the pool was terminated before the task ran"));
      } else if (init_error) {
        fail_job(w.running, init_error);
      } else if (it->second.requeues == 0) {
        // Sent but never acknowledged: the worker died before running it. Run it elsewhere, first.
        ++it->second.requeues;
        ++requeued;
        queue.push_front(w.running);
      } else {
        fail_job(w.running, closed_error(object, st->to_string() + " before starting task " + std::to_string(w.running) +
                                                     " (its second worker to die before starting it)"));
      }
    }
    if (retiring(w) && st->success()) {
      ++retired;
    } else if (!w.stop_sent && !terminating) {
      ++lost;
    }
    workers.erase(workers.begin() + static_cast<std::ptrdiff_t>(index));
  }

  // m held. Keeps `target` workers while there is or may be work; spawn failures with no worker
  // left fail the queued tasks instead of leaving them hanging.
  void top_up() {
    while (!terminating && !init_error && (!closed || !queue.empty()) && active_workers() < target) {
      try {
        spawn_worker();
      } catch (const std::exception& e) {
        if (workers.empty()) fail_queued(closed_error("pool", std::string("no worker could be started: ") + e.what()));
        return;
      }
    }
  }

  // m held. Kills and reaps every worker and fails every task with `why`.
  void abandon(const std::string& why) {
    terminating = true;
    closed = true;
    auto error = closed_error("pool", why);
    fail_queued(error);
    for (auto& w : workers) {
      if (w->running != 0) fail_job(w->running, error);
    }
    workers.clear();  // each process handle SIGKILLs and reaps its worker
  }

  void run() {
    std::unique_lock lk(m);
    std::vector<pollfd> fds;
    std::vector<worker*> polled;
    for (;;) {
      do {
        top_up();
      } while (dispatch());
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
        if (fds[1 + 2 * i].revents != 0 || polled[i]->results->has_buffered_message()) drain_replies(*polled[i]);
      }
      // Exits last: replies a worker sent before dying are handled first.
      for (std::size_t i = polled.size(); i-- > 0;) {
        if (fds[2 + 2 * i].revents == 0) continue;
        auto it = std::find_if(workers.begin(), workers.end(), [&](const auto& w) { return w.get() == polled[i]; });
        if (it != workers.end()) handle_exit(static_cast<std::size_t>(it - workers.begin()));
      }
    }
    done = true;
    cv.notify_all();
  }

  // m held.
  void check_open(std::string_view call) const {
    if (closed) throw_error(errc::closed, call, "pool", closed_why);
  }
  std::uint64_t enqueue(std::unique_ptr<detail::pool_job> job) {
    if (job->payload.size() + request_header > max_message_size) {
      throw_error(errc::message_too_large, "process_pool::apply_async", "pool",
                  "request of " + std::to_string(job->payload.size()) + " bytes exceeds " + std::to_string(max_message_size));
    }
    std::uint64_t id = next_id++;
    jobs.emplace(id, queued_job{std::move(job), 0});
    queue.push_back(id);
    if (jobs.at(id).job->carried) jobs.at(id).generation = ++generation;
    return id;
  }
};

process_pool::process_pool(std::size_t workers, std::chrono::milliseconds shutdown_grace)
    : process_pool([&] {
        if (workers == 0) ipc::throw_errno(EINVAL, "process_pool", "0 workers");
        pool_options o;
        o.workers = workers;
        o.shutdown_grace = shutdown_grace;
        return o;
      }()) {}

process_pool::process_pool(const pool_options& options) : impl_(new impl) {
  std::size_t n = options.workers != 0 ? options.workers : std::max(1u, std::thread::hardware_concurrency());
  impl_->target = n;
  impl_->grace = options.shutdown_grace;
  impl_->initializer = options.initializer;
  impl_->max_tasks = options.max_tasks_per_child;
  impl_->wake.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!impl_->wake) ipc::throw_errno(errno, "eventfd", "process_pool");
  // On a failure here impl_ is destroyed and every forked worker is SIGKILLed and reaped.
  for (std::size_t i = 0; i < n; ++i) impl_->spawn_worker();
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

std::size_t process_pool::auto_chunksize(std::size_t items) const noexcept {
  // Python's rule: about four chunks per worker.
  std::size_t per = impl_->target * 4;
  return std::max<std::size_t>(1, (items + per - 1) / per);
}

void process_pool::submit(std::unique_ptr<detail::pool_job> job) {
  std::lock_guard lk(impl_->m);
  impl_->check_open("process_pool::apply_async");
  impl_->enqueue(std::move(job));
  if (impl_->dispatch() || impl_->active_workers() < impl_->target) impl_->wake_collector();
}

void process_pool::submit_many(std::vector<std::unique_ptr<detail::pool_job>> jobs) {
  std::lock_guard lk(impl_->m);
  impl_->check_open("process_pool::map");
  for (const auto& job : jobs) {
    if (job->payload.size() + request_header > max_message_size) {
      throw_error(errc::message_too_large, "process_pool::map", "pool",
                  "a chunk of " + std::to_string(job->payload.size()) + " bytes exceeds " + std::to_string(max_message_size));
    }
  }
  for (auto& job : jobs) impl_->enqueue(std::move(job));
  if (impl_->dispatch() || impl_->active_workers() < impl_->target) impl_->wake_collector();
}

void process_pool::close() noexcept {
  std::lock_guard lk(impl_->m);
  if (impl_->closed) return;
  impl_->closed = true;
  (void)impl_->dispatch();
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
  impl_->fail_queued(closed_error("pool", "the pool was terminated before the task ran"));
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

std::uint64_t process_pool::workers_retired() const {
  std::lock_guard lk(impl_->m);
  return impl_->retired;
}

std::uint64_t process_pool::tasks_requeued() const {
  std::lock_guard lk(impl_->m);
  return impl_->requeued;
}

}  // namespace ipc
