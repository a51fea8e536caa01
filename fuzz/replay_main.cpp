// Replays a libFuzzer corpus without libFuzzer: every file named on the command line (or every
// file inside a named directory) is passed once to LLVMFuzzerTestOneInput. Used by `make test`
// so each fuzz target's corpus and regressions run in every build.
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace {
int run_file(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) {
    std::fprintf(stderr, "replay: cannot read %s\n", p.c_str());
    return 1;
  }
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)),
                             std::istreambuf_iterator<char>());
  // Copy into an exact-size heap buffer so ASan catches any read past the end.
  auto* buf = new uint8_t[bytes.size() + 1];
  std::copy(bytes.begin(), bytes.end(), buf);
  LLVMFuzzerTestOneInput(buf, bytes.size());
  delete[] buf;
  return 0;
}
}  // namespace

int main(int argc, char** argv) {
  size_t files = 0;
  int failures = 0;
  for (int i = 1; i < argc; ++i) {
    std::filesystem::path p(argv[i]);
    if (std::filesystem::is_directory(p)) {
      for (const auto& e : std::filesystem::recursive_directory_iterator(p)) {
        if (e.is_regular_file()) {
          failures += run_file(e.path());
          ++files;
        }
      }
    } else {
      failures += run_file(p);
      ++files;
    }
  }
  // An empty input is always worth one run.
  LLVMFuzzerTestOneInput(nullptr, 0);
  std::printf("replayed %zu corpus files\n", files);
  if (files == 0) {
    std::fprintf(stderr, "replay: no corpus files found: check the corpus path\n");
    return 1;
  }
  return failures == 0 ? 0 : 1;
}
