// ipcctl launch's loss accounting (daemons/ipcctl/loss.hpp): totals from the sequence spans the
// daemons report, across restarts of either side.
#include "loss.hpp"

#include <catch2/catch.hpp>

namespace {

ipcctl::stats line(const char* role, pid_t pid, std::uint64_t records, std::uint64_t session, std::uint64_t first,
                   std::uint64_t seq) {
  ipcctl::stats s;
  s.role = role;
  s.channel = "msgq:t";
  s.pid = pid;
  s.records = records;
  s.session = session;
  s.first_seq = first;
  s.seq = seq;
  return s;
}

}  // namespace

TEST_CASE("launch loss: every record sent and received is exact and clean", "[launch_loss]") {
  ipcctl::role_reports sent, received;
  sent.take(line("producer", 10, 500, 7, 1, 500));
  received.take(line("consumer", 11, 200, 7, 1, 200));
  received.take(line("consumer", 11, 500, 7, 1, 500));  // the same process, later: replaces its line
  const auto t = ipcctl::account(sent, received, {.final = true});
  CHECK(t.sent == 500);
  CHECK(t.received == 500);
  CHECK(t.lost == 0);
  CHECK(t.dup == 0);
  CHECK(t.unverified.empty());
  CHECK_FALSE(ipcctl::consumer_behind(sent, received));
}

TEST_CASE("launch loss: a gap between two consumers is lost, an overlap duplicated", "[launch_loss]") {
  ipcctl::role_reports sent, received;
  sent.take(line("producer", 10, 1000, 7, 1, 1000));
  received.take(line("consumer", 11, 300, 7, 1, 300));    // killed after its last line at 300
  received.take(line("consumer", 12, 650, 7, 351, 1000));  // the replacement started at 351
  auto t = ipcctl::account(sent, received, {.final = true});
  CHECK(t.lost == 50);  // 301..350
  CHECK(t.dup == 0);
  CHECK(t.sent + t.dup == t.received + t.lost);

  ipcctl::role_reports overlap;
  overlap.take(line("consumer", 11, 300, 7, 1, 300));
  overlap.take(line("consumer", 12, 720, 7, 281, 1000));  // 281..300 delivered twice
  t = ipcctl::account(sent, overlap, {.final = true});
  CHECK(t.lost == 0);
  CHECK(t.dup == 20);
  CHECK(t.sent + t.dup == t.received + t.lost);
}

TEST_CASE("launch loss: a shortfall is in flight while running and lost after the drain", "[launch_loss]") {
  ipcctl::role_reports sent, received;
  sent.take(line("producer", 10, 100, 7, 1, 100));
  received.take(line("consumer", 11, 90, 7, 1, 90));
  CHECK(ipcctl::account(sent, received, {.final = false}).lost == 0);
  CHECK(ipcctl::account(sent, received, {.final = true}).lost == 10);
  CHECK(ipcctl::consumer_behind(sent, received));
}

TEST_CASE("launch loss: a restarted producer is a new session; a dead one leaves the figures unverified", "[launch_loss]") {
  ipcctl::role_reports sent, received;
  sent.take(line("producer", 10, 100, 7, 1, 100));
  sent.take(line("producer", 20, 50, 8, 1, 50));
  received.take(line("consumer", 11, 150, 8, 1, 50));
  received.procs.back().sessions[7] = {1, 100};  // the consumer saw both sessions
  auto t = ipcctl::account(sent, received, {.final = true, .process_restarts = 1});
  CHECK(t.sent == 150);
  CHECK(t.lost == 0);
  CHECK(t.restarts == 1);
  CHECK(t.unverified.empty());
  CHECK_FALSE(ipcctl::account(sent, received, {.final = true, .producer_died = true}).unverified.empty());
}
