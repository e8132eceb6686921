// The raw baselines: each mechanism with its plain syscalls and no library, written the way a
// careful programmer would by hand — blocking calls, no timeouts, the fewest copies the mechanism
// allows. They answer "what does the library cost over doing it yourself".
//
//   pipe  pipe2(O_CLOEXEC) + write() of [u32 length][payload] built in place; the reader read()s
//         64 KiB at a time and copies each frame out into its message buffer (as every receive
//         here does: msgrcv, the sem and shm slots, and libipc's receive(vector&)).
//   fifo  mkfifo + open (readers O_NONBLOCK then cleared, writers once a reader exists) + the same.
//   msgq  msgget(IPC_PRIVATE) + msgsnd of a message built in place / msgrcv into our own buffer.
//   sem   the textbook bounded buffer: shmget slots, semget {empty, full, mutex}; a send is
//         semop(empty-1, mutex-1), copy in, semop(mutex+1, full+1); a receive the mirror (no SEM_UNDO).
//   shm   a minimal SPSC ring of fixed slots in shm_open memory: head/tail counters on their own
//         cache lines, spin ~20 µs then FUTEX_WAIT with a sleeper flag (the same idea as shm_ring,
//         without roles, liveness, validation or variable-length records).
#include "transport_common.hpp"

#include <ipc/error.hpp>
#include <ipc/unique_fd.hpp>
#include <ipc/uri.hpp>

#include <fcntl.h>
#include <linux/futex.h>
#include <poll.h>
#include <sched.h>
#include <sys/ipc.h>
#include <sys/mman.h>
#include <sys/msg.h>
#include <sys/sem.h>
#include <sys/shm.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <new>
#include <thread>

namespace ipc::bench {
namespace {

constexpr std::size_t read_chunk = 64 * 1024;

void write_all(int fd, const std::byte* p, std::size_t n, const std::string& object) {
  while (n > 0) {
    ssize_t w = ::write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      if (errno == EPIPE) throw_error(errc::closed, "write", object, "no reader is left");
      ipc::throw_errno(errno, "write", object);
    }
    p += w;
    n -= static_cast<std::size_t>(w);
  }
}

void set_blocking(int fd, const std::string& object) {
  int flags = ipc::check_unix(::fcntl(fd, F_GETFL), "fcntl(F_GETFL)", object);
  ipc::check_unix(::fcntl(fd, F_SETFL, flags & ~O_NONBLOCK), "fcntl(F_SETFL)", object);
}

// ---- pipe and fifo: a blocking byte stream with a 4-byte length prefix -------------------------

class stream_sender final : public endpoint {
 public:
  stream_sender(unique_fd fd, std::size_t size, std::string object)
      : fd_(std::move(fd)), frame_(4 + size), object_(std::move(object)) {
    const auto len = static_cast<std::uint32_t>(size);
    std::memcpy(frame_.data(), &len, sizeof len);  // little-endian host, as the frames are
  }
  std::span<std::byte> message() override { return std::span<std::byte>(frame_).subspan(4); }
  void send() override { write_all(fd_.get(), frame_.data(), frame_.size(), object_); }
  std::span<const std::byte> receive() override { throw_error(errc::closed, "receive", object_, "a sending end"); }

