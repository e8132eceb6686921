#include "options.hpp"

#include <cerrno>
#include <cmath>
#include <cstdlib>

namespace ipc::daemon {

std::optional<std::string> parsed_options::value(std::string_view name) const {
  auto it = values.find(name);
  if (it == values.end() || it->second.empty()) return std::nullopt;
  return it->second.back();
}

std::vector<std::string> parsed_options::all(std::string_view name) const {
  auto it = values.find(name);
  return it == values.end() ? std::vector<std::string>{} : it->second;
}

option_parser::option_parser(std::string program, std::string synopsis, std::vector<option_spec> specs)
    : program_(std::move(program)), synopsis_(std::move(synopsis)), specs_(std::move(specs)) {}

parsed_options option_parser::parse(int argc, const char* const* argv) const {
  parsed_options r;
  auto fail = [&](const std::string& msg) {
    r.error = program_ + ": " + msg + " (see --help)";
    return r;
  };
  for (int i = 1; i < argc; ++i) {
    std::string_view arg(argv[i]);
    if (arg == "--help" || arg == "-h") {
      r.help = true;
      continue;
    }
    if (arg == "--version") {
      r.version = true;
      continue;
    }
    if (arg.size() < 3 || arg.substr(0, 2) != "--") return fail("unexpected argument '" + std::string(arg) + "'");
    std::string_view body = arg.substr(2);
    std::optional<std::string> inline_value;
    if (auto eq = body.find('='); eq != std::string_view::npos) {
      inline_value = std::string(body.substr(eq + 1));
      body = body.substr(0, eq);
    }
    const option_spec* spec = nullptr;
    for (const auto& s : specs_) {
      if (s.name == body) spec = &s;
    }
    if (spec == nullptr) return fail("unknown option '--" + std::string(body) + "'");
    std::string v;
    if (spec->takes_value) {
      if (inline_value) {
        v = *inline_value;
      } else if (i + 1 < argc) {
        v = argv[++i];
      } else {
        return fail("option '--" + spec->name + "' needs a value (" + spec->value_name + ")");
      }
    } else if (inline_value) {
      return fail("option '--" + spec->name + "' takes no value");
    }
    auto& slot = r.values[spec->name];
    if (!slot.empty() && !spec->repeatable) return fail("option '--" + spec->name + "' given twice");
    slot.push_back(std::move(v));
  }
  return r;
}

std::string option_parser::help() const {
  std::string h = "Usage: " + program_ + " " + synopsis_ + "\n\nOptions:\n";
  for (const auto& s : specs_) {
    std::string left = "  --" + s.name + (s.takes_value ? " " + s.value_name : "");
    if (left.size() < 28) left.resize(28, ' ');
    else left += "\n" + std::string(28, ' ');
    h += left + s.help + (s.repeatable ? " (repeatable)" : "") + "\n";
  }
  h += "  --help                    show this text\n  --version                 print the version\n";
  return h;
}

std::optional<std::uint64_t> parse_unsigned(std::string_view text, std::string_view option, std::string& error) {
  std::string s(text);
  bool digits = !s.empty();
  for (char c : s) digits = digits && c >= '0' && c <= '9';
  errno = 0;
  unsigned long long v = digits ? std::strtoull(s.c_str(), nullptr, 10) : 0;
  if (!digits || errno == ERANGE) {
    error = "option '--" + std::string(option) + "=" + s + "' is not a non-negative integer";
    return std::nullopt;
  }
  return static_cast<std::uint64_t>(v);
}

std::optional<double> parse_seconds(std::string_view text, std::string_view option, std::string& error) {
  std::string s(text);
  char* end = nullptr;
  errno = 0;
  double v = s.empty() ? -1.0 : std::strtod(s.c_str(), &end);
  if (s.empty() || errno != 0 || *end != '\0' || !std::isfinite(v) || v < 0.0 || v > 1e6) {
    error = "option '--" + std::string(option) + "=" + s + "' is not a number of seconds >= 0";
    return std::nullopt;
  }
  return v;
}

}  // namespace ipc::daemon
