// Checkpoint format, atomic write, validation, find-latest, layout-independent
// mapping and the collective save/resume (see checkpoint.h for the format and
// invariants, docs/checkpoints.md for the user's view).
#include "app/checkpoint.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "app/metrics.h"
#include "common/check.h"
#include "common/logging.h"
#include "optim/adamw.h"
#include "pipeline/collectives.h"
#include "pipeline/process_groups.h"

namespace pt {
namespace fs = std::filesystem;

namespace {

constexpr size_t kPrefixBytes = 8 + 4 + 8 + 8;  // magic, version, payload size, checksum

class Writer {
 public:
  void u8(uint8_t v) { raw(&v, 1); }
  void u32(uint32_t v) { raw(&v, 4); }
  void i32(int32_t v) { raw(&v, 4); }
  void u64(uint64_t v) { raw(&v, 8); }
  void i64(int64_t v) { raw(&v, 8); }
  void str(const std::string& s) {
    u32(uint32_t(s.size()));
    raw(s.data(), s.size());
  }
  void floats(const std::vector<float>& v) { raw(v.data(), v.size() * sizeof(float)); }
  void raw(const void* p, size_t n) { out_.append(static_cast<const char*>(p), n); }
  std::string& bytes() { return out_; }

 private:
  std::string out_;
};

// Bounds-checked reader; the first overrun makes ok() false.
class Reader {
 public:
  Reader(const std::string& b, size_t pos) : b_(b), pos_(pos) {}
  bool ok() const { return ok_; }
  size_t pos() const { return pos_; }
  bool raw(void* p, size_t n) {
    if (!ok_ || n > b_.size() - pos_) return ok_ = false;
    if (n > 0) std::memcpy(p, b_.data() + pos_, n);  // an empty tensor's data() may be null
    pos_ += n;
    return true;
  }
  uint8_t u8() { uint8_t v = 0; raw(&v, 1); return v; }
  uint32_t u32() { uint32_t v = 0; raw(&v, 4); return v; }
  int32_t i32() { int32_t v = 0; raw(&v, 4); return v; }
  uint64_t u64() { uint64_t v = 0; raw(&v, 8); return v; }
  int64_t i64() { int64_t v = 0; raw(&v, 8); return v; }
  std::string str() {
    uint32_t n = u32();
    if (!ok_ || n > b_.size() - pos_) { ok_ = false; return {}; }
    std::string s = b_.substr(pos_, n);
    pos_ += n;
    return s;
  }
  void floats(size_t n, std::vector<float>* v) {
    if (!ok_ || n > (b_.size() - pos_) / sizeof(float)) { ok_ = false; return; }
    v->resize(n);
    raw(v->data(), n * sizeof(float));
  }

