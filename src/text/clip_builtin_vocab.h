// OpenAI CLIP's BPE merges list (bpe_simple_vocab_16e6.txt, MIT licence, data/clip/), built
// into the binary gzip-compressed.
#pragma once

#include <string>

namespace sd::text {

// The decompressed text of bpe_simple_vocab_16e6.txt (decompressed on every call).
std::string builtin_clip_merges();

}  // namespace sd::text
