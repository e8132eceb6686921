// The factories behind ipc::open_channel: one per scheme, each defined next to
// its mechanism (pipe.cpp, fifo.cpp, msg_queue.cpp, sem_buffer.cpp, shm_ring.cpp)
// and called from open_channel.cpp.
#pragma once

#include <ipc/channel.hpp>
#include <ipc/uri.hpp>

#include <memory>

namespace ipc::detail {

std::unique_ptr<channel> open_pipe_uri(const channel_uri& uri, role r);
std::unique_ptr<channel> open_fifo_uri(const channel_uri& uri, role r);
std::unique_ptr<channel> open_msgq_uri(const channel_uri& uri, role r);
std::unique_ptr<channel> open_sem_uri(const channel_uri& uri, role r);
std::unique_ptr<channel> open_shm_uri(const channel_uri& uri, role r);
std::unique_ptr<channel> open_shm_mode_uri(const channel_uri& uri, role r);  // shm_mpmc_uri.cpp: ?mode=spsc|mpmc|broadcast
std::unique_ptr<channel> open_shm_broadcast_uri(const channel_uri& uri, role r);  // shm_broadcast_uri.cpp
#ifdef IPC_HAVE_NATS
std::unique_ptr<channel> open_nats_uri(const channel_uri& uri, role r);  // nats_channel.cpp
#endif

}  // namespace ipc::detail