 private:
  unique_fd fd_;
  std::vector<std::byte> frame_;
  std::string object_;
};

class stream_receiver final : public endpoint {
 public:
  stream_receiver(unique_fd fd, std::size_t size, std::string object)
      : fd_(std::move(fd)), max_(size), buf_(std::max(read_chunk, 2 * (4 + size))), in_(size), object_(std::move(object)) {}
  std::span<std::byte> message() override { return {}; }
  void send() override { throw_error(errc::closed, "send", object_, "a receiving end"); }
  std::span<const std::byte> receive() override {
    for (;;) {
      const std::size_t avail = tail_ - head_;
      std::size_t need = 4;
      if (avail >= 4) {
        std::uint32_t len = 0;
        std::memcpy(&len, buf_.data() + head_, sizeof len);
        if (len > max_) throw_error(errc::corrupt, "read", object_, "frame length " + std::to_string(len));
        need = 4 + len;
        if (avail >= need) {
          // Copied out, as every other baseline's receive (msgrcv, the sem and shm slots) and
          // libipc's receive(vector&) do: the message outlives the next read.
          std::memcpy(in_.data(), buf_.data() + head_ + 4, len);
          head_ += need;
          return {in_.data(), len};
        }
      }
      if (head_ == tail_) {
        head_ = tail_ = 0;
      } else if (buf_.size() - head_ < need || tail_ == buf_.size()) {
        std::memmove(buf_.data(), buf_.data() + head_, avail);
        head_ = 0;
        tail_ = avail;
      }
      ssize_t n = ::read(fd_.get(), buf_.data() + tail_, buf_.size() - tail_);
      if (n < 0) {
        if (errno == EINTR) continue;
        ipc::throw_errno(errno, "read", object_);
      }
      if (n > 0) {
        tail_ += static_cast<std::size_t>(n);
        continue;
      }
      // read() also returns 0 on a FIFO whose first writer has not opened it yet; only POLLHUP
      // without data (a writer came and went) is the end.
      pollfd p{fd_.get(), POLLIN, 0};
      if (::poll(&p, 1, -1) < 0 && errno != EINTR) ipc::throw_errno(errno, "poll", object_);
      if ((p.revents & POLLIN) == 0 && (p.revents & (POLLHUP | POLLERR)) != 0) {
        throw_error(errc::closed, "read", object_, "end of stream");
      }
    }
  }

 private:
  unique_fd fd_;
  std::size_t max_;
  std::vector<std::byte> buf_;
  std::vector<std::byte> in_;
  std::size_t head_ = 0;
  std::size_t tail_ = 0;
  std::string object_;
};

std::unique_ptr<endpoint> stream_end(unique_fd fd, role r, std::size_t size, std::string object) {
  if (r == role::sender) return std::make_unique<stream_sender>(std::move(fd), size, std::move(object));
  return std::make_unique<stream_receiver>(std::move(fd), size, std::move(object));
}

class raw_pipe final : public link_transport {
 public:
  using link_transport::link_transport;
  void setup(std::size_t size, std::vector<side> senders) override {
    begin(size, std::move(senders));
    for (std::size_t i = 0; i < links(); ++i) {
      int fds[2];
      ipc::check_unix(::pipe2(fds, O_CLOEXEC), "pipe2", link_name(i));
      rd_.emplace_back(fds[0]);
      wr_.emplace_back(fds[1]);
    }
  }
  void open_child() override { keep(side::child); }
  void open_parent() override { keep(side::parent); }
  void interrupt() noexcept override {}
  void teardown() noexcept override {
    ends_.clear();
    rd_.clear();
    wr_.clear();
  }

 private:
  void keep(side me) {
    for (std::size_t i = 0; i < links(); ++i) {
      const role r = role_of(i, me);
      ends_[i] = stream_end(std::move(r == role::sender ? wr_[i] : rd_[i]), r, size_, "raw pipe " + link_name(i));
    }
    rd_.clear();
    wr_.clear();
  }
  std::vector<unique_fd> rd_;
  std::vector<unique_fd> wr_;
};

class raw_fifo final : public link_transport {
 public:
  using link_transport::link_transport;
  void setup(std::size_t size, std::vector<side> senders) override {
    begin(size, std::move(senders));
    for (std::size_t i = 0; i < links(); ++i) {
      std::string path = (runtime_dir() / (link_name(i) + ".fifo")).string();
      ipc::check_unix(::mkfifo(path.c_str(), 0600), "mkfifo", path);
      paths_.push_back(std::move(path));
    }
    open_readers(side::parent);
  }
  void open_child() override {
    for (auto& e : ends_) e.reset();  // the fork's copies of the parent's fds
    open_readers(side::child);
    open_writers(side::child);
  }
  void open_parent() override { open_writers(side::parent); }
  void interrupt() noexcept override {}
  void teardown() noexcept override {
    ends_.clear();
    for (const auto& p : paths_) ::unlink(p.c_str());
    paths_.clear();
  }

