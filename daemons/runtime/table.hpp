// The one table printer of the toolkit's programs (ipcctl's list/status/launch, the bench), and a
// live table that redraws in place on a terminal. Widths count UTF-8 code points (× and — are one
// column).
//
//   ipc::daemon::table t({"channel", "records/s"}, {false, true});   // right-align numbers
//   t.add({"msgq", "120000"});
//   std::cout << t.render();
//
//   ipc::daemon::live_area live(std::cout, ::isatty(1));
//   live.show(t.render());   // terminal: moves the cursor up over the last drawing and overwrites it
//   live.forget();           // keep what is on screen (e.g. before writing log lines under it)
#pragma once

#include <ostream>
#include <string>
#include <vector>

namespace ipc::daemon {

class table {
 public:
  table(std::vector<std::string> headers, std::vector<bool> right_aligned);
  void add(std::vector<std::string> row);
  /// Rows padded to column widths, two spaces apart, one line each, header first.
  [[nodiscard]] std::string render() const;

 private:
  std::vector<std::string> headers_;
  std::vector<bool> right_;
  std::vector<std::vector<std::string>> rows_;
};

class live_area {
 public:
  live_area(std::ostream& out, bool terminal) : out_(out), terminal_(terminal) {}
  /// Draws text; on a terminal first erases what the previous show() drew.
  void show(const std::string& text);
  /// Erases the last drawing (terminal only) so other output can take its place.
  void erase();
  [[nodiscard]] bool terminal() const { return terminal_; }

 private:
  std::ostream& out_;
  bool terminal_;
  int drawn_lines_ = 0;
};

/// Fixed-point text: fmt(3.14159, 1) == "3.1".
std::string fmt(double v, int decimals);

}  // namespace ipc::daemon

// ipcctl's names for them.
namespace ipcctl {
using ipc::daemon::fmt;
using ipc::daemon::live_area;
using ipc::daemon::table;
}  // namespace ipcctl
