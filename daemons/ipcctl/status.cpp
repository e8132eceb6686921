#include "status.hpp"

#include "objects.hpp"

#include <sys/stat.h>

#include <algorithm>
#include <ctime>
#include <fstream>
#include <string>

namespace ipcctl {

std::vector<status_entry> read_status(const std::filesystem::path& dir) {
  std::vector<status_entry> out;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir / "status", ec)) {
    if (e.path().extension() != ".status") continue;
    struct stat st {};
    if (::lstat(e.path().c_str(), &st) != 0 || !S_ISREG(st.st_mode)) continue;
    status_entry s;
    s.file = e.path();
    std::ifstream in(e.path());
    std::string line;
    std::getline(in, line);
    s.figures = ipc::daemon::stats_line::parse(line);
    s.alive = s.figures && pid_alive(s.figures->pid);
    auto now = ::time(nullptr);
    s.age_seconds = now > st.st_mtime ? static_cast<long>(now - st.st_mtime) : 0;
    out.push_back(std::move(s));
  }
  std::sort(out.begin(), out.end(), [](const status_entry& a, const status_entry& b) { return a.file < b.file; });
  return out;
}

}  // namespace ipcctl
