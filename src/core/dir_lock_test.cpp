#include "core/dir_lock.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <string>

namespace tianhe::core {
namespace {

std::string temp_dir() {
  char tmpl[] = "/tmp/tianhe-dirlock-XXXXXX";
  const char* d = ::mkdtemp(tmpl);
  EXPECT_NE(d, nullptr);
  return d != nullptr ? d : "";
}

TEST(DirLock, SecondAcquireFailsNamingTheHolderUntilReleased) {
  const std::string dir = temp_dir();
  auto first = DirLock::acquire(dir, "log shard 0");
  ASSERT_TRUE(first.ok()) << first.error().message;
  EXPECT_TRUE(first->held());

  auto second = DirLock::acquire(dir, "log shard 0");
  ASSERT_FALSE(second.ok());
  const std::string& msg = second.error().message;
  EXPECT_NE(msg.find(dir), std::string::npos) << msg;
  EXPECT_NE(msg.find("log shard 0"), std::string::npos) << msg;
  EXPECT_NE(msg.find("this process (pid " + std::to_string(::getpid()) + ")"), std::string::npos)
      << msg;
  EXPECT_NE(msg.find("another data_dir"), std::string::npos) << msg;

  first->release();
  EXPECT_FALSE(first->held());
  auto third = DirLock::acquire(dir, "log shard 0");
  EXPECT_TRUE(third.ok()) << third.error().message;

  // Moving keeps the lock held by the new owner only.
  DirLock moved = std::move(third.value());
  EXPECT_TRUE(moved.held());
  EXPECT_FALSE(DirLock::acquire(dir, "store").ok());
  moved = DirLock();
  EXPECT_TRUE(DirLock::acquire(dir, "store").ok());
  std::filesystem::remove_all(dir);
}

TEST(DirLock, AnotherProcessHoldsItUntilKilled) {
  const std::string dir = temp_dir();
  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::close(ready[0]);
    auto lock = DirLock::acquire(dir, "store");
    const char c = lock.ok() ? 'y' : 'n';
    if (::write(ready[1], &c, 1) != 1) ::_exit(2);
    ::pause();  // holds the lock until SIGKILL: nothing runs at exit to release it
    ::_exit(0);
  }
  ::close(ready[1]);
  char c = 0;
  ASSERT_EQ(::read(ready[0], &c, 1), 1);
  ::close(ready[0]);
  ASSERT_EQ(c, 'y');

  auto refused = DirLock::acquire(dir, "store");
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.error().message.find("another process (pid " + std::to_string(child) + ")"),
            std::string::npos)
      << refused.error().message;

  ASSERT_EQ(::kill(child, SIGKILL), 0);
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  // The kernel dropped the killed process's lock: a restart after a crash needs no clean-up.
  auto after = DirLock::acquire(dir, "store");
  EXPECT_TRUE(after.ok()) << after.error().message;
  std::filesystem::remove_all(dir);
}

TEST(DirLock, MissingDirectoryIsAClearError) {
  auto r = DirLock::acquire("/tmp/tianhe-dirlock-does-not-exist/x", "store");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("cannot open lock file"), std::string::npos)
      << r.error().message;
}

}  // namespace
}  // namespace tianhe::core