 private:
  void open_readers(side me) {
    for (std::size_t i = 0; i < links(); ++i) {
      if (role_of(i, me) != role::receiver) continue;
      // O_NONBLOCK: a reader's open must not wait for the writer.
      unique_fd fd(::open(paths_[i].c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC));
      if (!fd) ipc::throw_errno(errno, "open", paths_[i]);
      set_blocking(fd.get(), paths_[i]);
      ends_[i] = stream_end(std::move(fd), role::receiver, size_, paths_[i]);
    }
  }
  void open_writers(side me) {
    for (std::size_t i = 0; i < links(); ++i) {
      if (role_of(i, me) != role::sender) continue;
      // The reader opened before we got here; ENXIO (no reader yet) is retried for a moment only.
      const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(5);
      unique_fd fd;
      for (;;) {
        fd.reset(::open(paths_[i].c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC));
        if (fd) break;
        if (errno != ENXIO || std::chrono::steady_clock::now() > give_up) ipc::throw_errno(errno, "open", paths_[i]);
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      }
      set_blocking(fd.get(), paths_[i]);
      ends_[i] = stream_end(std::move(fd), role::sender, size_, paths_[i]);
    }
  }
  std::vector<std::string> paths_;
};

// ---- msgq: msgsnd / msgrcv on a private queue -------------------------------------------------

[[noreturn]] void sysv_failed(int err, std::string_view call, const std::string& object) {
  if (err == EIDRM || err == EINVAL) throw_error(errc::closed, call, object, "removed");
  ipc::throw_errno(err, call, object);
}

class msgq_endpoint final : public endpoint {
 public:
  msgq_endpoint(int id, std::size_t size)
      : id_(id), size_(size), buf_(1 + (size + sizeof(long) - 1) / sizeof(long)), object_("raw msqid=" + std::to_string(id)) {
    buf_[0] = 1;  // mtype
  }
  std::span<std::byte> message() override { return {reinterpret_cast<std::byte*>(buf_.data() + 1), size_}; }
  void send() override {
    while (::msgsnd(id_, buf_.data(), size_, 0) != 0) {
      if (errno != EINTR) sysv_failed(errno, "msgsnd", object_);
    }
  }
  std::span<const std::byte> receive() override {
    for (;;) {
      ssize_t n = ::msgrcv(id_, buf_.data(), size_, 0, 0);
      if (n >= 0) return {reinterpret_cast<const std::byte*>(buf_.data() + 1), static_cast<std::size_t>(n)};
      if (errno != EINTR) sysv_failed(errno, "msgrcv", object_);
    }
  }

 private:
  int id_;
  std::size_t size_;
  std::vector<long> buf_;
  std::string object_;
};

class raw_msgq final : public link_transport {
 public:
  using link_transport::link_transport;
  void setup(std::size_t size, std::vector<side> senders) override {
    begin(size, std::move(senders));
    for (std::size_t i = 0; i < links(); ++i) {
      ids_.push_back(ipc::check_unix(::msgget(IPC_PRIVATE, IPC_CREAT | 0600), "msgget", "IPC_PRIVATE, " + link_name(i)));
    }
  }
  void open_child() override { open(); }
  void open_parent() override { open(); }
  void interrupt() noexcept override {
    for (int id : ids_) ::msgctl(id, IPC_RMID, nullptr);
  }
  void teardown() noexcept override {
    ends_.clear();
    interrupt();
    ids_.clear();
  }

