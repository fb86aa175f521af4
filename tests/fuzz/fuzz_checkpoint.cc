// libFuzzer target: the checkpoint reader (app/checkpoint.h decode_rank_checkpoint,
// read_rank_checkpoint).
// Input: one mode byte, then bytes. Mode bit 0 clear: the bytes are a whole rank
// file. Bit 0 set: the bytes are a payload, wrapped in a correct header (magic,
// version, size, FNV-1a checksum) so the payload decoder is reached. Bit 1 set: the
// file goes through read_rank_checkpoint from disk as well.
// Properties: no crash or sanitizer report; a failure names the file; an accepted
// file re-encodes to exactly its bytes (a format-1 file to a format-2 file with the same
// contents), and disk and memory decodes agree.
#include <cstdint>
#include <cstring>
#include <string>

#include "app/checkpoint.h"
#include "tests/fuzz/fuzz_util.h"

namespace {

std::string wrap_payload(const std::string& payload) {
  std::string out(pt::kCheckpointMagic, 8);
  auto put = [&](const auto& v) { out.append(reinterpret_cast<const char*>(&v), sizeof v); };
  put(uint32_t(pt::kCheckpointVersion));
  put(uint64_t(payload.size()));
  put(uint64_t(pt::fnv1a64(payload.data(), payload.size())));
  return out + payload;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const uint8_t mode = data[0];
  std::string bytes(reinterpret_cast<const char*>(data + 1), size - 1);
  if (mode & 1) bytes = wrap_payload(bytes);
  const std::string name = "fuzz/rank_0.ckpt";
  pt::RankCheckpoint r;
  pt::Status s = pt::decode_rank_checkpoint(name, bytes, &r);
  if (!s && s.message().rfind(name + ": ", 0) != 0) pt::fuzz::fail("the error does not name the file: " + s.message());
  if (s) {
    // The current format re-encodes to exactly its bytes; an older one (format 1) re-encodes
    // in the current format, which must decode to the same contents.
    const std::string again = pt::encode_rank_checkpoint(r);
    uint32_t version = 0;
    std::memcpy(&version, bytes.data() + 8, sizeof version);
    if (version == pt::kCheckpointVersion && again != bytes)
      pt::fuzz::fail("an accepted file does not re-encode to its bytes");
    pt::RankCheckpoint r2;
    if (!pt::decode_rank_checkpoint(name, again, &r2) || pt::encode_rank_checkpoint(r2) != again)
      pt::fuzz::fail("a re-encoded file does not decode to the same contents");
  }
  if (mode & 2) {
    const std::string path = pt::fuzz::write_scratch("rank_0.ckpt", bytes);
    pt::RankCheckpoint d;
    pt::Status ds = pt::read_rank_checkpoint(path, &d);
    if (bool(ds) != bool(s)) pt::fuzz::fail("reading from disk and decoding in memory disagree");
    if (ds && pt::encode_rank_checkpoint(d) != pt::encode_rank_checkpoint(r))
      pt::fuzz::fail("the disk read decoded other contents");
  }
  return 0;
}
