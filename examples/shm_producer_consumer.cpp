// Tutorial: the bounded buffer — shared memory plus two counting semaphores, empty (free slots)
// and full (filled slots), written the obvious way. The producer process exits as soon as it has
// written its last record; because counting posts are not undone (the default), the consumer
// still receives every record.
#include <ipc/process.hpp>
#include <ipc/semaphore.hpp>
#include <ipc/shared_value.hpp>

#include <cstdio>

int main() {
  constexpr unsigned short slots = 4, empty = 0, full = 1;
  constexpr int records = 10;
  ipc::semaphore_set sems("tutorial-buffer", ipc::open_mode::create_only, {slots, 0});
  ipc::shared_array<int> buffer("tutorial-buffer", slots, ipc::open_mode::create_only, 0, {.with_lock = false});

  auto producer = ipc::process::fork([&] {
    for (int i = 1; i <= records; ++i) {
      sems.wait(empty);               // a free slot
      buffer[i % slots] = i * i;
      sems.post(full);                // one more record: no undo, it must outlive this process
    }
    return 0;
  });
  auto consumer = ipc::process::fork([&] {
    int sum = 0;
    for (int i = 1; i <= records; ++i) {
      if (!sems.wait_for(full, std::chrono::seconds(10))) {
        std::printf("consumer: record %d never came\n", i);
        return 1;
      }
      int value = buffer[i % slots];
      sems.post(empty);
      std::printf("consumer got record %d: %d\n", i, value);
      sum += value;
    }
    std::printf("consumer: all %d records, sum %d\n", records, sum);
    return 0;
  });
  const auto produced = producer.join();
  const auto how = consumer.join();  // joined first, so its lines come before ours
  std::printf("producer %s, consumer %s\n", produced.to_string().c_str(), how.to_string().c_str());
  sems.remove();
  buffer.remove();
  return how.success() ? 0 : 1;
}