 private:
  void open() {
    for (std::size_t i = 0; i < links(); ++i) ends_[i] = std::make_unique<msgq_endpoint>(ids_[i], size_);
  }
  std::vector<int> ids_;
};

// ---- sem: the textbook bounded buffer ---------------------------------------------------------

constexpr unsigned short sem_empty = 0, sem_full = 1, sem_mutex = 2;

union semun {  // the caller defines it (semctl(2))
  int val;
  semid_ds* buf;
  unsigned short* array;
};

struct sem_ring_header {
  std::uint32_t in;   // next slot to fill (under the mutex)
  std::uint32_t out;  // next slot to drain (under the mutex)
};
constexpr std::size_t sem_header_bytes = 64;

class sem_endpoint final : public endpoint {
 public:
  sem_endpoint(int semid, std::byte* seg, std::size_t size)
      : semid_(semid), hdr_(reinterpret_cast<sem_ring_header*>(seg)), slots_(seg + sem_header_bytes),
        slot_size_(4 + size), msg_(size), in_(size), object_("raw semid=" + std::to_string(semid)) {}
  std::span<std::byte> message() override { return msg_; }
  void send() override {
    op({{sem_empty, -1, 0}, {sem_mutex, -1, 0}});
    std::byte* slot = slots_ + hdr_->in * slot_size_;
    const auto len = static_cast<std::uint32_t>(msg_.size());
    std::memcpy(slot, &len, sizeof len);
    std::memcpy(slot + 4, msg_.data(), msg_.size());
    hdr_->in = static_cast<std::uint32_t>((hdr_->in + 1) % sem_slots);
    op({{sem_mutex, 1, 0}, {sem_full, 1, 0}});
  }
  std::span<const std::byte> receive() override {
    op({{sem_full, -1, 0}, {sem_mutex, -1, 0}});
    const std::byte* slot = slots_ + hdr_->out * slot_size_;
    std::uint32_t len = 0;
    std::memcpy(&len, slot, sizeof len);
    if (len > in_.size()) {
      op({{sem_mutex, 1, 0}, {sem_full, 1, 0}});
      throw_error(errc::corrupt, "receive", object_, "slot length " + std::to_string(len));
    }
    std::memcpy(in_.data(), slot + 4, len);
    hdr_->out = static_cast<std::uint32_t>((hdr_->out + 1) % sem_slots);
    op({{sem_mutex, 1, 0}, {sem_empty, 1, 0}});
    return {in_.data(), len};
  }

 private:
  void op(std::initializer_list<sembuf> ops) {
    sembuf b[2];
    std::copy(ops.begin(), ops.end(), b);
    while (::semop(semid_, b, ops.size()) != 0) {
      if (errno != EINTR) sysv_failed(errno, "semop", object_);
    }
  }
  int semid_;
  sem_ring_header* hdr_;
  std::byte* slots_;
  std::size_t slot_size_;
  std::vector<std::byte> msg_;
  std::vector<std::byte> in_;
  std::string object_;
};

class raw_sem final : public link_transport {
 public:
  using link_transport::link_transport;
  void setup(std::size_t size, std::vector<side> senders) override {
    begin(size, std::move(senders));
    for (std::size_t i = 0; i < links(); ++i) {
      const std::string object = "IPC_PRIVATE, " + link_name(i);
      int shmid = ipc::check_unix(::shmget(IPC_PRIVATE, sem_header_bytes + sem_slots * (4 + size), IPC_CREAT | 0600),
                                     "shmget", object);
      void* p = ::shmat(shmid, nullptr, 0);
      const int err = errno;
      ::shmctl(shmid, IPC_RMID, nullptr);  // destroyed when the last process detaches; fork keeps it attached
      if (p == reinterpret_cast<void*>(-1)) ipc::throw_errno(err, "shmat", object);
      segs_.push_back(static_cast<std::byte*>(p));
      int semid = ipc::check_unix(::semget(IPC_PRIVATE, 3, IPC_CREAT | 0600), "semget", object);
      semids_.push_back(semid);
      unsigned short init[3] = {static_cast<unsigned short>(sem_slots), 0, 1};
      semun arg{};
      arg.array = init;
      ipc::check_unix(::semctl(semid, 0, SETALL, arg), "semctl(SETALL)", object);
    }
  }
  void open_child() override { open(); }
  void open_parent() override { open(); }
  void interrupt() noexcept override {
    for (int id : semids_) ::semctl(id, 0, IPC_RMID);
  }
  void teardown() noexcept override {
    ends_.clear();
    interrupt();
    semids_.clear();
    for (auto* s : segs_) ::shmdt(s);
    segs_.clear();
  }