 private:
  const std::string& b_;
  size_t pos_;
  bool ok_ = true;
};

Status fsync_dir(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (fd < 0) return Status::error(dir + ": cannot open directory to fsync: " + std::strerror(errno));
  int rc = ::fsync(fd);
  ::close(fd);
  if (rc != 0) return Status::error(dir + ": fsync failed: " + std::strerror(errno));
  return Status::ok();
}

// "step_N" -> N, or -1.
int64_t parse_step_dir(const std::string& name) {
  if (name.rfind("step_", 0) != 0 || name.size() == 5) return -1;
  int64_t v = 0;
  for (size_t i = 5; i < name.size(); ++i) {
    if (name[i] < '0' || name[i] > '9') return -1;
    if (v > (INT64_MAX - 9) / 10) return -1;  // not a step this run can have written
    v = v * 10 + (name[i] - '0');
  }
  return v;
}

std::string rank_file(const std::string& step_dir, int r) { return step_dir + "/rank_" + std::to_string(r) + ".ckpt"; }

// Test hook (docs/checkpoints.md): PIPETRAIN_TEST_CRASH_IN_CHECKPOINT=N makes the
// writer of pipeline rank min(1, pp-1) write half of its step-N tmp file, fsync
// it and SIGKILL itself, as a preempted node would.
bool crash_requested(int64_t step, int pp_rank, int pp) {
  const char* e = std::getenv("PIPETRAIN_TEST_CRASH_IN_CHECKPOINT");
  return e && std::to_string(step) == e && pp_rank == std::min(1, pp - 1);
}

// Every rank passes its own Status; all get a failure if any rank failed.
Status agree(Collectives& coll, const Status& mine, const std::string& what) {
  int64_t any = mine ? 0 : 1;
  coll.allreduce_max(Group::kWorld, &any, 1);
  if (!mine) {
    log_warn(mine.message());
    return mine;
  }
  if (any) return Status::error(what + " failed on another rank (its message is printed above with its rank)");
  return Status::ok();
}

volatile std::sig_atomic_t g_stop_signal = 0;
extern "C" void on_stop_signal(int) { g_stop_signal = 1; }

std::vector<std::string> lines_of(const std::string& s) {
  std::vector<std::string> out;
  std::istringstream in(s);
  for (std::string l; std::getline(in, l);) out.push_back(l);
  return out;
}

const CheckpointState* find_state(const CheckpointTensor& t, const std::string& name) {
  for (const auto& st : t.state)
    if (st.name == name) return &st;
  return nullptr;
}

using SavedTensors = std::map<int, std::pair<const CheckpointTensor*, size_t>>;  // global id -> tensor, file index

// Every tensor of the stage is saved with its name and size, and with every state
// tensor of the stage's optimizer (by name and size).
Status check_saved_tensors(LocalStage& ls, const SavedTensors& by_id, const std::vector<std::string>& paths) {
  const std::vector<ParamTensor>& tensors = ls.model->tensors();
  for (size_t i = 0; i < tensors.size(); ++i) {
    const ParamTensor& t = tensors[i];
    auto it = by_id.find(t.global_id);
    if (it == by_id.end())
      return Status::error(paths[0] + ": tensor '" + t.name + "' (global id " + std::to_string(t.global_id) +
                           ") of stage " + std::to_string(ls.stage) +
                           " is in no rank file of this checkpoint; the layout cannot be mapped");
    const auto& [ct, file] = it->second;
    if (ct->name != t.name || ct->params.size() != t.numel)
      return Status::error(paths[file] + ": tensor global id " + std::to_string(t.global_id) + " is '" + ct->name +
                           "' with " + std::to_string(ct->params.size()) + " elements; the model expects '" + t.name +
                           "' with " + std::to_string(t.numel) + "; the layout cannot be mapped");
    if (!ls.optimizer_state) continue;
    for (const StateTensor& st : ls.optimizer_state->tensor_state(i)) {
      const CheckpointState* saved = find_state(*ct, st.name);
      if (!saved || saved->data.size() != st.numel)
        return Status::error(paths[file] + ": tensor '" + ct->name + "' has " +
                             (saved ? std::to_string(saved->data.size()) + " floats of" : "no") +
                             " optimizer state '" + st.name + "'; the optimizer expects " + std::to_string(st.numel) +
                             " (a checkpoint of another optimizer.kind, or of a stage replica without state)");
    }
  }
  return Status::ok();
}

// Copies params and optimizer state (checked by check_saved_tensors) into the stage.
void load_stage(LocalStage& ls, const SavedTensors& by_id, int64_t version) {
  const std::vector<ParamTensor>& tensors = ls.model->tensors();
  for (size_t i = 0; i < tensors.size(); ++i) {
    const CheckpointTensor& ct = *by_id.at(tensors[i].global_id).first;
    std::copy(ct.params.begin(), ct.params.end(), ls.model->params() + tensors[i].offset);
    if (!ls.optimizer_state) continue;  // a replica that does not own its stage's optimizer state
    for (const StateTensor& st : ls.optimizer_state->tensor_state(i)) {
      const CheckpointState* saved = find_state(ct, st.name);
      std::copy(saved->data.begin(), saved->data.end(), st.data);
    }
  }
  ls.model->sync_params_to_device();  // params() were written on the host
  if (ls.optimizer_state) ls.optimizer_state->sync_to_device();  // so was its state's host view
  ls.version = version;
}

}  // namespace

uint64_t fnv1a64(const void* data, size_t size, uint64_t h) {
  const auto* p = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < size; ++i) {
    h ^= p[i];
    h *= 1099511628211ull;
  }
  return h;
}

