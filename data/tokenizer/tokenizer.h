// Tokenizer interface shared by the byte and GPT-2 tokenizers, and the factory the
// prepare step uses. Invariants every implementation keeps: ids are in
// [0, vocab_size()), eot_token() is a valid id, and decode(encode(x)) == x for
// every byte string x (decode maps the end-of-text id back to its own text).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "common/status.h"

namespace pt {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  // Not const: the GPT-2 tokenizer memoizes BPE results per pre-token.
  virtual std::vector<int> encode(const std::string& text) = 0;
  virtual std::string decode(const std::vector<int>& ids) const = 0;
  virtual int vocab_size() const = 0;
  // The id placed before each document by prepare (llm.c's convention).
  virtual int eot_token() const = 0;
  virtual std::string name() const = 0;
};

// name is "byte" or "gpt2"; gpt2 reads encoder.json and vocab.bpe from tokenizer_dir.
Status make_tokenizer(const std::string& name, const std::string& tokenizer_dir,
                      std::unique_ptr<Tokenizer>* out);

}  // namespace pt
