// The commands' argument checks: a bad value is a usage error (exit 2) that names the flag,
// before anything is opened, bound or created.
#include "app/commands.h"

#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

namespace tianhe::app {
namespace {

/// A command an extension registered, as the executable runs it (`tianhe query` is the
/// store's, `tianhe bench` the bench tool's); -1 when that extension is compiled out (its
/// cases are skipped).
int registered(const char* name, int argc, char** argv) {
  const runtime::CommandSpec* c = runtime::builtin_extensions().command(name);
  return c == nullptr ? -1 : cmd_extension(*c, argc, argv);
}
int cmd_query(int argc, char** argv) {
  return registered("query", argc, argv);
}
int cmd_bench(int argc, char** argv) {
  return registered("bench", argc, argv);
}
int cmd_bench_receiver(int argc, char** argv) {
  return registered("bench-receiver", argc, argv);
}

/// Runs `cmd` on `words` (argv from "tianhe"); returns its exit status and what it printed to
/// stderr.
std::pair<int, std::string> run_command(int (*cmd)(int, char**), std::vector<std::string> words) {
  std::vector<char*> argv;
  argv.reserve(words.size());
  for (auto& w : words) argv.push_back(w.data());
  ::testing::internal::CaptureStderr();
  const int status = cmd(static_cast<int>(argv.size()), argv.data());
  return {status, ::testing::internal::GetCapturedStderr()};
}

TEST(Commands, BadValuesAreUsageErrorsThatNameTheFlag) {
  // Each fails before it opens, binds or creates anything.
  const std::string nowhere = ::testing::TempDir() + "/tianhe-args-test-no-such-dir";
  const struct {
    int (*cmd)(int, char**);
    std::vector<std::string> words;
    std::vector<const char*> says;
  } cases[] = {
      {cmd_bench, {"tianhe", "bench", "--duration", "10x"}, {"tianhe bench: --duration", "10x"}},
      {cmd_bench, {"tianhe", "bench", "--devices", "5q"}, {"--devices", "5q"}},
      {cmd_bench, {"tianhe", "bench", "--shards", "0"}, {"--shards", "use 1 to 256"}},
      {cmd_bench, {"tianhe", "bench", "--lag-duration", "0"}, {"--lag-duration", "at least"}},
      {cmd_bench_receiver, {"tianhe", "bench-receiver", "--shards", "x"}, {"--shards"}},
      {cmd_bench_receiver, {"tianhe", "bench-receiver"}, {"--ready-file"}},
      {cmd_query,
       {"tianhe", "query", "--data-dir", nowhere, "--device", "12x"},
       {"tianhe query: --device", "\"12x\" is not a device id"}},
      {cmd_query,
       {"tianhe", "query", "--data-dir", nowhere, "--device", "1", "--limit", "0"},
       {"--limit"}},
      {cmd_query,
       {"tianhe", "query", "--data-dir", nowhere, "--device", "1", "--order", "up"},
       {"--order", "asc or desc"}},
      {cmd_query,
       {"tianhe", "query", "--data-dir", nowhere, "--device", "1", "--from", "soon"},
       {"--from", "soon"}},
      {cmd_query,
       {"tianhe", "query", "--data-dir", nowhere, "--device", "1", "--from", "now", "--to", "-1h"},
       {"--from", "after --to"}},
      {cmd_query, {"tianhe", "query", "--data-dir", nowhere, "--all"}, {"--all", "--latest"}},
      {cmd_query,
       {"tianhe", "query", "--data-dir", nowhere, "--count", "--device", "1-5"},
       {"--count", "not a range"}},
      {cmd_query, {"tianhe", "query", "--data-dir", nowhere, "--latest"}, {"--latest needs"}},
      {cmd_query, {"tianhe", "query", "--data-dir", nowhere}, {"say what to read"}},
      {cmd_query,
       {"tianhe", "query", "--data-dir", nowhere, "--device", "1", "--after", "5"},
       {"--after goes with --latest --all"}},
      {cmd_query, {"tianhe", "query", "--data-dir", nowhere, "--format", "xml"}, {"--format"}},
      {cmd_simulate, {"tianhe", "simulate", "--rate", "-1"}, {"--rate", "at least 0"}},
      {cmd_simulate, {"tianhe", "simulate", "--batch", "300"}, {"--batch", "1 to 256"}},
      {cmd_simulate, {"tianhe", "simulate", "--duration", "soon"}, {"--duration", "soon"}},
      {cmd_serve, {"tianhe", "serve", "--report-port", "99999"}, {"--report-port", "0 to 65535"}},
  };
  for (const auto& c : cases) {
    auto [status, err] = run_command(c.cmd, c.words);
    if (status == -1) continue;  // the extension with this command is compiled out
    std::string line;
    for (const auto& w : c.words) line += w + " ";
    EXPECT_EQ(status, 2) << line << "\n" << err;
    for (const char* s : c.says) EXPECT_NE(err.find(s), std::string::npos) << line << "\n" << err;
  }
}

}  // namespace
}  // namespace tianhe::app
