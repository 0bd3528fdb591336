#include "common/progress.h"

#include <unistd.h>  // isatty

#include <cstdio>

namespace imgsearch {

std::string format_duration(double s) {
  char buf[32];
  if (s < 0 || s > 1e7) return "?";
  const int t = int(s + 0.5);
  if (t >= 3600)
    std::snprintf(buf, sizeof buf, "%dh%02dm", t / 3600, (t / 60) % 60);
  else if (t >= 60)
    std::snprintf(buf, sizeof buf, "%dm%02ds", t / 60, t % 60);
  else
    std::snprintf(buf, sizeof buf, "%ds", t);
  return buf;
}

Progress::Progress(std::string label, Style style) : label_(std::move(label)), style_(style) {
  if (style_ == Style::Auto) style_ = ::isatty(2) ? Style::Bar : Style::Lines;
  start_ = last_draw_ = std::chrono::steady_clock::now();
}

Progress::~Progress() { finish(); }

void Progress::set_total(int64_t total) {
  std::lock_guard lock(mu_);
  total_ = total;
}

void Progress::update(int64_t done, const std::string& extra) {
  std::lock_guard lock(mu_);
  done_ = done;
  extra_ = extra;
  const auto now = std::chrono::steady_clock::now();
  const double since = std::chrono::duration<double>(now - last_draw_).count();
  if ((style_ == Style::Bar && since >= 0.1) || (style_ == Style::Lines && since >= 5.0)) {
    last_draw_ = now;
    draw(false);
  }
}

void Progress::finish() {
  std::lock_guard lock(mu_);
  if (finished_) return;
  finished_ = true;
  if (style_ == Style::Bar) {
    draw(true);
    std::fputc('\n', stderr);
  }
}

void Progress::draw(bool final) {
  if (style_ == Style::Quiet) return;
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  const double rate = secs > 0 ? done_ / secs : 0;
  std::string eta = "?";
  if (total_ > 0 && rate > 0) eta = format_duration((total_ - done_) / rate);
  char counts[96];
  if (total_ >= 0)
    std::snprintf(counts, sizeof counts, "%lld/%lld", (long long)done_, (long long)total_);
  else
    std::snprintf(counts, sizeof counts, "%lld", (long long)done_);
  if (style_ == Style::Bar) {
    constexpr int kWidth = 28;
    const double frac = total_ > 0 ? double(done_) / double(total_) : 0;
    std::string bar(size_t(kWidth), ' ');
    for (int i = 0; i < int(frac * kWidth + 0.5) && i < kWidth; ++i) bar[size_t(i)] = '#';
    std::fprintf(stderr, "\r\033[K%s [%s] %s  %.1f/s  %s %s  %s", label_.c_str(), bar.c_str(), counts, rate,
                 final ? "took" : "ETA", final ? format_duration(secs).c_str() : eta.c_str(), extra_.c_str());
  } else {
    std::fprintf(stderr, "%s: %s  %.1f/s  ETA %s  %s\n", label_.c_str(), counts, rate, eta.c_str(), extra_.c_str());
  }
  std::fflush(stderr);
}

}  // namespace imgsearch