// The keys marked OnResume::kMustMatch in the config schema as "key=value" lines, and one line for
// the kGlobalBatch keys ("training.microbatches*parallel.dp (global batch)=<product>") where the
// first of them stands. Order of the first fingerprint format, so older checkpoints still resume:
// the model section first, then the other sections in schema order.
std::string resume_fingerprint(const Config& c) {
  const std::vector<ResumeKey> keys = resume_keys(c);
  std::string batch_name;
  int64_t batch = 1;
  for (const auto& k : keys) {
    if (k.on_resume != OnResume::kGlobalBatch) continue;
    batch_name += (batch_name.empty() ? "" : "*") + k.path;
    batch *= std::stoll(k.value);
  }
  std::string model, rest;
  bool batch_done = false;
  for (const auto& k : keys) {
    std::string& out = k.path.rfind("model.", 0) == 0 ? model : rest;
    if (k.on_resume == OnResume::kMustMatch) out += k.path + "=" + k.value + "\n";
    if (k.on_resume == OnResume::kGlobalBatch && !batch_done) {
      out += batch_name + " (global batch)=" + std::to_string(batch) + "\n";
      batch_done = true;
    }
  }
  return model + rest;
}

std::string encode_rank_checkpoint(const RankCheckpoint& r) {
  Writer p;
  for (int32_t v : {r.dp, r.pp, r.chunks, r.pp_rank}) p.i32(v);
  p.str(r.schedule);
  p.u32(uint32_t(r.stage_layers.size()));
  for (const auto& l : r.stage_layers) {
    p.i32(l.first);
    p.i32(l.second);
  }
  p.i64(r.step);
  p.i64(r.restarts);
  p.u64(r.config_hash);
  p.str(r.fingerprint);
  p.u32(uint32_t(r.stages.size()));
  for (const auto& s : r.stages) {
    p.i32(s.stage);
    p.i32(s.layers.first);
    p.i32(s.layers.second);
    p.i64(s.version);
    p.u32(uint32_t(s.tensors.size()));
    for (const auto& t : s.tensors) {
      p.i32(t.global_id);
      p.str(t.name);
      p.u64(t.params.size());
      p.floats(t.params);
      p.u32(uint32_t(t.state.size()));
      for (const auto& st : t.state) {
        p.str(st.name);
        p.u64(st.data.size());
        p.floats(st.data);
      }
    }
  }
  Writer f;
  f.raw(kCheckpointMagic, 8);
  f.u32(kCheckpointVersion);
  f.u64(p.bytes().size());
  f.u64(fnv1a64(p.bytes().data(), p.bytes().size()));
  f.raw(p.bytes().data(), p.bytes().size());
  return std::move(f.bytes());
}

Status decode_rank_checkpoint(const std::string& path, const std::string& bytes, RankCheckpoint* out) {
  auto bad = [&](const std::string& what) { return Status::error(path + ": " + what); };
  if (bytes.size() < kPrefixBytes)
    return bad("truncated: " + std::to_string(bytes.size()) + " bytes, shorter than the " +
               std::to_string(kPrefixBytes) + "-byte header; the checkpoint is unusable");
  if (std::memcmp(bytes.data(), kCheckpointMagic, 8) != 0)
    return bad("not a pipetrain checkpoint (bad magic); pass a step_N directory written by pipetrain");
  Reader h(bytes, 8);
  const uint32_t version = h.u32();
  if (version < 1 || version > kCheckpointVersion)
    return bad("checkpoint format version " + std::to_string(version) + ", this binary reads versions 1 to " +
               std::to_string(kCheckpointVersion) + "; resume with the pipetrain that wrote it");
  const uint64_t size = h.u64(), sum = h.u64();
  if (size != bytes.size() - kPrefixBytes)
    return bad("truncated or padded: the header announces " + std::to_string(size) + " payload bytes, the file has " +
               std::to_string(bytes.size() - kPrefixBytes) + "; the checkpoint is unusable, resume from an older one");
  const uint64_t actual = fnv1a64(bytes.data() + kPrefixBytes, size);
  if (actual != sum) {
    char buf[96];
    std::snprintf(buf, sizeof buf, "%016llx, stored %016llx", (unsigned long long)actual, (unsigned long long)sum);
    return bad(std::string("payload checksum mismatch (computed ") + buf +
               "): the file is corrupted; resume from an older checkpoint");
  }
  Reader p(bytes, kPrefixBytes);
  RankCheckpoint r;
  for (int* v : {&r.dp, &r.pp, &r.chunks, &r.pp_rank}) *v = p.i32();
  r.schedule = p.str();
  uint32_t ns = p.u32();
  for (uint32_t i = 0; i < ns && p.ok(); ++i) {
    int a = p.i32(), b = p.i32();
    r.stage_layers.push_back({a, b});
  }
  r.step = p.i64();
  r.restarts = p.i64();
  r.config_hash = p.u64();
  r.fingerprint = p.str();
  uint32_t nl = p.u32();
  for (uint32_t i = 0; i < nl && p.ok(); ++i) {
    CheckpointStage s;
    s.stage = p.i32();
    s.layers.first = p.i32();
    s.layers.second = p.i32();
    s.version = p.i64();
    uint32_t nt = p.u32();
    for (uint32_t j = 0; j < nt && p.ok(); ++j) {
      CheckpointTensor t;
      t.global_id = p.i32();
      t.name = p.str();
      uint64_t n = p.u64();
      p.floats(n, &t.params);
      if (version == 1) {
        t.state = {{kAdamM, {}}, {kAdamV, {}}};  // version 1: AdamW's two moments, always present
        for (auto& st : t.state) p.floats(n, &st.data);
      } else {
        const uint32_t count = p.u32();
        for (uint32_t k = 0; k < count && p.ok(); ++k) {
          CheckpointState st;
          st.name = p.str();
          const uint64_t ns = p.u64();
          p.floats(ns, &st.data);
          t.state.push_back(std::move(st));
        }
      }
      s.tensors.push_back(std::move(t));
    }
    r.stages.push_back(std::move(s));
  }
  if (!p.ok() || p.pos() != bytes.size())
    return bad("payload is malformed although its checksum matches (written by an incompatible build?)");
  if (r.config_hash != fnv1a64(r.fingerprint.data(), r.fingerprint.size()))
    return bad("the config hash does not match the stored config fingerprint; the file is corrupted");
  *out = std::move(r);
  return Status::ok();
}

