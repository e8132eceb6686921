// ipc::pipe_pair<T>: Python's Pipe() — a duplex typed connection between a process and its fork.
#include <ipc/error.hpp>
#include <ipc/pipe_pair.hpp>
#include <ipc/process.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <string>
#include <vector>

using namespace std::chrono_literals;
using Catch::Contains;

TEST_CASE("pipe_pair: parent and child talk both ways over one pair", "[pipe_pair]") {
  auto [parent_end, child_end] = ipc::pipe_pair<std::vector<std::string>>();
  auto child = ipc::process::fork([&parent_end = parent_end, &child_end = child_end] {
    parent_end.close();
    auto words = child_end.recv();
    words.push_back("back");
    child_end.send(words);
    return 0;
  });
  child_end.close();
  parent_end.send({"there", "and"});
  auto reply = parent_end.recv_for(20s);
  REQUIRE(reply.has_value());
  CHECK(*reply == std::vector<std::string>{"there", "and", "back"});
  // The child has exited: its end is closed everywhere, so recv reports the end.
  REQUIRE(child.join_for(10s).value_or(ipc::exit_status{}).success());
  try {
    (void)parent_end.recv_for(5s);
    FAIL("recv after the other end closed must throw");
  } catch (const std::system_error& e) {
    CHECK(e.code() == ipc::errc::closed);
  }
  CHECK_THROWS_AS(parent_end.send({"nobody"}), std::system_error);  // never SIGPIPE
}

TEST_CASE("pipe_pair: recv_for times out, poll says when a value waits, a closed end refuses", "[pipe_pair]") {
  auto [a, b] = ipc::pipe_pair<int>();
  CHECK_FALSE(a.recv_for(30ms).has_value());
  CHECK_FALSE(a.poll());
  b.send(5);
  CHECK(a.readable_within(5s));
  CHECK(a.recv() == 5);
  a.close();
  CHECK_THROWS_WITH(a.send(1), Contains("closed"));
}
