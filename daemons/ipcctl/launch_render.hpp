// ipcctl launch's rendering: the live table, the progress lines when stdout is not a terminal, and
// the summary with the exit status it implies. Pure functions of what supervision collected.
#pragma once

#include "loss.hpp"

#include <string>
#include <vector>

namespace ipcctl {

/// What one pair looks like to the renderer.
struct pair_view {
  std::string uri;
  const role_reports* sent = nullptr;
  const role_reports* received = nullptr;
  pair_totals totals;
  std::string state;                 ///< "running", "restarting", "done", "failed", "exit 3", "killed(KILL)", "a/b"
  int consumer_exit_code = -1;       ///< the (last) consumer's exit code, -1 when none or killed
  std::vector<std::string> gave_up;  ///< roles given up ("producer", "consumer")
};

/// The table: one row per pair (and a total row in a summary of several). `elapsed` in seconds.
std::string render_table(const std::vector<pair_view>& pairs, bool summary, double elapsed);
/// One "t=1.0s URI sent=… state=…" line per pair (stdout is not a terminal).
std::string render_progress(const std::vector<pair_view>& pairs, double elapsed);

struct summary {
  std::string text;  ///< the table and the verdict lines
  int exit_code = 0;  ///< 0 ok, 1 failure (no record moved, unverified, a daemon given up), 3 loss
};
/// The summary of a run of `elapsed` seconds with `size`-byte records.
summary render_summary(const std::vector<pair_view>& pairs, double elapsed, std::size_t size);

}  // namespace ipcctl
