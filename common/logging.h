// Rank-aware logging to stderr. Info lines print on rank 0 only (or every rank
// with PT_LOG_ALL_RANKS=1); warnings print on every rank with the rank prefix.
#pragma once

#include <string>

namespace pt {

void log_info(const std::string& message);
void log_warn(const std::string& message);

}  // namespace pt
