// libFuzzer target: the token shard reader (data/token_shard.h read_token_shard) and
// the data loader over the shard it accepts.
// Input: 2 bytes of vocab_size (big-endian; 0 = unchecked), then the shard file.
// Properties: no crash or sanitizer report; an accepted shard has exactly
// (size - 1024) / 2 tokens, all below vocab_size; a rejected one leaves `out` empty
// and names the file; the loader serves only tokens of the shard.
#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "data/loader.h"
#include "data/token_shard.h"
#include "tests/fuzz/fuzz_util.h"

namespace {

void check_loader(const std::string& path, const std::vector<uint16_t>& tokens, int vocab_size) {
  pt::DataLoaderOptions o;
  o.train_pattern = path;
  o.batch_size = 1;
  o.seq_len = 1 + int(tokens.size() % 4);
  o.vocab_size = vocab_size;
  o.seed = tokens.empty() ? 0 : tokens[0];
  pt::DataLoader loader;
  if (!loader.open(o)) return;
  std::vector<int32_t> in(o.seq_len), tg(o.seq_len);
  for (int64_t step = 0; step < 3; ++step) {
    loader.batch(step, 0, 0, in.data(), tg.data());
    for (int i = 0; i < o.seq_len; ++i)
      if (std::find(tokens.begin(), tokens.end(), uint16_t(in[i])) == tokens.end() ||
          std::find(tokens.begin(), tokens.end(), uint16_t(tg[i])) == tokens.end() || in[i] < 0 || tg[i] < 0)
        pt::fuzz::fail("the loader served a token that is not in the shard");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const int vocab_size = (int(data[0]) << 8) | data[1];
  const std::string path = pt::fuzz::write_scratch("train_000000.bin", data + 2, size - 2);
  std::vector<uint16_t> tokens = {7};  // must be cleared on failure
  pt::Status s = pt::read_token_shard(path, vocab_size, &tokens);
  if (!s) {
    if (!tokens.empty()) pt::fuzz::fail("a rejected shard left tokens in the output");
    if (s.message().find(path) == std::string::npos) pt::fuzz::fail("the error does not name the file: " + s.message());
    return 0;
  }
  if (size - 2 != pt::kShardHeaderBytes + 2 * tokens.size())
    pt::fuzz::fail("accepted a shard whose size is not header + 2 * count");
  for (uint16_t t : tokens)
    if (vocab_size > 0 && t >= vocab_size) pt::fuzz::fail("accepted a token >= vocab_size");
  check_loader(path, tokens, vocab_size);
  return 0;
}