Status read_rank_checkpoint(const std::string& path, RankCheckpoint* out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::error(path + ": cannot open checkpoint file: " + std::strerror(errno));
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return Status::error(path + ": read error");
  return decode_rank_checkpoint(path, ss.str(), out);
}

Status write_file_atomic(const std::string& path, const std::string& bytes) {
  const std::string tmp = path + ".tmp";
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  if (!f) return Status::error(tmp + ": cannot open for writing: " + std::strerror(errno));
  const size_t n = std::fwrite(bytes.data(), 1, bytes.size(), f);
  const bool ok = n == bytes.size() && std::fflush(f) == 0 && ::fsync(fileno(f)) == 0;
  const int err = errno;
  if (std::fclose(f) != 0 || !ok) {
    std::remove(tmp.c_str());
    return Status::error(tmp + ": write failed (" + std::strerror(err) + "); is the disk full?");
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0)
    return Status::error(tmp + ": cannot rename to " + path + ": " + std::strerror(errno));
  return Status::ok();
}

Status list_complete_checkpoint(const std::string& step_dir, std::vector<std::string>* files) {
  const std::string done = step_dir + "/DONE";
  std::ifstream in(done);
  if (!in)
    return Status::error(step_dir + ": no DONE marker: the checkpoint is incomplete (the job stopped while writing "
                         "it) or this is not a step_N checkpoint directory; resume from an older one");
  std::string line;
  int count = -1;
  while (std::getline(in, line))
    if (line.rfind("files ", 0) == 0) count = std::atoi(line.c_str() + 6);
  if (count < 1) return Status::error(done + ": malformed DONE marker (no 'files N' line)");
  files->clear();
  for (int r = 0; r < count; ++r) {
    std::string f = rank_file(step_dir, r);
    if (!fs::exists(f)) return Status::error(f + ": missing although DONE lists " + std::to_string(count) + " rank files");
    files->push_back(f);
  }
  return Status::ok();
}

Status find_latest_checkpoint(const std::string& root, std::string* step_dir, std::vector<std::string>* skipped) {
  step_dir->clear();
  std::error_code ec;
  if (!fs::is_directory(root, ec)) return Status::ok();
  std::vector<std::pair<int64_t, std::string>> dirs;
  for (const auto& e : fs::directory_iterator(root, ec)) {
    const int64_t s = parse_step_dir(e.path().filename().string());
    if (s >= 0 && e.is_directory()) dirs.push_back({s, e.path().string()});
  }
  if (ec) return Status::error(root + ": cannot list checkpoints: " + ec.message());
  std::sort(dirs.rbegin(), dirs.rend());
  for (const auto& [step, dir] : dirs) {
    std::vector<std::string> files;
    Status s = list_complete_checkpoint(dir, &files);
    for (size_t i = 0; s && i < files.size(); ++i) {
      RankCheckpoint r;
      s = read_rank_checkpoint(files[i], &r);
    }
    if (s) {
      *step_dir = dir;
      return Status::ok();
    }
    skipped->push_back(s.message());
  }
  return Status::ok();
}

