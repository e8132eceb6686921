#include "object_commands.hpp"

#include "objects.hpp"
#include "status.hpp"
#include "table.hpp"

#include <ipc/inspect.hpp>
#include <ipc/uri.hpp>

#include <nlohmann/json.hpp>

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <functional>
#include <map>
#include <stdexcept>

namespace ipcctl {
namespace {

struct row_source {
  const object_info& o;
  const verdict& v;
};

struct column {
  std::string name;
  bool right;                                              // right-aligned in the table
  std::function<std::string(const row_source&)> text;      // table and raw cell
  std::function<nlohmann::ordered_json(const row_source&)> json;   // --json value
};

std::string mode_text(mode_t m) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "%04o", static_cast<unsigned>(m & 07777));
  return buf;
}

std::vector<pid_t> pids_of(const object_info& o) {
  std::vector<pid_t> pids;
  for (const auto& u : o.users) {
    if (std::find(pids.begin(), pids.end(), u.pid) == pids.end()) pids.push_back(u.pid);
  }
  return pids;
}

bool pid_alive_in(const object_info& o, pid_t pid) {
  return std::any_of(o.users.begin(), o.users.end(), [&](const ipc::process_use& u) { return u.pid == pid && u.alive; });
}

template <typename F>
std::string joined(const object_info& o, F&& f) {
  const auto pids = pids_of(o);
  if (pids.empty()) return "-";
  std::string s;
  for (pid_t p : pids) s += (s.empty() ? "" : ",") + f(p);
  return s;
}

std::string dash_if_empty(const std::string& s) { return s.empty() ? "-" : s; }

const std::vector<column>& all_columns() {
  using json = nlohmann::ordered_json;
  static const std::vector<column> cols = {
      {"kind", false, [](const row_source& r) { return r.o.kind; }, [](const row_source& r) { return json(r.o.kind); }},
      {"name", false, [](const row_source& r) { return r.o.name; }, [](const row_source& r) { return json(r.o.name); }},
      {"family", false, [](const row_source& r) { return r.o.family; },
       [](const row_source& r) { return json(r.o.family); }},
      {"layout", false, [](const row_source& r) { return dash_if_empty(r.o.layout); },
       [](const row_source& r) { return r.o.layout.empty() ? json(nullptr) : json(r.o.layout); }},
      {"key", false, [](const row_source& r) { return dash_if_empty(r.o.key); },
       [](const row_source& r) { return r.o.key.empty() ? json(nullptr) : json(r.o.key); }},
      {"id", true, [](const row_source& r) { return r.o.id < 0 ? std::string("-") : std::to_string(r.o.id); },
       [](const row_source& r) { return r.o.id < 0 ? json(nullptr) : json(r.o.id); }},
      {"owner", false, [](const row_source& r) { return user_name(r.o.uid); },
       [](const row_source& r) { return json(user_name(r.o.uid)); }},
      {"perms", false, [](const row_source& r) { return mode_text(r.o.mode); },
       [](const row_source& r) { return json(mode_text(r.o.mode)); }},
      {"pids", true, [](const row_source& r) { return joined(r.o, [](pid_t p) { return std::to_string(p); }); },
       [](const row_source& r) {
         json a = json::array();
         for (const auto& u : r.o.users) a.push_back({{"pid", u.pid}, {"how", u.how}, {"alive", u.alive}, {"current", u.current}});
         return a;
       }},
      {"alive", false,
       [](const row_source& r) {
         return joined(r.o, [&](pid_t p) { return std::string(pid_alive_in(r.o, p) ? "yes" : "no"); });
       },
       [](const row_source& r) {
         return json(std::any_of(r.o.users.begin(), r.o.users.end(), [](const ipc::process_use& u) { return u.alive; }));
       }},
      {"attached", true,
       [](const row_source& r) { return r.o.attached < 0 ? std::string("-") : std::to_string(r.o.attached); },
       [](const row_source& r) { return r.o.attached < 0 ? json(nullptr) : json(r.o.attached); }},
      {"status", false, [](const row_source& r) { return std::string(r.o.removed ? "dest" : "-"); },
       [](const row_source& r) { return json(r.o.removed ? "dest" : ""); }},
      {"size", true, [](const row_source& r) { return std::to_string(r.o.size); },
       [](const row_source& r) { return json(r.o.size); }},
      {"contents", false, [](const row_source& r) { return contents_text(r.o); },
       [](const row_source& r) {
         const auto& c = r.o.contents;
         if (!c.known) return json(nullptr);
         json j{{"messages", c.messages}, {"bytes", c.bytes}, {"value", c.is_value}};
         if (c.subscribers >= 0) j["subscribers"] = c.subscribers;  // broadcast: messages = the oldest unread backlog
         return j;
       }},
      {"age", true, [](const row_source& r) { return std::to_string(r.o.age_seconds); },
       [](const row_source& r) { return json(r.o.age_seconds); }},
      {"gc", false, [](const row_source& r) { return std::string(verdict_word(r.v.kind)); },
       [](const row_source& r) { return json(std::string(verdict_word(r.v.kind))); }},
      {"reason", false, [](const row_source& r) { return r.v.reason; }, [](const row_source& r) { return json(r.v.reason); }},
  };
  return cols;
}

