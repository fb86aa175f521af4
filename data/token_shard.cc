// Reading and writing llm.c token shards; see token_shard.h. The format is
// little-endian, which is every machine this project targets (checked below).
#include "data/token_shard.h"

#include <bit>
#include <cstdio>
#include <memory>

namespace pt {
namespace {

static_assert(std::endian::native == std::endian::little, "token shards are little-endian");

struct FileCloser {
  void operator()(FILE* f) const { std::fclose(f); }
};
using File = std::unique_ptr<FILE, FileCloser>;

}  // namespace

Status write_token_shard(const std::string& path, const std::vector<uint16_t>& tokens) {
  if (tokens.size() > size_t(INT32_MAX))
    return Status::error(path + ": " + std::to_string(tokens.size()) + " tokens do not fit one shard's int32 count");
  int32_t header[kShardHeaderInts] = {};
  header[0] = kShardMagic;
  header[1] = kShardVersion;
  header[2] = static_cast<int32_t>(tokens.size());
  // Write to a temporary name and rename, so a crash never leaves a short shard behind.
  std::string tmp = path + ".tmp";
  {
    File f(std::fopen(tmp.c_str(), "wb"));
    if (!f) return Status::error(path + ": cannot create the file; check that the output directory exists and is writable");
    bool ok = std::fwrite(header, sizeof(header), 1, f.get()) == 1 &&
              (tokens.empty() || std::fwrite(tokens.data(), sizeof(uint16_t), tokens.size(), f.get()) == tokens.size());
    ok = (std::fflush(f.get()) == 0) && ok;
    if (!ok) {
      std::remove(tmp.c_str());
      return Status::error(path + ": write failed (disk full?)");
    }
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    return Status::error(path + ": cannot move the finished shard into place");
  }
  return Status::ok();
}

Status read_token_shard(const std::string& path, int vocab_size, std::vector<uint16_t>* out) {
  out->clear();
  File f(std::fopen(path.c_str(), "rb"));
  if (!f) return Status::error(path + ": cannot open the token shard; check the path or run 'pipetrain prepare'");
  std::fseek(f.get(), 0, SEEK_END);
  long size = std::ftell(f.get());
  std::fseek(f.get(), 0, SEEK_SET);
  const std::string regenerate = "; regenerate it with 'pipetrain prepare'";
  if (size < long(kShardHeaderBytes))
    return Status::error(path + ": truncated: " + std::to_string(size) + " bytes is shorter than the " +
                         std::to_string(kShardHeaderBytes) + "-byte shard header" + regenerate);
  int32_t header[kShardHeaderInts];
  if (std::fread(header, sizeof(header), 1, f.get()) != 1) return Status::error(path + ": read error" + regenerate);
  if (header[0] != kShardMagic)
    return Status::error(path + ": bad magic number " + std::to_string(header[0]) + " (expected " +
                         std::to_string(kShardMagic) + "); not an llm.c token shard" + regenerate);
  if (header[1] != kShardVersion)
    return Status::error(path + ": unsupported shard version " + std::to_string(header[1]) + " (expected " +
                         std::to_string(kShardVersion) + ", uint16 tokens)" + regenerate);
  int32_t count = header[2];
  if (count < 0) return Status::error(path + ": negative token count " + std::to_string(count) + regenerate);
  long expected = long(kShardHeaderBytes) + 2L * count;
  if (size < expected)
    return Status::error(path + ": truncated: header says " + std::to_string(count) + " tokens (" +
                         std::to_string(expected) + " bytes) but the file has " + std::to_string(size) + " bytes" +
                         regenerate);
  if (size > expected)
    return Status::error(path + ": " + std::to_string(size - expected) + " bytes follow the " +
                         std::to_string(count) + " tokens the header declares" + regenerate);
  out->resize(count);
  if (count > 0 && std::fread(out->data(), sizeof(uint16_t), count, f.get()) != size_t(count)) {
    out->clear();
    return Status::error(path + ": read error" + regenerate);
  }
  if (vocab_size > 0) {
    for (int32_t i = 0; i < count; ++i) {
      if ((*out)[i] >= vocab_size) {
        std::string msg = path + ": token " + std::to_string((*out)[i]) + " at index " + std::to_string(i) +
                          " is >= vocab_size " + std::to_string(vocab_size) +
                          "; the shard was made with a different tokenizer than the model's vocabulary";
        out->clear();
        return Status::error(msg);
      }
    }
  }
  return Status::ok();
}

}  // namespace pt