namespace {

// "key: checkpoint X, config Y; ..." for every checked key whose value differs, or that only
// one side checks (a key that must match only when it is on); "" when the key sets are equal.
std::string fingerprint_diff(const std::string& saved_text, const std::string& mine) {
  std::vector<std::string> a = lines_of(saved_text), b = lines_of(mine);
  std::string diff;
  for (const auto& l : b) {
    const std::string key = l.substr(0, l.find('='));
    std::string saved = "(absent)";
    for (const auto& x : a)
      if (x.substr(0, x.find('=')) == key) saved = x.substr(key.size() + 1);
    if (saved != l.substr(key.size() + 1))
      diff += (diff.empty() ? "" : "; ") + key + ": checkpoint " + saved + ", config " + l.substr(key.size() + 1);
  }
  for (const auto& x : a) {  // checked by the checkpoint, not by this config (a key that must match only when on)
    const std::string key = x.substr(0, x.find('='));
    if (mine.find("\n" + key + "=") == std::string::npos && mine.rfind(key + "=", 0) != 0)
      diff += (diff.empty() ? "" : "; ") + key + ": checkpoint " + x.substr(key.size() + 1) + ", config (not checked)";
  }
  return diff;
}

}  // namespace

Status map_checkpoint_to_stages(const std::vector<RankCheckpoint>& files, const std::vector<std::string>& paths,
                                const Config& c, std::vector<LocalStage>& local, int64_t* step, int64_t* restarts) {
  PT_CHECK(!files.empty() && files.size() == paths.size());
  const RankCheckpoint& f0 = files[0];
  // 1. The files agree with each other.
  for (size_t i = 0; i < files.size(); ++i) {
    const RankCheckpoint& r = files[i];
    if (r.step != f0.step || r.config_hash != f0.config_hash || r.pp != f0.pp || r.dp != f0.dp ||
        r.chunks != f0.chunks || r.schedule != f0.schedule || r.stage_layers != f0.stage_layers)
      return Status::error(paths[i] + ": step, config or layout differs from " + paths[0] +
                           "; the directory mixes files of different checkpoints");
    if (r.pp_rank != int(i) || int(files.size()) != r.pp)
      return Status::error(paths[i] + ": holds pipeline rank " + std::to_string(r.pp_rank) + " of " +
                           std::to_string(r.pp) + ", expected rank " + std::to_string(i) + " of " +
                           std::to_string(files.size()));
  }
  // 2. The config fields that must not change.
  const std::string mine = resume_fingerprint(c);
  if (fnv1a64(mine.data(), mine.size()) != f0.config_hash || mine != f0.fingerprint) {
    std::string diff = fingerprint_diff(f0.fingerprint, mine);
    if (diff.empty()) diff = "the set of checked keys differs (written by another pipetrain version)";
    return Status::error(paths[0] + ": config mismatch, cannot resume exactly: " + diff +
                         ". Restore these keys (docs/checkpoints.md lists what may change on resume)");
  }
  // 3. Version counters: every saved stage once; equal versions map to any layout.
  std::map<int, const CheckpointStage*> saved_stages;
  SavedTensors by_id;
  for (size_t i = 0; i < files.size(); ++i)
    for (const auto& s : files[i].stages) {
      if (!saved_stages.emplace(s.stage, &s).second)
        return Status::error(paths[i] + ": stage " + std::to_string(s.stage) + " is stored twice");
      for (const auto& t : s.tensors)
        if (!by_id.emplace(t.global_id, std::make_pair(&t, i)).second)
          return Status::error(paths[i] + ": tensor '" + t.name + "' (global id " + std::to_string(t.global_id) +
                               ") is stored twice");
    }
  if (saved_stages.size() != f0.stage_layers.size())
    return Status::error(paths[0] + ": the layout has " + std::to_string(f0.stage_layers.size()) +
                         " stages but the files hold " + std::to_string(saved_stages.size()));
  bool versions_equal = true;
  for (const auto& [s, st] : saved_stages) versions_equal = versions_equal && st->version == saved_stages.begin()->second->version;
  std::vector<int64_t> new_versions;
  for (const auto& ls : local) {
    if (versions_equal) {
      new_versions.push_back(saved_stages.begin()->second->version);
      continue;
    }
    auto it = saved_stages.find(ls.stage);
    if (it == saved_stages.end() || it->second->layers != ls.layers)
      return Status::error(paths[0] + ": the saved stages have different version counters (an asynchronous "
                           "schedule's state) and stage " + std::to_string(ls.stage) + " layers [" +
                           std::to_string(ls.layers.first) + ", " + std::to_string(ls.layers.second) +
                           ") has no saved counterpart; resume with the saved layout (pp " + std::to_string(f0.pp) +
                           ", chunks " + std::to_string(f0.chunks) + ", schedule " + f0.schedule + ")");
    new_versions.push_back(it->second->version);
  }
  // 4. Every local tensor (and its optimizer state) by global id (the tied head copy loads from wte).
  for (auto& ls : local) PT_RETURN_IF_ERROR(check_saved_tensors(ls, by_id, paths));
  // 5. Copy (nothing above touched `local`).
  for (size_t k = 0; k < local.size(); ++k) load_stage(local[k], by_id, new_versions[k]);
  *step = f0.step;
  *restarts = f0.restarts;
  return Status::ok();
}

