// The lock-order checker's shared graph (see lock_order_checker in <ipc/sync.hpp>): "first held
// while then taken" edges learned by every process that uses the same runtime directory, each
// tagged with the process (pid + start time) that established it.
#pragma once

#include <ipc/sync.hpp>

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace ipc::detail::lock_order_registry {

/// Under the registry's lock: for each id in held, checks whether taking `acquiring` closes a cycle
/// (a learned path acquiring -> ... -> held); on the first that does, returns the violation with
/// the path; otherwise learns held -> acquiring for every held id and returns nullopt.
/// Throws std::system_error if the registry cannot be opened or locked.
std::optional<lock_order_checker::violation> check_and_learn(std::span<const std::uint32_t> held,
                                                             std::uint32_t acquiring);

/// "NAME (id N)" for a describe()d id, else "lock N". Blocks for the registry's lock.
std::string name_of(std::uint32_t id);

/// Drops this process's edges and those of dead processes.
void forget_mine_and_dead();

/// Records a name for id (first one wins).
void describe(std::uint32_t id, std::string_view name);

/// How errors name the registry.
std::string object();

/// This process stops using the registry: drops its edges and its user entry and, as the last
/// live user, removes it. Runs at exit (atexit) and in process::fork children before _exit.
/// Does nothing in a process that never used it. Never throws.
void leave() noexcept;

}  // namespace ipc::detail::lock_order_registry
