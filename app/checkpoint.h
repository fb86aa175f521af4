// Checkpoints and exact resume (docs/checkpoints.md).
//
// Layout on disk: <root>/step_N/rank_R.ckpt, one file per pipeline rank R of
// data-parallel replica 0 (replicas hold identical state), plus DONE, written by
// world rank 0 last. <root> is checkpoint.dir, or run_dir/checkpoints when empty.
//
// A rank file is: magic "PTCKPT\r\n" (8 bytes), u32 format version, u64 payload
// size, u64 FNV-1a-64 checksum of the payload, then the payload: the world layout
// (dp, pp, chunks, schedule, every stage's layer range), the step, the restart
// count, the resume-config fingerprint (the config fields that must match on
// resume, as "key=value" lines) and its 64-bit hash, then per local stage its
// version counter and per tensor (global id, name, numel, params, then its optimizer
// state: a count and per state tensor (name, numel, floats), e.g. AdamW's "adam_m"
// and "adam_v", optim/optimizer.h). Integers are little-endian. The tied head copy
// of wte is not stored: it always equals wte (same gradient, same update), so it is
// loaded from wte. Format version 1 (before named optimizer state) stored exactly
// params, adam_m, adam_v per tensor; it is still read, as AdamW state.
//
// Invariants: a file is written to rank_R.ckpt.tmp, fsync'd and renamed; DONE is
// written (tmp + fsync + rename + directory fsync) only after every rank's file is
// in place, so a directory with DONE is complete. Loading validates every file
// (magic, version, size, checksum, fingerprint) before touching any tensor, and a
// failure on any rank fails every rank: nothing is loaded partially or silently.
// Tensors map by global id, so a checkpoint resumes under any pipeline layout or
// schedule whose stages all have the same version counter (every sync schedule).
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "app/config.h"
#include "app/train_state.h"
#include "common/status.h"