// World rank 0 reads step_dir/run_clock.json and every rank gets it; an older checkpoint
// without one resumes its clock at 0 (with a warning).
RunClock read_run_clock(Collectives& coll, const std::string& step_dir) {
  RunClock k;
  if (coll.rank(Group::kWorld) == 0) {
    const std::string path = step_dir + "/run_clock.json";
    std::ifstream in(path);
    std::stringstream text;
    text << in.rdbuf();
    const Status s = in ? parse_run_clock(path, text.str(), &k) : Status::error(path + ": missing");
    if (!s) log_warn(s.message() + "; time_s restarts from 0 for this run");
  }
  double v[4] = {k.train_s, k.downtime_s, k.lost_s, k.saved_unix};
  coll.broadcast(Group::kWorld, v, sizeof v, 0);
  return RunClock{v[0], v[1], v[2], v[3]};
}

std::string checkpoint_root(const Config& c) {
  if (!c.checkpoint.dir.empty()) return c.checkpoint.dir;
  return c.run.out_dir + "/" + c.run.name + "/checkpoints";
}

Status resume_training(const Config& c, const ProcessGroups& g, Collectives& coll, std::vector<LocalStage>& local,
                       ResumeResult* out) {
  *out = ResumeResult{};
  if (c.checkpoint.resume.empty()) return Status::ok();
  // Rank 0 picks the directory; every rank then loads it.
  std::string dir, error;
  if (g.world_rank == 0) {
    if (c.checkpoint.resume == "auto") {
      std::vector<std::string> skipped;
      Status s = find_latest_checkpoint(checkpoint_root(c), &dir, &skipped);
      if (!s) error = s.message();
      for (const auto& m : skipped) log_warn("--resume auto: skipping " + m);
      if (s && dir.empty()) log_info("--resume auto: no complete checkpoint under " + checkpoint_root(c) + "; starting fresh");
    } else {
      dir = c.checkpoint.resume;
      while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
    }
  }
  int64_t is_error = error.empty() ? 0 : 1;
  coll.broadcast(Group::kWorld, &is_error, sizeof is_error, 0);
  const std::string msg = broadcast_string(coll, Group::kWorld, error.empty() ? dir : error, 0);
  if (is_error) return Status::error(msg);
  dir = msg;
  if (dir.empty()) return Status::ok();

  const auto t0 = std::chrono::steady_clock::now();
  std::vector<std::string> paths;
  std::vector<RankCheckpoint> files;
  int64_t step = 0, restarts = 0;
  Status s = list_complete_checkpoint(dir, &paths);
  for (size_t i = 0; s && i < paths.size(); ++i) {
    files.emplace_back();
    s = read_rank_checkpoint(paths[i], &files.back());
  }
  if (s) s = map_checkpoint_to_stages(files, paths, c, local, &step, &restarts);
  // Every rank read the same files, so errors agree; still, never continue when one failed.
  int64_t any = s ? 0 : 1, root_failed = any;
  coll.allreduce_max(Group::kWorld, &any, 1);
  coll.broadcast(Group::kWorld, &root_failed, sizeof root_failed, 0);
  if (!s && g.world_rank != 0 && !root_failed) log_warn(s.message());  // rank 0 alone prints errors
  if (!s) return s;
  if (any) return Status::error(dir + ": loading the checkpoint failed on another rank (see its message)");
  out->step = step;
  out->restarts = restarts + 1;
  out->dir = dir;
  out->clock = read_run_clock(coll, dir);
  log_info("resumed from " + dir + " at step " + std::to_string(step) + " (restart " + std::to_string(out->restarts) +
           ", loaded in " + std::to_string(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count()) + " s)");
  return Status::ok();
}