const std::vector<std::string> default_columns = {"kind",     "name",  "family",   "layout", "key",    "id",
                                                  "owner",    "perms", "pids",     "alive",  "attached", "status",
                                                  "size",     "contents", "age",   "gc",     "reason"};

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
  return s;
}

std::string describe(const object_info& o) {
  std::string s = o.kind + " " + o.family + ":" + o.name;
  if (!o.key.empty()) {
    s += " (key " + o.key + ", id " + std::to_string(o.id) + ")";
  } else {
    s += " (" + o.path.string() + ")";
  }
  return s;
}

}  // namespace

const std::vector<std::string>& list_columns() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> v;
    for (const auto& c : all_columns()) v.push_back(c.name);
    return v;
  }();
  return names;
}

int run_list(const list_options& o, std::ostream& out) {
  std::vector<const column*> chosen;
  for (const auto& want : o.columns.empty() ? default_columns : o.columns) {
    const auto& cols = all_columns();
    auto it = std::find_if(cols.begin(), cols.end(), [&](const column& c) { return c.name == lower(want); });
    if (it == cols.end()) {
      std::string known;
      for (const auto& c : cols) known += (known.empty() ? "" : ",") + c.name;
      throw std::invalid_argument("list --output: unknown column '" + want + "' (columns: " + known + ")");
    }
    chosen.push_back(&*it);
  }
  const auto dir = ipc::runtime_dir();
  ipc::list_options lo;
  lo.runtime_dir = dir;
  lo.all_segments = o.all_segments;
  const auto objs = ipc::list_objects(lo);
  const auto claims = daemon_claims(read_status(dir));
  // judge_all keeps a key file's System V objects together; each object shows its group's verdict.
  const auto groups = judge_all(objs, claims);
  std::vector<row_source> rows;
  for (const auto& g : groups) {
    for (const auto& obj : g.objects) rows.push_back({obj, g.why});
  }

  if (o.json) {
    nlohmann::ordered_json doc = {{"objects", nlohmann::ordered_json::array()}};
    for (const auto& r : rows) {
      nlohmann::ordered_json row = nlohmann::ordered_json::object();
      for (const auto* c : chosen) row[c->name] = c->json(r);
      doc["objects"].push_back(std::move(row));
    }
    out << doc.dump(2) << '\n';
    return 0;
  }
  if (rows.empty() && !o.noheadings && !o.raw) {
    out << "no toolkit objects in " << dir.string() << " or /dev/shm/libipc.*\n";
    return 0;
  }
  std::vector<std::string> head;
  std::vector<bool> right;
  for (const auto* c : chosen) {
    head.push_back(c->name);
    right.push_back(c->right);
  }
  table t(head, right);
  for (const auto& r : rows) {
    std::vector<std::string> cells;
    for (const auto* c : chosen) cells.push_back(c->text(r));
    t.add(std::move(cells));
  }
  out << (o.raw ? t.render_raw(!o.noheadings) : t.render(!o.noheadings));
  return 0;
}

int run_gc(const gc_options& o, std::ostream& out, std::ostream& err) {
  const auto dir = ipc::runtime_dir();
  ipc::list_options lo;
  lo.runtime_dir = dir;
  lo.all_segments = o.all_segments;
  const auto status = read_status(dir);
  const auto groups = judge_all(ipc::list_objects(lo), daemon_claims(status));
  int rc = 0;
  std::size_t removed = 0;
  for (const auto& g : groups) {
    if (!g.objects.front().name.starts_with(o.prefix)) continue;
    const bool go = gc_removes(g, o.force);
    if (!go) {
      // Kept: say why for what gc might have been expected to take (and everything under --dry-run).
      if (o.dry_run || g.why.kind != verdict_kind::in_use) {
        for (const auto& obj : g.objects) {
          out << (o.dry_run ? "would keep " : "kept ") << describe(obj) << ": " << g.why.reason
              << (g.why.kind == verdict_kind::holds_data ? " (gc --force removes it)" : "") << '\n';
        }
      }
      continue;
    }
    try {
      if (!o.dry_run) remove_group(g.objects);
      for (const auto& obj : g.objects) {
        out << (o.dry_run ? "would remove " : "removed ") << describe(obj) << ": " << g.why.reason << '\n';
      }
      removed += g.objects.size();
    } catch (const std::exception& e) {
      err << "ipcctl gc: " << e.what() << '\n';
      rc = 1;
    }
  }
  for (const auto& e : status) {
    if (e.alive || (e.figures && !e.figures->channel.substr(e.figures->channel.find(':') + 1).starts_with(o.prefix))) {
      continue;
    }
    if (!o.dry_run && ::unlink(e.file.c_str()) != 0 && errno != ENOENT) {
      err << "ipcctl gc: unlink(" << e.file.string() << "): " << std::strerror(errno) << '\n';
      rc = 1;
      continue;
    }
    out << (o.dry_run ? "would remove " : "removed ") << "status file " << e.file.string() << " (daemon not running)\n";
    ++removed;
  }
  if (removed == 0) out << "nothing to collect\n";
  return rc;
}

}  // namespace ipcctl
