// Progress of long work on stderr: a live bar with rate and ETA on a terminal, a plain
// line every few seconds otherwise (logs, CI), nothing when quiet.
#pragma once

#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>

namespace imgsearch {

class Progress {
 public:
  enum class Style { Auto, Bar, Lines, Quiet };
  Progress(std::string label, Style style = Style::Auto);
  ~Progress();

  void set_total(int64_t total);
  // done: items finished (any outcome); extra: a short note shown after the counts.
  void update(int64_t done, const std::string& extra = "");
  void finish();  // final line; idempotent

 private:
  void draw(bool final);

  std::string label_;
  Style style_;
  int64_t total_ = -1, done_ = 0;
  std::string extra_;
  std::chrono::steady_clock::time_point start_, last_draw_;
  bool finished_ = false;
  std::mutex mu_;
};

std::string format_duration(double seconds);

}  // namespace imgsearch
