// Run directory outputs on world rank 0: metrics.jsonl (one JSON object per step
// and per evaluation, flushed each line so a killed job keeps what it logged),
// summary.json, and the one-line progress display.
#pragma once

#include <cstdio>
#include <string>

#include "common/status.h"

namespace pt {

class MetricsLog {
 public:
  MetricsLog() = default;
  ~MetricsLog();
  MetricsLog(const MetricsLog&) = delete;
  MetricsLog& operator=(const MetricsLog&) = delete;

  Status open(const std::string& path);
  void write(const std::string& json_line);

 private:
  std::FILE* file_ = nullptr;
  std::string path_;
};

// One-line progress on a terminal ("\r" redraw), or plain lines otherwise.
class Progress {
 public:
  explicit Progress(bool interactive) : interactive_(interactive) {}
  void update(const std::string& line);
  void finish();

 private:
  bool interactive_;
  size_t last_width_ = 0;
};

Status write_text_file(const std::string& path, const std::string& text);

}  // namespace pt
