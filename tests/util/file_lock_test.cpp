// FileLock: one holder at a time per file; a second waits (told once) until the first lets go, or gives
// up when cancelled; a file that cannot be opened is an error naming it.
#include "util/file_lock.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "support/test_env.h"
#include "util/error.h"

namespace cortex {
namespace {

TEST(FileLockTest, ASecondHolderWaitsUntilTheFirstLetsGo) {
  const std::string path = testing::make_temp_dir("lock") + "/entry.lock";
  auto first = std::make_unique<FileLock>(path);
  std::atomic<int> told{0};
  std::atomic<bool> second_holds{false};
  std::thread second([&] {
    FileLock lock(path, [&] { ++told; });
    second_holds = true;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(350));
  EXPECT_FALSE(second_holds.load());
  first.reset();
  second.join();
  EXPECT_TRUE(second_holds.load());
  EXPECT_EQ(told.load(), 1);  // told once, though it polled several times
  FileLock again(path);       // free once the second is gone
}

TEST(FileLockTest, WaitingEndsWhenCancelled) {
  const std::string path = testing::make_temp_dir("lock") + "/entry.lock";
  FileLock first(path);
  std::atomic<bool> cancel{false};
  std::thread canceller([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(150));
    cancel = true;
  });
  try {
    FileLock second(path, {}, &cancel);
    ADD_FAILURE() << "took a lock another holder has";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("cancelled"), std::string::npos) << e.what();
  }
  canceller.join();
}

TEST(FileLockTest, AFileThatCannotBeOpenedIsNamed) {
  const std::string path = testing::make_temp_dir("lock") + "/no-such-folder/entry.lock";
  try {
    FileLock lock(path);
    ADD_FAILURE() << "locked a file in a folder that does not exist";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace cortex
