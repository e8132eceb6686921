// `ipcctl list` and `ipcctl gc`: the toolkit's objects shown with what they hold and gc's verdict,
// and gc itself (rules in objects.hpp and docs/ipcctl.md). Option parsing is the caller's.
//
//   ipcctl::list_options o;  o.columns = {"kind", "name", "contents", "gc"};  o.json = true;
//   return ipcctl::run_list(o, std::cout);
#pragma once

#include <ostream>
#include <string>
#include <vector>

namespace ipcctl {

struct list_options {
  bool json = false;        ///< one JSON document: {"objects": [{column: value, ...}, ...]}
  bool noheadings = false;  ///< no header line
  bool raw = false;         ///< columns separated by one space, no padding; spaces and \ escaped as \x20, \x5c
  std::vector<std::string> columns;  ///< empty: the default columns; names as in list_columns()
  bool all_segments = false;         ///< every /dev/shm/libipc.* on the machine, not only this user's
};

/// Every column `list --output` accepts (the default shows them all, in this order).
const std::vector<std::string>& list_columns();

/// Prints the objects. Returns the exit status (0). Throws std::invalid_argument for an unknown
/// column (a usage error), std::system_error when the runtime directory cannot be read.
int run_list(const list_options& o, std::ostream& out);

struct gc_options {
  bool dry_run = false;       ///< print every verdict and its reason, remove nothing
  bool force = false;         ///< also remove abandoned objects that hold data
  std::string prefix;         ///< only objects whose name starts with this
  bool all_segments = false;  ///< as for list
};

/// Removes what gc's rules allow and prints one line per object ("removed ...", "kept ...: reason";
/// with dry_run "would remove ..."). Returns 0, or 1 when a removal failed (reported on err).
int run_gc(const gc_options& o, std::ostream& out, std::ostream& err);

}  // namespace ipcctl
