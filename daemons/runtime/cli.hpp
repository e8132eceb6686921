// The command-line conventions every program of the toolkit shares, over CLI11: one size parser
// (overflow-safe, K/M/G suffixes), number options checked against their range, --version from the
// one generated version, and one mapping of parse outcomes to exit statuses (usage error: 2).
//
//   CLI::App app{"Receives and checks records", "ipc-consumer"};
//   ipc::daemon::add_common(app);                                    // -V, --version
//   std::uint64_t size = 64;
//   ipc::daemon::add_size(app, "--size", size, 0, 16 << 20, "payload bytes");
//   if (auto rc = ipc::daemon::parse(app, argc, argv)) return *rc;     // --help: 0; usage error: 2
#pragma once

#include <CLI/CLI.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace ipc::daemon {

/// Parses a size: decimal digits with an optional K, M or G suffix (powers of 1024, either case).
/// std::nullopt for anything else, including a value that does not fit in 64 bits (no wrap-around).
std::optional<std::uint64_t> parse_size(std::string_view text) noexcept;

/// How a program reports usage errors on stderr: plain text, or with the sd-daemon "<3>" priority
/// prefix every daemon log line carries.
enum class error_style { plain, daemon };

/// Adds -V/--version (the generated version text) to app and sets how usage errors are printed.
void add_common(CLI::App& app, error_style style = error_style::plain);

/// A size option (parse_size) in [min, max]; outside it is a usage error naming the option.
CLI::Option* add_size(CLI::App& app, const std::string& name, std::uint64_t& into, std::uint64_t min,
                      std::uint64_t max, const std::string& help);
/// A plain non-negative integer option (no suffix) in [min, max].
CLI::Option* add_count(CLI::App& app, const std::string& name, std::uint64_t& into, std::uint64_t min,
                       std::uint64_t max, const std::string& help);
/// A number of seconds (decimal, e.g. 0.5) in [min, max].
CLI::Option* add_seconds(CLI::App& app, const std::string& name, double& into, double min, double max,
                         const std::string& help);

/// Parses argv into app. std::nullopt: go on. Otherwise the program's exit status: 0 after --help
/// or --version (printed on stdout), 2 after a usage error (printed on stderr with a hint).
std::optional<int> parse(CLI::App& app, int argc, const char* const* argv);

/// Reports a usage error found after parsing (a combination of options) the way parse() does; returns 2.
int usage_error(const CLI::App& app, std::string_view message);

}  // namespace ipc::daemon
