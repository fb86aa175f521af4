// prepare_shards: text files -> tokens -> train/val shards; see prepare.h.
#include "data/prepare.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "common/logging.h"
#include "data/token_shard.h"
#include "data/tokenizer/pretokenize.h"
#include "data/tokenizer/tokenizer.h"

namespace pt {
namespace {

constexpr size_t kChunkBytes = 1 << 20;         // encode granularity, for progress lines
constexpr size_t kProgressEveryBytes = 16 << 20;

std::string shard_name(const std::string& kind, int index) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%s_%06d.bin", kind.c_str(), index);
  return buf;
}

Status read_text(const std::string& path, std::string* out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::error(path + ": cannot open the input text file; check the path given to --input");
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return Status::error(path + ": read error");
  *out = ss.str();
  return Status::ok();
}

}  // namespace

Status prepare_shards(const PrepareOptions& options, std::string* summary) {
  namespace fs = std::filesystem;
  if (options.inputs.empty()) return Status::error("prepare: no input files; pass text files with --input");
  if (!(options.val_fraction >= 0.0 && options.val_fraction < 1.0))
    return Status::error("prepare: val_fraction must be in [0, 1), got " + std::to_string(options.val_fraction));
  if (options.shard_tokens <= 0) return Status::error("prepare: shard_tokens must be positive");
  if (options.out_dir.empty()) return Status::error("prepare: no output directory; pass --out DIR");
  for (const std::string& input : options.inputs) {
    std::error_code ec;
    if (!fs::is_regular_file(input, ec))
      return Status::error(input + ": input file does not exist or is not a regular file; check --input" +
                           std::string(" (scripts/get_corpus.sh downloads a corpus into data_cache/corpus/)"));
  }
  std::unique_ptr<Tokenizer> tokenizer;
  PT_RETURN_IF_ERROR(make_tokenizer(options.tokenizer, options.tokenizer_dir, &tokenizer));
  if (tokenizer->vocab_size() > 65536)
    return Status::error("prepare: tokenizer '" + options.tokenizer + "' has more ids than uint16 shards can hold");

  std::vector<uint16_t> tokens;
  size_t bytes_done = 0, next_report = kProgressEveryBytes;
  for (const std::string& input : options.inputs) {
    std::string text;
    PT_RETURN_IF_ERROR(read_text(input, &text));
    tokens.push_back(uint16_t(tokenizer->eot_token()));
    // Cut only where the pre-tokenizer would cut anyway, so chunking never changes ids.
    size_t pos = 0;
    while (pos < text.size()) {
      size_t end = options.tokenizer == "gpt2"
                       ? gpt2_safe_split_point(std::string_view(text).substr(pos), kChunkBytes) + pos
                       : std::min(text.size(), pos + kChunkBytes);
      for (int id : tokenizer->encode(text.substr(pos, end - pos))) tokens.push_back(uint16_t(id));
      bytes_done += end - pos;
      pos = end;
      if (options.progress && bytes_done >= next_report) {
        log_info("prepare: " + std::to_string(bytes_done >> 20) + " MiB read, " + std::to_string(tokens.size()) + " tokens");
        next_report += kProgressEveryBytes;
      }
    }
  }

  std::error_code ec;
  fs::create_directories(options.out_dir, ec);
  if (ec || !fs::is_directory(options.out_dir))
    return Status::error(options.out_dir + ": cannot create the output directory (" + ec.message() + ")");

  const int64_t total = int64_t(tokens.size());
  const int64_t val_count = std::llround(options.val_fraction * double(total));
  const int64_t train_count = total - val_count;
  std::set<std::string> written;
  int train_shards = 0;
  for (int64_t start = 0; start < train_count; start += options.shard_tokens, ++train_shards) {
    int64_t end = std::min(train_count, start + options.shard_tokens);
    std::string path = (fs::path(options.out_dir) / shard_name("train", train_shards)).string();
    PT_RETURN_IF_ERROR(write_token_shard(path, std::vector<uint16_t>(tokens.begin() + start, tokens.begin() + end)));
    written.insert(fs::path(path).filename().string());
  }
  if (val_count > 0) {
    std::string path = (fs::path(options.out_dir) / shard_name("val", 0)).string();
    PT_RETURN_IF_ERROR(write_token_shard(path, std::vector<uint16_t>(tokens.end() - val_count, tokens.end())));
    written.insert(fs::path(path).filename().string());
  }
  int removed = 0;
  for (const auto& entry : fs::directory_iterator(options.out_dir, ec)) {
    std::string name = entry.path().filename().string();
    bool ours = (name.rfind("train_", 0) == 0 || name.rfind("val_", 0) == 0) && name.size() > 4 &&
                name.compare(name.size() - 4, 4, ".bin") == 0;
    if (ours && !written.count(name) && fs::remove(entry.path(), ec)) ++removed;
  }

  if (summary) {
    std::ostringstream s;
    s << "prepared " << total << " " << tokenizer->name() << " tokens from " << options.inputs.size()
      << " file(s) (" << bytes_done << " bytes): " << train_count << " train tokens in " << train_shards
      << " shard(s), " << val_count << " val tokens, in " << options.out_dir;
    if (removed) s << " (removed " << removed << " stale shard(s))";
    *summary = s.str();
  }
  return Status::ok();
}

}  // namespace pt
