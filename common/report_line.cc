// One-line reports; see report_line.h.
#include "common/report_line.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstdlib>

namespace pt {

int rank_from_environment() {
  for (const char* var : {"OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK"}) {
    if (const char* v = std::getenv(var)) return std::atoi(v);
  }
  return -1;
}

bool append_line(const char* path, const std::string& line) {
  const int fd = open(path, O_WRONLY | O_CREAT | O_APPEND, 0644);
  if (fd < 0) return false;
  const bool ok = write(fd, line.data(), line.size()) == ssize_t(line.size());
  return close(fd) == 0 && ok;
}

}  // namespace pt
