// Internal to the benchmark: how its tables write figures, one way for every section.
//
//   rate_label(7.68e6) == "7.68 M";  times(0.5) == "0.50×";  times(std::nullopt) == ""
#pragma once

#include <optional>
#include <string>

namespace ipc::bench {

/// Messages per second, short: "512", "12.3 k", "7.68 M".
std::string rate_label(double v);
/// A ratio: "0.50×" ("0.044×" below 0.1); "" when there is none.
std::string times(const std::optional<double>& v);

}  // namespace ipc::bench