 private:
  void open() {
    for (std::size_t i = 0; i < links(); ++i) ends_[i] = std::make_unique<sem_endpoint>(semids_[i], segs_[i], size_);
  }
  std::vector<int> semids_;
  std::vector<std::byte*> segs_;
};

// ---- shm: a minimal SPSC ring with spin-then-futex waits --------------------------------------

struct alignas(64) raw_ring {
  alignas(64) std::atomic<std::uint64_t> head;  // slots written (only the sender stores)
  alignas(64) std::atomic<std::uint64_t> tail;  // slots read (only the receiver stores)
  alignas(64) std::atomic<std::uint32_t> data_seq;
  std::atomic<std::uint32_t> receiver_sleeping;
  alignas(64) std::atomic<std::uint32_t> space_seq;
  std::atomic<std::uint32_t> sender_sleeping;
  alignas(64) std::atomic<std::uint32_t> aborted;  // set by interrupt(): waiters give up
};
static_assert(std::atomic<std::uint64_t>::is_always_lock_free && std::atomic<std::uint32_t>::is_always_lock_free);

void futex_wait(std::atomic<std::uint32_t>& w, std::uint32_t seen) {
  timespec slice{0, 100'000'000};  // wake every 100 ms to look at `aborted`
  ::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&w), FUTEX_WAIT, seen, &slice, nullptr, 0);
}
void futex_wake(std::atomic<std::uint32_t>& w) {
  ::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&w), FUTEX_WAKE, 1, nullptr, nullptr, 0);
}

