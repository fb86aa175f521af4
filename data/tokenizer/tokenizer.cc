// make_tokenizer: picks the tokenizer by name and loads its files.
#include "data/tokenizer/tokenizer.h"

#include "data/tokenizer/byte_tokenizer.h"
#include "data/tokenizer/gpt2_tokenizer.h"

namespace pt {

Status make_tokenizer(const std::string& name, const std::string& tokenizer_dir,
                      std::unique_ptr<Tokenizer>* out) {
  if (name == "byte") {
    *out = std::make_unique<ByteTokenizer>();
    return Status::ok();
  }
  if (name == "gpt2") {
    auto gpt2 = std::make_unique<Gpt2Tokenizer>();
    std::string dir = tokenizer_dir.empty() ? "." : tokenizer_dir;
    PT_RETURN_IF_ERROR(gpt2->load(dir + "/encoder.json", dir + "/vocab.bpe"));
    *out = std::move(gpt2);
    return Status::ok();
  }
  return Status::error("unknown tokenizer '" + name + "': use 'gpt2' or 'byte'");
}

}  // namespace pt
