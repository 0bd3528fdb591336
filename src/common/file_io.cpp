#include "common/file_io.h"

#include <fcntl.h>     // open
#include <sys/stat.h>  // fstat
#include <unistd.h>    // read, write, fsync, close

#include <cerrno>
#include <cstring>  // strerror

#include "common/text.h"

namespace imgsearch {
namespace {

std::string errno_reason(int err) {
  switch (err) {
    case ENOENT:
      return "not found";
    case EACCES:
    case EPERM:
      return "permission denied";
    case EISDIR:
      return "is a directory";
    case ELOOP:
      return "symlink loop";
    default:
      return std::string("read error: ") + std::strerror(err);
  }
}

// Closes a descriptor on every path out of a function.
struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

}  // namespace

Result<std::vector<uint8_t>> read_file_bytes(const std::filesystem::path& path, uint64_t max_bytes) {
  // O_NONBLOCK: a FIFO that replaced the file after the folder was listed must not block
  // the open (it fails the regular-file check below); regular files ignore the flag.
  Fd f{::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK)};
  if (f.fd < 0) return make_error(errno_reason(errno));
  struct stat st {};
  if (::fstat(f.fd, &st) != 0) return make_error(errno_reason(errno));
  if (S_ISDIR(st.st_mode)) return make_error("is a directory");
  if (!S_ISREG(st.st_mode)) return make_error("not a regular file");
  if (st.st_size == 0) return make_error("empty file (0 bytes)");
  if (uint64_t(st.st_size) > max_bytes)
    return make_error("file too large (" + std::to_string(st.st_size) + " bytes > " + std::to_string(max_bytes) + ")");
  std::vector<uint8_t> bytes(size_t(st.st_size));
  size_t got = 0;
  while (got < bytes.size()) {
    ssize_t n = ::read(f.fd, bytes.data() + got, bytes.size() - got);
    if (n < 0) {
      if (errno == EINTR) continue;
      return make_error(errno_reason(errno));
    }
    if (n == 0) break;  // the file shrank while we read it
    got += size_t(n);
  }
  bytes.resize(got);
  if (bytes.empty()) return make_error("empty file (0 bytes)");
  return bytes;
}

Status write_file_atomic(const std::filesystem::path& path, std::span<const uint8_t> bytes) {
  const std::filesystem::path tmp = path.string() + ".tmp";
  {
    Fd f{::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644)};
    if (f.fd < 0) return make_error("cannot create " + tmp.string() + ": " + std::strerror(errno));
    size_t done = 0;
    while (done < bytes.size()) {
      ssize_t n = ::write(f.fd, bytes.data() + done, bytes.size() - done);
      if (n < 0) {
        if (errno == EINTR) continue;
        return make_error("cannot write " + tmp.string() + ": " + std::strerror(errno));
      }
      done += size_t(n);
    }
    if (::fsync(f.fd) != 0) return make_error("fsync " + tmp.string() + ": " + std::strerror(errno));
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) return make_error("cannot rename " + tmp.string() + ": " + ec.message());
  // Make the rename itself durable.
  const auto dir = path.has_parent_path() ? path.parent_path() : std::filesystem::path(".");
  Fd d{::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC)};
  if (d.fd >= 0) ::fsync(d.fd);
  return Status::Ok();
}

std::string printable_path(const std::string& raw) {
  std::string out;
  out.reserve(raw.size());
  static const char* hex = "0123456789abcdef";
  auto escape = [&](unsigned char c) {
    out += "\\x";
    out += hex[c >> 4];
    out += hex[c & 15];
  };
  for (size_t i = 0; i < raw.size();) {
    const auto c = static_cast<unsigned char>(raw[i]);
    if (c < 0x20 || c == 0x7f) {
      escape(c);
      ++i;
      continue;
    }
    if (c < 0x80) {
      out += char(c);
      ++i;
      continue;
    }
    // Copy a well-formed UTF-8 sequence whole (the same rule as JSON output uses), or
    // escape its first byte.
    if (const size_t len = utf8_sequence_length(raw, i); len > 0) {
      out.append(raw, i, len);
      i += len;
    } else {
      escape(c);
      ++i;
    }
  }
  return out;
}

}  // namespace imgsearch