namespace pt {

struct ProcessGroups;
class Collectives;

constexpr char kCheckpointMagic[8] = {'P', 'T', 'C', 'K', 'P', 'T', '\r', '\n'};
constexpr uint32_t kCheckpointVersion = 2;  // written; versions 1 and 2 are read

// One named optimizer state tensor of one parameter tensor (OptimizerState::tensor_state).
struct CheckpointState {
  std::string name;  // e.g. "adam_m"
  std::vector<float> data;
  bool operator==(const CheckpointState&) const = default;
};

struct CheckpointTensor {
  int global_id = 0;
  std::string name;
  std::vector<float> params;
  std::vector<CheckpointState> state;  // empty when the saving stage held no optimizer state
};

struct CheckpointStage {
  int stage = 0;
  std::pair<int, int> layers;
  int64_t version = 0;
  std::vector<CheckpointTensor> tensors;
};

// The decoded contents of one rank file.
struct RankCheckpoint {
  int dp = 1, pp = 1, chunks = 1, pp_rank = 0;
  std::string schedule;
  std::vector<std::pair<int, int>> stage_layers;  // every stage of the saved layout
  int64_t step = 0;
  int64_t restarts = 0;                           // resumes before this save
  uint64_t config_hash = 0;
  std::string fingerprint;                        // "key=value\n" lines
  std::vector<CheckpointStage> stages;            // the stages this rank owned
};

// The config fields that must be equal on resume, one "key=value" line each
// (model shape, seed, data, B, T, global batch m*dp, optimizer); and its hash.
std::string resume_fingerprint(const Config& c);
uint64_t fnv1a64(const void* data, size_t size, uint64_t h = 14695981039346656037ull);

// The rank file contents of the stages in `local` (the tied head copy is left out).
RankCheckpoint make_rank_checkpoint(const Config& c, int pp_rank, const std::vector<std::pair<int, int>>& layers,
                                    const std::vector<LocalStage>& local, int64_t step, int64_t restarts);

// Serialization of one rank file; decode names `path` in every error.
std::string encode_rank_checkpoint(const RankCheckpoint& r);
Status decode_rank_checkpoint(const std::string& path, const std::string& bytes, RankCheckpoint* out);
Status read_rank_checkpoint(const std::string& path, RankCheckpoint* out);
// path.tmp, fflush + fsync, rename to path.
Status write_file_atomic(const std::string& path, const std::string& bytes);

// Checks `step_dir` has DONE and every rank file it lists; fills the file paths.
Status list_complete_checkpoint(const std::string& step_dir, std::vector<std::string>* files);
// Newest step_N under root with DONE and files passing their checksums; "" if
// none. Skipped directories (no DONE, bad files) are reported in `skipped`.
Status find_latest_checkpoint(const std::string& root, std::string* step_dir, std::vector<std::string>* skipped);

// Fills `local` (params, optimizer state, versions) from a saved checkpoint, matching
// tensors by global id and their state tensors by name; checks the fingerprint of
// `c`. `where` names the checkpoint in messages. Nothing in `local` changes unless
// it returns ok.
Status map_checkpoint_to_stages(const std::vector<RankCheckpoint>& files, const std::vector<std::string>& paths,
                                const Config& c, std::vector<LocalStage>& local, int64_t* step, int64_t* restarts);

// The checkpoint root of a run: checkpoint.dir or run_dir/checkpoints.
std::string checkpoint_root(const Config& c);

// ---- Collective operations (every rank of the world group calls them) ----

// The run's clock at a checkpoint (step_N/run_clock.json, written by world rank 0 before
// DONE), so that time continues across restarts. Checkpoints without it resume at 0 s.
struct RunClock {
  double train_s = 0;     // training time of every segment so far (what time_s counts)
  double downtime_s = 0;  // wall time between segments: from a checkpoint to the next start
  double lost_s = 0;      // training time redone: from a checkpoint to the kill that followed it
  double saved_unix = 0;  // wall clock (seconds since 1970) when the checkpoint was written
};
std::string run_clock_json(const RunClock& clock);
Status parse_run_clock(const std::string& path, const std::string& text, RunClock* out);

struct ResumeResult {
  int64_t step = 0;       // 0 = fresh start
  int64_t restarts = 0;   // resumes so far, this one included
  std::string dir;        // the step dir loaded, "" if none
  RunClock clock;         // the checkpoint's clock (zeros for a fresh start or an older checkpoint)
};

// c.checkpoint.resume: "" = no resume, "auto" = newest complete checkpoint under
// checkpoint_root(c) (fresh start with an info line if none), else a step dir.
Status resume_training(const Config& c, const ProcessGroups& g, Collectives& coll, std::vector<LocalStage>& local,
                       ResumeResult* out);

// Writes step_N; `layers` is every stage's layer range of the current layout.
Status save_checkpoint(const Config& c, const ProcessGroups& g, Collectives& coll,
                       const std::vector<std::pair<int, int>>& layers,
                       std::vector<LocalStage>& local, int64_t step, int64_t restarts, const RunClock& clock);

// Whether to checkpoint after `step` (1-based count of steps done): the cadence,
// or the run ends (last step, max_seconds) with checkpointing on, or a signal.
bool checkpoint_due(const Config& c, int64_t step, bool run_ends, bool signalled);

// SIGTERM / SIGUSR1 set a flag (Slurm preemption with --signal).
void install_stop_signal_handlers();
// Collective: true on every rank when any rank got a stop signal.
bool stop_signal_agreed(Collectives& coll);

// On resume, keeps the metrics.jsonl lines with step <= `step` (rank 0); on a
// fresh start (step 0), removes the file. `last_time_s` (optional) receives the largest
// time_s the file held before (0 if none): how far the killed segment got.
Status prepare_metrics_file(const std::string& path, int64_t step, double* last_time_s = nullptr);

}  // namespace pt
