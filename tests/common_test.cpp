#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include "common/bounded_queue.h"
#include "common/file_io.h"

namespace fs = std::filesystem;
using namespace imgsearch;

namespace {
fs::path temp_dir() {
  fs::path d = fs::temp_directory_path() / ("imgsearch_common_" + std::to_string(::getpid()));
  fs::create_directories(d);
  return d;
}
}  // namespace

TEST(FileIo, ReadsBytesAndNamesEachFailure) {
  const fs::path d = temp_dir();
  std::ofstream(d / "a.bin") << "hello";
  auto ok = read_file_bytes(d / "a.bin");
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(std::string(ok->begin(), ok->end()), "hello");

  std::ofstream(d / "empty.jpg").close();
  EXPECT_EQ(read_file_bytes(d / "empty.jpg").error(), "empty file (0 bytes)");
  EXPECT_EQ(read_file_bytes(d / "missing.jpg").error(), "not found");
  fs::create_directories(d / "dir.jpg");
  EXPECT_EQ(read_file_bytes(d / "dir.jpg").error(), "is a directory");
  EXPECT_EQ(read_file_bytes(d / "a.bin", 3).error().rfind("file too large", 0), 0u);
  fs::remove_all(d);
}

TEST(FileIo, AtomicWriteReplacesWholeFile) {
  const fs::path d = temp_dir();
  const std::vector<uint8_t> a(1000, 1), b(10, 2);
  ASSERT_TRUE(write_file_atomic(d / "x", a).ok());
  ASSERT_TRUE(write_file_atomic(d / "x", b).ok());
  auto got = read_file_bytes(d / "x");
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(*got, b);
  EXPECT_FALSE(fs::exists(d / "x.tmp"));
  fs::remove_all(d);
}

TEST(FileIo, PrintablePathEscapesInvalidUtf8AndControls) {
  EXPECT_EQ(printable_path("caf\xC3\xA9.jpg"), "caf\xC3\xA9.jpg");  // valid UTF-8 kept
  EXPECT_EQ(printable_path("bad\xFF.jpg"), "bad\\xff.jpg");
  EXPECT_EQ(printable_path("a\nb"), "a\\x0ab");
  EXPECT_EQ(printable_path("trunc\xC3"), "trunc\\xc3");
}

TEST(BoundedQueue, DeliversEverythingInOrderAndBlocksWhenFull) {
  BoundedQueue<int> q(2);
  std::thread producer([&] {
    for (int i = 0; i < 1000; ++i) ASSERT_TRUE(q.push(i));
    q.close();
  });
  int expected = 0;
  while (auto v = q.pop()) EXPECT_EQ(*v, expected++);
  producer.join();
  EXPECT_EQ(expected, 1000);
  EXPECT_FALSE(q.push(1));  // closed
}