// Spins ~20 µs, yields 4 times, then sleeps on the futex until ready() — shm_ring's recipe.
template <typename Ready>
void wait_until(raw_ring& r, Ready&& ready, std::atomic<std::uint32_t>& seq, std::atomic<std::uint32_t>& sleeping,
                const std::string& object) {
  std::chrono::steady_clock::time_point stop{};  // first read after 32 pauses, as shm_ring's spin
  for (unsigned i = 1;; ++i) {
    __builtin_ia32_pause();
    if (ready()) return;
    if ((i & 31U) == 0) {
      const auto now = std::chrono::steady_clock::now();
      if (i == 32) stop = now + std::chrono::microseconds(20);
      else if (now >= stop) break;
    }
  }
  for (int i = 0; i < 4; ++i) {
    ::sched_yield();
    if (ready()) return;
  }
  for (;;) {
    if (r.aborted.load(std::memory_order_relaxed) != 0) throw_error(errc::closed, "wait", object, "the peer is gone");
    const std::uint32_t seen = seq.load(std::memory_order_acquire);
    sleeping.store(1, std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (ready()) {
      sleeping.store(0, std::memory_order_relaxed);
      return;
    }
    futex_wait(seq, seen);
    sleeping.store(0, std::memory_order_relaxed);
    if (ready()) return;
  }
}

class ring_endpoint final : public endpoint {
 public:
  ring_endpoint(raw_ring* r, std::byte* data, std::size_t slots, std::size_t slot_bytes, std::size_t size,
                std::string object)
      : r_(r), data_(data), slots_(slots), slot_bytes_(slot_bytes), msg_(size), in_(size), object_(std::move(object)) {}
  std::span<std::byte> message() override { return msg_; }
  void send() override {
    const std::uint64_t head = r_->head.load(std::memory_order_relaxed);
    if (head - cached_ >= slots_) {
      auto room = [&] {
        cached_ = r_->tail.load(std::memory_order_acquire);
        return head - cached_ < slots_;
      };
      if (!room()) wait_until(*r_, room, r_->space_seq, r_->sender_sleeping, object_);
    }
    std::byte* slot = data_ + (head % slots_) * slot_bytes_;
    const auto len = static_cast<std::uint32_t>(msg_.size());
    std::memcpy(slot, &len, sizeof len);
    std::memcpy(slot + 8, msg_.data(), msg_.size());
    r_->head.store(head + 1, std::memory_order_release);
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (r_->receiver_sleeping.load(std::memory_order_relaxed) != 0) {
      r_->data_seq.fetch_add(1, std::memory_order_release);
      futex_wake(r_->data_seq);
    }
  }
  std::span<const std::byte> receive() override {
    const std::uint64_t tail = r_->tail.load(std::memory_order_relaxed);
    if (cached_ == tail) {
      auto data = [&] {
        cached_ = r_->head.load(std::memory_order_acquire);
        return cached_ != tail;
      };
      if (!data()) wait_until(*r_, data, r_->data_seq, r_->receiver_sleeping, object_);
    }
    const std::byte* slot = data_ + (tail % slots_) * slot_bytes_;
    std::uint32_t len = 0;
    std::memcpy(&len, slot, sizeof len);
    if (len > in_.size()) throw_error(errc::corrupt, "receive", object_, "slot length " + std::to_string(len));
    std::memcpy(in_.data(), slot + 8, len);
    r_->tail.store(tail + 1, std::memory_order_release);
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (r_->sender_sleeping.load(std::memory_order_relaxed) != 0) {
      r_->space_seq.fetch_add(1, std::memory_order_release);
      futex_wake(r_->space_seq);
    }
    return {in_.data(), len};
  }

 private:
  raw_ring* r_;
  std::byte* data_;
  std::size_t slots_;
  std::size_t slot_bytes_;
  std::uint64_t cached_ = 0;  // sender: the tail last seen; receiver: the head last seen
  std::vector<std::byte> msg_;
  std::vector<std::byte> in_;
  std::string object_;
};

class raw_shm final : public link_transport {
 public:
  using link_transport::link_transport;
  void setup(std::size_t size, std::vector<side> senders) override {
    begin(size, std::move(senders));
    slot_bytes_ = (8 + size + 7) / 8 * 8;
    for (std::size_t i = 0; i < links(); ++i) {
      const std::string name = "/" + link_name(i);
      unique_fd fd(::shm_open(name.c_str(), O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0600));
      if (!fd) ipc::throw_errno(errno, "shm_open", name);
      // Unlinked at once: the mapping (shared with the child by fork) is all we need.
      ::shm_unlink(name.c_str());
      const std::size_t bytes = sizeof(raw_ring) + shm_capacity;
      ipc::check_unix(::ftruncate(fd.get(), static_cast<off_t>(bytes)), "ftruncate", name);
      void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0);
      if (p == MAP_FAILED) ipc::throw_errno(errno, "mmap", name);
      maps_.push_back({new (p) raw_ring{}, bytes});
    }
  }
  void open_child() override { open(); }
  void open_parent() override { open(); }
  void interrupt() noexcept override {
    for (auto& m : maps_) {
      m.ring->aborted.store(1);
      futex_wake(m.ring->data_seq);
      futex_wake(m.ring->space_seq);
    }
  }
  void teardown() noexcept override {
    ends_.clear();
    for (auto& m : maps_) ::munmap(m.ring, m.bytes);
    maps_.clear();
  }

 private:
  struct mapping {
    raw_ring* ring;
    std::size_t bytes;
  };
  void open() {
    for (std::size_t i = 0; i < links(); ++i) {
      auto* data = reinterpret_cast<std::byte*>(maps_[i].ring) + sizeof(raw_ring);
      ends_[i] = std::make_unique<ring_endpoint>(maps_[i].ring, data, shm_capacity / slot_bytes_, slot_bytes_, size_,
                                                 "raw shm " + link_name(i));
    }
  }
  std::size_t slot_bytes_ = 0;
  std::vector<mapping> maps_;
};

}  // namespace

std::unique_ptr<transport> make_raw_transport(std::string_view channel, std::string prefix) {
  if (channel == "pipe") return std::make_unique<raw_pipe>(std::move(prefix));
  if (channel == "fifo") return std::make_unique<raw_fifo>(std::move(prefix));
  if (channel == "msgq") return std::make_unique<raw_msgq>(std::move(prefix));
  if (channel == "sem") return std::make_unique<raw_sem>(std::move(prefix));
  if (channel == "shm") return std::make_unique<raw_shm>(std::move(prefix));
  return nullptr;
}

}  // namespace ipc::bench
