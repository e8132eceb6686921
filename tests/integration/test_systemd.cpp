// The systemd units, tmpfiles.d and sysusers.d entries, checked by systemd's own tools:
// systemd-analyze verify (any output is a failure: it exits 0 on warnings), systemd-analyze
// security --offline (hardening exposure), systemd-sysusers / systemd-tmpfiles into a --root.
// The verified units are the build tree's copies (build/systemd/verify/), configured from the same
// templates as the installed ones with @bindir@ = build/daemons, because verify checks that every
// ExecStart program exists and is executable.
#include <catch2/catch.hpp>

#include "ipcctl_test_paths.hpp"
#include "test_support.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

std::string find_tool(const std::string& name) {
  for (const char* dir : {"/usr/bin", "/bin", "/usr/sbin", "/sbin"}) {
    fs::path p = fs::path(dir) / name;
    if (::access(p.c_str(), X_OK) == 0) return p.string();
  }
  return {};
}

struct temp_dir {
  fs::path path;
  temp_dir() {
    std::string t = (fs::temp_directory_path() / "ipc-systemd-XXXXXX").string();
    REQUIRE(::mkdtemp(t.data()) != nullptr);
    path = t;
  }
  ~temp_dir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

// A unit directory as it would be installed: the two templates, ipc.target and the pipe drop-ins.
void stage_units(const fs::path& dir) {
  for (const char* u : {"ipc-producer@.service", "ipc-consumer@.service", "ipc-bridge@.service"}) {
    fs::copy_file(fs::path(IPC_SYSTEMD_VERIFY_DIR) / u, dir / u);
  }
  fs::copy_file(fs::path(IPC_SYSTEMD_SOURCE_DIR) / "ipc.target", dir / "ipc.target");
  for (const char* d : {"ipc-producer@pipe.service.d", "ipc-consumer@pipe.service.d"}) {
    fs::create_directory(dir / d);
    fs::copy_file(fs::path(IPC_SYSTEMD_SOURCE_DIR) / d / "pipe.conf", dir / d / "pipe.conf");
  }
}

std::vector<std::string> every_unit(const fs::path& dir) {
  std::vector<std::string> units{(dir / "ipc.target").string(), (dir / "ipc-producer@.service").string(),
                                 (dir / "ipc-consumer@.service").string(), (dir / "ipc-bridge@.service").string(),
                                 (dir / "ipc-bridge@demo.service").string()};
  for (const char* kind : {"pipe", "fifo", "msgq", "sem", "shm"}) {
    units.push_back((dir / (std::string("ipc-producer@") + kind + ".service")).string());
    units.push_back((dir / (std::string("ipc-consumer@") + kind + ".service")).string());
  }
  return units;
}

ipc::test::child_result verify(const fs::path& dir) {
  std::vector<std::string> argv{find_tool("systemd-analyze"), "verify", "--man=no"};
  for (auto& u : every_unit(dir)) argv.push_back(u);
  return ipc::test::spawn(argv, {"SYSTEMD_LOG_COLOR=0"}).wait(60s);
}

}  // namespace

TEST_CASE("systemd: every unit and instance verifies without a single message", "[systemd]") {
  REQUIRE(fs::exists(ipc::test::build_path("daemons/ipc-producer")));
  REQUIRE(fs::exists(ipc::test::build_path("daemons/ipc-consumer")));
  temp_dir t;
  stage_units(t.path);
  auto r = verify(t.path);
  INFO(r.report);
  CHECK_FALSE(r.timed_out);
  CHECK(r.exit_code == 0);
  CHECK(r.report.empty());
}

TEST_CASE("systemd: verify does report a broken drop-in, so silence means something", "[systemd]") {
  temp_dir t;
  stage_units(t.path);
  {
    std::ofstream out(t.path / "ipc-producer@pipe.service.d" / "pipe.conf", std::ios::app);
    out << "NoSuchSetting=yes\n";
  }
  auto r = verify(t.path);
  CHECK(r.report.find("NoSuchSetting") != std::string::npos);
}

