// The one Catch2 main. Each test process gets its own runtime directory so
// names never collide between the suites meson runs in parallel.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <cstdlib>
#include <filesystem>
#include <string>

int main(int argc, char* argv[]) {
  char dir[] = "/tmp/ipc-test-XXXXXX";
  if (::mkdtemp(dir) == nullptr) return 2;
  ::setenv("IPC_RUNTIME_DIR", dir, 1);
  int rc = Catch::Session().run(argc, argv);
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  return rc;
}
