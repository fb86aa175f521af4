// GPT-2 architecture hyper-parameters. Letters used in shape comments everywhere:
// B batch (sequences per micro-batch), T sequence length, C = n_embd, NH = n_head,
// HS = C / NH, L = n_layer, V = vocab_size, maxT = max_seq_len.
#pragma once

namespace pt {

struct ModelConfig {
  int vocab_size = 50257;     // V
  int max_seq_len = 1024;     // maxT: rows of the position table
  int n_layer = 12;           // L
  int n_head = 12;            // NH
  int n_embd = 768;           // C
  bool tie_embeddings = true; // LM head reuses wte (V, C)
  float init_std = 0.02f;     // normal init std; residual projections scaled by 1/sqrt(2L)
};

}  // namespace pt