RankCheckpoint make_rank_checkpoint(const Config& c, int pp_rank, const std::vector<std::pair<int, int>>& layers,
                                    const std::vector<LocalStage>& local, int64_t step, int64_t restarts) {
  RankCheckpoint r;
  r.dp = c.parallel.dp;
  r.pp = c.parallel.pp;
  r.chunks = c.schedule.chunks;
  r.pp_rank = pp_rank;
  r.schedule = c.schedule.kind;
  r.stage_layers = layers;
  r.step = step;
  r.restarts = restarts;
  r.fingerprint = resume_fingerprint(c);
  r.config_hash = fnv1a64(r.fingerprint.data(), r.fingerprint.size());
  for (const auto& ls : local) {
    // Stage replicas (AMDP: virtual stage p*L + s) hold the same weights after every
    // step slot; pipeline 0's copy (the owner's, with the Adam moments) is saved.
    if (ls.stage >= int(layers.size())) continue;
    CheckpointStage cs;
    cs.stage = ls.stage;
    cs.layers = ls.layers;
    cs.version = ls.version;
    if (ls.optimizer_state) ls.optimizer_state->sync_to_host();  // read through its host view below
    const std::vector<ParamTensor>& tensors = ls.model->tensors();
    for (size_t k = 0; k < tensors.size(); ++k) {
      const ParamTensor& t = tensors[k];
      if (t.is_tied_head) continue;  // equals wte; loaded from it
      CheckpointTensor ct;
      ct.global_id = t.global_id;
      ct.name = t.name;
      const float* p = ls.model->params() + t.offset;
      ct.params.assign(p, p + t.numel);
      if (ls.optimizer_state)
        for (const StateTensor& st : ls.optimizer_state->tensor_state(k))
          ct.state.push_back(CheckpointState{st.name, std::vector<float>(st.data, st.data + st.numel)});
      cs.tensors.push_back(std::move(ct));
    }
    r.stages.push_back(std::move(cs));
  }
  return r;
}

std::string run_clock_json(const RunClock& k) {
  char buf[256];
  std::snprintf(buf, sizeof buf, "{\"train_s\":%.17g,\"downtime_s\":%.17g,\"lost_s\":%.17g,\"saved_unix\":%.17g}\n",
                k.train_s, k.downtime_s, k.lost_s, k.saved_unix);
  return buf;
}

Status parse_run_clock(const std::string& path, const std::string& text, RunClock* out) {
  RunClock k;
  if (std::sscanf(text.c_str(), "{\"train_s\":%lf,\"downtime_s\":%lf,\"lost_s\":%lf,\"saved_unix\":%lf}", &k.train_s,
                  &k.downtime_s, &k.lost_s, &k.saved_unix) != 4)
    return Status::error(path + ": not a run clock (expected train_s, downtime_s, lost_s, saved_unix)");
  *out = k;
  return Status::ok();
}

