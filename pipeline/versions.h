// Weight-version tracking (architecture decision 6). Every stage keeps an integer
// version: the number of optimizer updates applied to it since the list began.
// Every (micro-batch, stage) records the version its forward read, the version its
// backward read and the version its gradient was applied to. Drift = backward −
// forward; delay = applied − forward. The same record comes from a schedule's
// action list (pure, here) and from a real run (the executor), so every invariant
// of algorithms.md is checked against both.
#pragma once

#include <vector>

namespace pt {

struct VersionRecord {
  int microbatch = 0;
  int stage = 0;
  int forward = 0;    // version read by F
  int backward = -1;  // version read by B (or Bx); -1 until it ran
  int applied = -1;   // version the gradient was applied to (the STEP's pre-update version); -1 if none
};

}  // namespace pt
