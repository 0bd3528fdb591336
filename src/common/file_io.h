// Reading whole files with reasons a user can act on, and atomic writes.
//
// read_file_bytes: the file's bytes, or an Error whose message is one of the stable
// reasons below (tests and --report consumers match on the prefix):
//   "not found", "permission denied", "is a directory", "empty file (0 bytes)",
//   "file too large (N bytes > limit)", "read error: <strerror>".
// write_file_atomic: writes to PATH.tmp, fsyncs it, renames over PATH and fsyncs the
// directory, so PATH holds either the old or the new content after a crash.
#pragma once

#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <vector>

#include "common/result.h"

namespace imgsearch {

Result<std::vector<uint8_t>> read_file_bytes(const std::filesystem::path& path, uint64_t max_bytes = uint64_t(1) << 32);

Status write_file_atomic(const std::filesystem::path& path, std::span<const uint8_t> bytes);

// Makes a path printable on a terminal: invalid UTF-8 bytes become \xNN, control
// characters become \uNNNN-style escapes. The original bytes are kept elsewhere.
std::string printable_path(const std::string& raw);

}  // namespace imgsearch