Status save_checkpoint(const Config& c, const ProcessGroups& g, Collectives& coll,
                       const std::vector<std::pair<int, int>>& layers,
                       std::vector<LocalStage>& local, int64_t step, int64_t restarts, const RunClock& clock) {
  const auto t0 = std::chrono::steady_clock::now();
  const std::string root = checkpoint_root(c);
  const std::string dir = root + "/step_" + std::to_string(step);
  const std::string what = "writing checkpoint " + dir;
  Status s;
  if (g.world_rank == 0) {
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (ec) s = Status::error(dir + ": cannot create the checkpoint directory: " + ec.message());
    fs::remove(dir + "/DONE", ec);  // re-saving a step: incomplete until DONE is rewritten
  }
  PT_RETURN_IF_ERROR(agree(coll, s, what));
  size_t bytes = 0;
  if (g.dp_rank == 0) {
    const RankCheckpoint r = make_rank_checkpoint(c, g.pp_rank, layers, local, step, restarts);
    const std::string data = encode_rank_checkpoint(r);
    bytes = data.size();
    const std::string path = rank_file(dir, g.pp_rank);
    if (crash_requested(step, g.pp_rank, g.pp)) {
      std::FILE* f = std::fopen((path + ".tmp").c_str(), "wb");
      if (f) {
        std::fwrite(data.data(), 1, data.size() / 2, f);
        std::fflush(f);
        ::fsync(fileno(f));
      }
      std::raise(SIGKILL);
    }
    s = write_file_atomic(path, data);
  }
  PT_RETURN_IF_ERROR(agree(coll, s, what));
  if (g.world_rank == 0) {
    s = write_file_atomic(dir + "/run_clock.json", run_clock_json(clock));
    if (s) s = fsync_dir(dir);
    if (s)
      s = write_file_atomic(dir + "/DONE", "pipetrain checkpoint\nstep " + std::to_string(step) + "\nfiles " +
                                               std::to_string(c.parallel.pp) + "\n");
    if (s) s = fsync_dir(dir);
    // keep_last: drop older complete checkpoints beyond the newest keep_last, and
    // incomplete directories older than this one.
    if (s && c.checkpoint.keep_last > 0) {
      std::error_code ec;
      std::vector<std::pair<int64_t, std::string>> complete;
      for (const auto& e : fs::directory_iterator(root, ec)) {
        const int64_t st = parse_step_dir(e.path().filename().string());
        if (st < 0 || st > step || !e.is_directory()) continue;
        if (fs::exists(e.path() / "DONE")) complete.push_back({st, e.path().string()});
        else if (st < step) fs::remove_all(e.path(), ec);
      }
      std::sort(complete.rbegin(), complete.rend());
      for (size_t i = size_t(c.checkpoint.keep_last); i < complete.size(); ++i) {
        fs::remove(complete[i].second + "/DONE", ec);  // incomplete first, then gone
        fs::remove_all(complete[i].second, ec);
      }
    }
  }
  PT_RETURN_IF_ERROR(agree(coll, s, what));
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  char line[256];
  std::snprintf(line, sizeof line, " (rank 0: %.2f MB, %.3f s)", double(bytes) / 1e6, secs);
  log_info("checkpoint: wrote " + dir + line);
  return Status::ok();
}

bool checkpoint_due(const Config& c, int64_t step, bool run_ends, bool signalled) {
  if (signalled) return true;
  if (c.checkpoint.every_steps <= 0) return false;
  return step % c.checkpoint.every_steps == 0 || run_ends;
}

void install_stop_signal_handlers() {
  struct sigaction sa;
  std::memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  PT_CHECK(sigaction(SIGTERM, &sa, nullptr) == 0);
  PT_CHECK(sigaction(SIGUSR1, &sa, nullptr) == 0);
}

bool stop_signal_agreed(Collectives& coll) {
  int64_t any = g_stop_signal ? 1 : 0;
  coll.allreduce_max(Group::kWorld, &any, 1);
  return any != 0;
}

Status prepare_metrics_file(const std::string& path, int64_t step, double* last_time_s) {
  std::error_code ec;
  if (last_time_s) *last_time_s = 0;
  std::ifstream in(path);
  if (!in) return Status::ok();
  std::string kept, line;
  while (std::getline(in, line)) {
    const size_t t = line.find("\"time_s\":");
    if (last_time_s && t != std::string::npos)
      *last_time_s = std::max(*last_time_s, std::strtod(line.c_str() + t + 9, nullptr));
    const size_t k = line.find("\"step\"");
    if (k == std::string::npos) continue;
    const size_t colon = line.find(':', k);
    if (colon == std::string::npos) continue;
    if (std::strtoll(line.c_str() + colon + 1, nullptr, 10) <= step) kept += line + "\n";
  }
  in.close();
  if (step == 0) {
    fs::remove(path, ec);
    return Status::ok();
  }
  return write_text_file(path, kept);
}

}  // namespace pt
