#include "cli.hpp"

#include "exit_status.hpp"
#include "ipc_version.hpp"

#include <charconv>
#include <cmath>
#include <iostream>
#include <sstream>

namespace ipc::daemon {

std::optional<std::uint64_t> parse_size(std::string_view text) noexcept {
  std::uint64_t mult = 1;
  if (!text.empty()) {
    switch (text.back()) {
      case 'K': case 'k': mult = std::uint64_t{1} << 10; break;
      case 'M': case 'm': mult = std::uint64_t{1} << 20; break;
      case 'G': case 'g': mult = std::uint64_t{1} << 30; break;
      default: break;
    }
    if (mult != 1) text.remove_suffix(1);
  }
  if (text.empty() || text.front() < '0' || text.front() > '9') return std::nullopt;  // no sign, no space
  std::uint64_t v = 0;
  const auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), v, 10);
  if (ec != std::errc{} || p != text.data() + text.size()) return std::nullopt;  // ERANGE: no wrap-around
  if (v > UINT64_MAX / mult) return std::nullopt;
  return v * mult;
}

namespace {
error_style style_ = error_style::plain;  // one program per process
}  // namespace

void add_common(CLI::App& app, error_style style) {
  style_ = style;
  app.set_version_flag("-V,--version", app.get_name() + " " + version_text);
}

namespace {

std::string range_text(std::uint64_t min, std::uint64_t max) {
  return "[" + std::to_string(min) + ", " + std::to_string(max) + "]";
}

}  // namespace

CLI::Option* add_size(CLI::App& app, const std::string& name, std::uint64_t& into, std::uint64_t min,
                      std::uint64_t max, const std::string& help) {
  auto* o = app.add_option_function<std::string>(
      name,
      [&into, name, min, max](const std::string& text) {
        const auto v = parse_size(text);
        if (!v) throw CLI::ValidationError(name, "'" + text + "' is not a size (digits with an optional K, M or G; at most 2^64-1)");
        if (*v < min || *v > max) throw CLI::ValidationError(name, text + " is outside " + range_text(min, max));
        into = *v;
      },
      help + " (default " + std::to_string(into) + ")");
  o->type_name("SIZE");
  return o;
}

CLI::Option* add_count(CLI::App& app, const std::string& name, std::uint64_t& into, std::uint64_t min,
                       std::uint64_t max, const std::string& help) {
  auto* o = app.add_option_function<std::string>(
      name,
      [&into, name, min, max](const std::string& text) {
        std::uint64_t v = 0;
        const auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), v, 10);
        if (text.empty() || text.front() == '-' || text.front() == '+' || ec != std::errc{} || p != text.data() + text.size()) {
          throw CLI::ValidationError(name, "'" + text + "' is not a non-negative integer below 2^64");
        }
        if (v < min || v > max) throw CLI::ValidationError(name, text + " is outside " + range_text(min, max));
        into = v;
      },
      help + " (default " + std::to_string(into) + ")");
  o->type_name("N");
  return o;
}

CLI::Option* add_seconds(CLI::App& app, const std::string& name, double& into, double min, double max,
                         const std::string& help) {
  auto* o = app.add_option_function<std::string>(
      name,
      [&into, name, min, max](const std::string& text) {
        double v = 0;
        const auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
        if (text.empty() || ec != std::errc{} || p != text.data() + text.size() || !std::isfinite(v)) {
          throw CLI::ValidationError(name, "'" + text + "' is not a number of seconds");
        }
        if (v < min || v > max) {
          std::ostringstream range;
          range << "[" << min << ", " << max << "]";
          throw CLI::ValidationError(name, text + " is outside " + range.str());
        }
        into = v;
      },
      help);
  o->type_name("SEC");
  return o;
}

std::optional<int> parse(CLI::App& app, int argc, const char* const* argv) {
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp&) {
    std::cout << app.help();
    return exit_ok;
  } catch (const CLI::CallForAllHelp&) {
    std::cout << app.help("", CLI::AppFormatMode::All);
    return exit_ok;
  } catch (const CLI::CallForVersion& v) {
    std::cout << v.what() << '\n';
    return exit_ok;
  } catch (const CLI::ParseError& e) {
    return usage_error(app, e.what());
  }
  return std::nullopt;
}

int usage_error(const CLI::App& app, std::string_view message) {
  std::cerr << (style_ == error_style::daemon ? "<3>" : "") << app.get_name() << ": " << message << " (see " << app.get_name() << " --help)\n";
  return exit_usage;
}

}  // namespace ipc::daemon