TEST_CASE("systemd: the installed units point at the configured bindir and keep IPC objects", "[systemd]") {
  const fs::path installed = fs::path(IPC_SYSTEMD_VERIFY_DIR).parent_path();
  for (const char* u : {"ipc-producer@.service", "ipc-consumer@.service"}) {
    std::ifstream in(installed / u);
    REQUIRE(in);
    std::stringstream text;
    text << in.rdbuf();
    const std::string s = text.str();
    INFO(u);
    CHECK(s.find("@bindir@") == std::string::npos);
    CHECK(s.find("\nExecStart=/") != std::string::npos);
    CHECK(s.find("\nType=notify\n") != std::string::npos);
    CHECK(s.find("\nRemoveIPC=no\n") != std::string::npos);
    CHECK(s.find("\nRuntimeDirectoryPreserve=yes\n") != std::string::npos);
    CHECK(s.find("\nDynamicUser=") == std::string::npos);
  }
}

TEST_CASE("systemd: hardening keeps the exposure level at 2.0 or below", "[systemd]") {
  REQUIRE(fs::exists(ipc::test::build_path("daemons/ipc-producer")));
  temp_dir t;
  stage_units(t.path);
  for (const char* unit : {"ipc-producer@msgq.service", "ipc-consumer@msgq.service", "ipc-producer@pipe.service"}) {
    // --threshold counts tenths: 20 is an exposure of 2.0 ("OK" on systemd's scale).
    auto r = ipc::test::spawn({find_tool("systemd-analyze"), "security", "--offline=yes", "--threshold=20",
                               "--no-pager", (t.path / unit).string()},
                              {"SYSTEMD_LOG_COLOR=0", "SYSTEMD_COLORS=0"})
                 .wait(60s);
    INFO(unit << "\n" << r.report);
    CHECK(r.exit_code == 0);
    CHECK(r.report.find("Overall exposure level") != std::string::npos);
  }
}

TEST_CASE("systemd: sysusers makes the ipc user and tmpfiles makes /run/ipc 0770 ipc:ipc", "[systemd]") {
  const auto sysusers = find_tool("systemd-sysusers");
  const auto tmpfiles = find_tool("systemd-tmpfiles");
  REQUIRE(!sysusers.empty());
  REQUIRE(!tmpfiles.empty());
  temp_dir root;
  fs::create_directory(root.path / "etc");
  auto u = ipc::test::spawn({sysusers, "--root=" + root.path.string(),
                             (fs::path(IPC_SYSTEMD_SOURCE_DIR) / "sysusers-ipc.conf").string()})
               .wait(60s);
  INFO(u.report);
  REQUIRE(u.exit_code == 0);
  std::ifstream passwd(root.path / "etc" / "passwd");
  std::string line, ipc_line;
  while (std::getline(passwd, line)) {
    if (line.starts_with("ipc:")) ipc_line = line;
  }
  REQUIRE(!ipc_line.empty());
  // ipc:x:UID:GID:…
  std::vector<std::string> f;
  std::stringstream ss(ipc_line);
  for (std::string x; std::getline(ss, x, ':');) f.push_back(x);
  REQUIRE(f.size() >= 4);
  const auto uid = static_cast<uid_t>(std::stoul(f[2]));
  const auto gid = static_cast<gid_t>(std::stoul(f[3]));
  CHECK(uid < 1000);  // a system user

  auto t = ipc::test::spawn({tmpfiles, "--root=" + root.path.string(), "--create",
                             (fs::path(IPC_SYSTEMD_SOURCE_DIR) / "tmpfiles-ipc.conf").string()})
               .wait(60s);
  INFO(t.report);
  REQUIRE(t.exit_code == 0);
  CHECK(t.report.empty());
  struct stat st {};
  REQUIRE(::lstat((root.path / "run" / "ipc").c_str(), &st) == 0);
  CHECK(S_ISDIR(st.st_mode));
  CHECK((st.st_mode & 07777) == 0770);
  CHECK(st.st_uid == uid);
  CHECK(st.st_gid == gid);
}
