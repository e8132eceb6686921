// A small command-line parser for the daemons: `--flag value`, `--flag=value`, boolean
// flags, repeatable options, `--help` and `--version`, and a generated help text.
//
//   option_parser p("ipc-consumer", "--channel URI [options]", {
//       {"channel", true, false, "URI", "channel to read"},
//       {"count", true, false, "N", "exit after N records (0: run until SIGTERM)"}});
//   auto r = p.parse(argc, argv);
//   if (!r.error.empty()) { std::cerr << r.error; return 2; }
//   auto n = parse_count(r.value("count").value_or("0"), "count");
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace ipc::daemon {

struct option_spec {
  std::string name;         ///< without the leading "--"
  bool takes_value = true;  ///< false: a boolean flag
  bool repeatable = false;  ///< may be given more than once
  std::string value_name;   ///< shown in --help, e.g. "URI"
  std::string help;
};

struct parsed_options {
  std::map<std::string, std::vector<std::string>, std::less<>> values;
  bool help = false;
  bool version = false;
  std::string error;  ///< non-empty: a usage error, already phrased for the user

  /// The (last) value of an option, if given.
  [[nodiscard]] std::optional<std::string> value(std::string_view name) const;
  /// Every value of a repeatable option, in order.
  [[nodiscard]] std::vector<std::string> all(std::string_view name) const;
  [[nodiscard]] bool has(std::string_view name) const { return values.find(name) != values.end(); }
};

class option_parser {
 public:
  option_parser(std::string program, std::string synopsis, std::vector<option_spec> specs);
  /// Parses argv[1..]; never throws for bad input (sets .error). Positional arguments are errors.
  [[nodiscard]] parsed_options parse(int argc, const char* const* argv) const;
  /// The --help text.
  [[nodiscard]] std::string help() const;

 private:
  std::string program_;
  std::string synopsis_;
  std::vector<option_spec> specs_;
};

/// Parses a non-negative decimal integer; on failure sets `error` naming the option.
std::optional<std::uint64_t> parse_unsigned(std::string_view text, std::string_view option, std::string& error);
/// Parses a non-negative decimal number (e.g. 0.5); on failure sets `error` naming the option.
std::optional<double> parse_seconds(std::string_view text, std::string_view option, std::string& error);

}  // namespace ipc::daemon
