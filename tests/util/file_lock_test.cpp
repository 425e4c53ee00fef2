// FileLock: one holder at a time per file; a second waits (told once) until the first lets go, or gives
// up when cancelled; a file that cannot be opened is an error naming it; try_lock never waits; a holder
// may remove the file, and a waiter then holds the file at the path, not the removed one.
#include "util/file_lock.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <filesystem>
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

TEST(FileLockTest, TryLockTakesAFreeLockAndNeverWaits) {
  const std::string path = testing::make_temp_dir("lock") + "/entry.lock";
  auto first = FileLock::try_lock(path);
  ASSERT_NE(first, nullptr);
  const auto started = std::chrono::steady_clock::now();
  EXPECT_EQ(FileLock::try_lock(path), nullptr);
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::milliseconds(50));
  EXPECT_TRUE(FileLock::held_by_another(path));
  first.reset();
  EXPECT_FALSE(FileLock::held_by_another(path));
  EXPECT_NE(FileLock::try_lock(path), nullptr);
  // Asking about a file that does not exist creates nothing.
  EXPECT_FALSE(FileLock::held_by_another(path + ".missing"));
  EXPECT_FALSE(std::filesystem::exists(path + ".missing"));
}

TEST(FileLockTest, AWaiterOnAFileItsHolderRemovedHoldsTheFileNowAtThePath) {
  const std::string path = testing::make_temp_dir("lock") + "/entry.lock";
  auto first = std::make_unique<FileLock>(path);
  std::atomic<bool> second_holds{false}, second_may_go{false};
  std::thread second([&] {
    FileLock lock(path);
    second_holds = true;
    while (!second_may_go) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(150));  // the second is waiting
  std::filesystem::remove(path);                                // what `cortex cache rm` does, holding it
  first.reset();
  while (!second_holds) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  // Had the second kept the removed file's lock, a third process would now take the new file's.
  EXPECT_TRUE(std::filesystem::exists(path));
  EXPECT_EQ(FileLock::try_lock(path), nullptr);
  second_may_go = true;
  second.join();
  EXPECT_NE(FileLock::try_lock(path), nullptr);
}

}  // namespace
}  // namespace cortex
