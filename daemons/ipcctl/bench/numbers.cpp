#include "numbers.hpp"

#include "table.hpp"

namespace ipc::bench {

std::string rate_label(double v) {
  if (v >= 1e6) return daemon::fmt(v / 1e6, 2) + " M";
  if (v >= 1e3) return daemon::fmt(v / 1e3, 1) + " k";
  return daemon::fmt(v, 0);
}

std::string times(const std::optional<double>& v) {
  if (!v) return {};
  return daemon::fmt(*v, *v < 0.1 ? 3 : 2) + "×";
}

}  // namespace ipc::bench
