#include "app/metrics.h"

#include <cerrno>
#include <cstring>

namespace pt {

MetricsLog::~MetricsLog() {
  if (file_) std::fclose(file_);
}

Status MetricsLog::open(const std::string& path) {
  path_ = path;
  file_ = std::fopen(path.c_str(), "a");
  if (!file_) return Status::error(path + ": cannot open for writing: " + std::strerror(errno));
  return Status::ok();
}

void MetricsLog::write(const std::string& json_line) {
  if (!file_) return;
  std::fputs(json_line.c_str(), file_);
  std::fputc('\n', file_);
  std::fflush(file_);
}

void Progress::update(const std::string& line) {
  if (interactive_) {
    std::string padded = line;
    if (padded.size() < last_width_) padded.append(last_width_ - padded.size(), ' ');
    std::fprintf(stdout, "\r%s", padded.c_str());
    last_width_ = line.size();
  } else {
    std::fprintf(stdout, "%s\n", line.c_str());
  }
  std::fflush(stdout);
}

void Progress::finish() {
  if (interactive_ && last_width_ > 0) std::fprintf(stdout, "\n");
  last_width_ = 0;
  std::fflush(stdout);
}

Status write_text_file(const std::string& path, const std::string& text) {
  std::string tmp = path + ".tmp";
  std::FILE* f = std::fopen(tmp.c_str(), "w");
  if (!f) return Status::error(tmp + ": cannot open for writing: " + std::strerror(errno));
  std::fwrite(text.data(), 1, text.size(), f);
  if (std::fclose(f) != 0) return Status::error(tmp + ": write failed");
  if (std::rename(tmp.c_str(), path.c_str()) != 0) return Status::error(path + ": rename failed: " + std::strerror(errno));
  return Status::ok();
}

}  // namespace pt
