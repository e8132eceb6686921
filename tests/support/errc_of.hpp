// The ipc::errc an expression throws, for tests that check which toolkit error a call raised:
//
//   CHECK(ipc::test::errc_of([&] { tx.send(too_big); }) == ipc::errc::message_too_large);
//
// Another std::system_error, or no exception at all, fails the test (Catch FAIL: never in a forked child).
#pragma once

#include <ipc/error.hpp>

#include <catch2/catch.hpp>

#include <system_error>

namespace ipc::test {

template <typename F>
ipc::errc errc_of(F&& f) {
  try {
    f();
  } catch (const std::system_error& e) {
    if (e.code().category() == ipc::category()) return static_cast<ipc::errc>(e.code().value());
    FAIL("unexpected system error: " << e.what());
  }
  FAIL("no exception");
  return ipc::errc{};
}

}  // namespace ipc::test
