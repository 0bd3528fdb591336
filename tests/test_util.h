// Helpers shared by the test suites: a per-test temporary directory, and running the real
// imgsearch binary with its output captured.
#pragma once

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace imgsearch::test_util {

namespace fs = std::filesystem;

// A fresh directory per test (named after the suite, the test and the process, so
// ctest's parallel processes never share one), removed when the test ends.
class TempDir {
 public:
  explicit TempDir(const std::string& prefix = "test") {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    path_ = fs::temp_directory_path() / ("imgsearch_" + prefix + "_" + std::to_string(::getpid()) + "_" +
                                         info->test_suite_name() + "_" + info->name());
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    // Folders a test made unreadable must be readable again to be removed.
    for (auto it = fs::recursive_directory_iterator(path_, fs::directory_options::skip_permission_denied, ec);
         !ec && it != fs::recursive_directory_iterator(); it.increment(ec))
      if (it->is_directory(ec)) fs::permissions(it->path(), fs::perms::owner_all, fs::perm_options::add, ec);
    fs::permissions(path_, fs::perms::owner_all, fs::perm_options::add, ec);
    fs::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const fs::path& path() const { return path_; }
  fs::path operator/(const std::string& name) const { return path_ / name; }

 private:
  fs::path path_;
};

inline std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

struct CliRun {
  int code = -1;
  std::string out, err;
};

// Runs `binary args...` through sh with every argument single-quoted (a quote inside
// becomes '\''), no standard input; captures stdout, stderr and the exit code.
inline CliRun run_binary(const fs::path& binary, const std::vector<std::string>& args) {
  static int counter = 0;
  const fs::path base =
      fs::temp_directory_path() / ("imgsearch_cli_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
  auto quote = [](const std::string& a) {
    std::string q(1, '\'');
    for (char c : a) q.append(c == '\'' ? "'\\''" : std::string(1, c));
    q.push_back('\'');
    return q;
  };
  std::string cmd = quote(binary.string());
  for (const auto& a : args) cmd.append(" ").append(quote(a));
  cmd += " >'" + base.string() + ".out' 2>'" + base.string() + ".err' </dev/null";
  const int status = std::system(cmd.c_str());
  CliRun r;
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.out = slurp(base.string() + ".out");
  r.err = slurp(base.string() + ".err");
  fs::remove(base.string() + ".out");
  fs::remove(base.string() + ".err");
  return r;
}

}  // namespace imgsearch::test_util
