// The daemons' status files: runtime_dir()/status/*.status, each one stats line (stats_line.hpp)
// rewritten atomically by a running daemon every stats interval.
//
//   for (const auto& e : ipcctl::read_status(ipc::runtime_dir())) if (!e.alive) ...;
#pragma once

#include "stats_line.hpp"

#include <filesystem>
#include <optional>
#include <vector>

namespace ipcctl {

struct status_entry {
  std::filesystem::path file;
  std::optional<ipc::daemon::stats_line> figures;  ///< nullopt when the file does not hold a valid stats line
  bool alive = false;            ///< the pid in the file runs
  long age_seconds = 0;          ///< since the file was last written
};

/// Every status file under dir/status, sorted by name (none when the directory does not exist).
std::vector<status_entry> read_status(const std::filesystem::path& dir);

}  // namespace ipcctl
