#include "table.hpp"

#include <algorithm>
#include <cstdio>

namespace ipc::daemon {
namespace {

// Display columns of UTF-8 text: code points (no wide characters in our tables).
std::size_t columns(const std::string& s) {
  std::size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0U) != 0x80U ? 1 : 0;
  return n;
}

}  // namespace

table::table(std::vector<std::string> headers, std::vector<bool> right_aligned)
    : headers_(std::move(headers)), right_(std::move(right_aligned)) {
  right_.resize(headers_.size(), false);
}

void table::add(std::vector<std::string> row) {
  row.resize(headers_.size());
  rows_.push_back(std::move(row));
}

std::string table::render() const {
  std::vector<std::size_t> width(headers_.size());
  for (std::size_t c = 0; c < headers_.size(); ++c) width[c] = columns(headers_[c]);
  for (const auto& r : rows_) {
    for (std::size_t c = 0; c < r.size(); ++c) width[c] = std::max(width[c], columns(r[c]));
  }
  std::string out;
  auto line = [&](const std::vector<std::string>& cells) {
    std::string l;
    for (std::size_t c = 0; c < cells.size(); ++c) {
      std::string pad(width[c] - columns(cells[c]), ' ');
      if (c > 0) l += "  ";
      l += right_[c] ? pad + cells[c] : cells[c] + pad;
    }
    while (!l.empty() && l.back() == ' ') l.pop_back();
    out += l + "\n";
  };
  line(headers_);
  for (const auto& r : rows_) line(r);
  return out;
}

void live_area::erase() {
  if (terminal_ && drawn_lines_ > 0) {
    // Cursor up over the previous drawing, then clear to the end of the screen.
    out_ << "\x1b[" << drawn_lines_ << "F\x1b[J";
  }
  drawn_lines_ = 0;
  out_.flush();
}

void live_area::show(const std::string& text) {
  erase();
  out_ << text;
  out_.flush();
  drawn_lines_ = static_cast<int>(std::count(text.begin(), text.end(), '\n'));
}

std::string fmt(double v, int decimals) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  return buf;
}

}  // namespace ipc::daemon
