#include "text/clip_builtin_vocab.h"

#include <zlib.h>

#include "core/error.h"

#ifndef SD_CLIP_BPE_GZ_PATH
#error "SD_CLIP_BPE_GZ_PATH (the path of data/clip/bpe_simple_vocab_16e6.txt.gz) must be defined"
#endif

// The gzip file's bytes, placed in .rodata by the assembler (CMake makes this object depend on
// the file, so a changed file rebuilds it).
__asm__(
    ".pushsection .rodata\n"
    ".balign 16\n"
    ".globl streamdiff_internal_clip_bpe_gz_begin\n"
    ".hidden streamdiff_internal_clip_bpe_gz_begin\n"
    "streamdiff_internal_clip_bpe_gz_begin:\n"
    ".incbin \"" SD_CLIP_BPE_GZ_PATH
    "\"\n"
    ".globl streamdiff_internal_clip_bpe_gz_end\n"
    ".hidden streamdiff_internal_clip_bpe_gz_end\n"
    "streamdiff_internal_clip_bpe_gz_end:\n"
    ".popsection\n");
extern "C" const unsigned char streamdiff_internal_clip_bpe_gz_begin[];
extern "C" const unsigned char streamdiff_internal_clip_bpe_gz_end[];

namespace sd::text {

std::string builtin_clip_merges() {
  z_stream zs{};
  SD_CHECK(inflateInit2(&zs, 16 + MAX_WBITS) == Z_OK, "CLIP tokenizer: zlib inflateInit2 failed");
  zs.next_in = const_cast<Bytef*>(streamdiff_internal_clip_bpe_gz_begin);
  zs.avail_in = static_cast<uInt>(streamdiff_internal_clip_bpe_gz_end -
                                  streamdiff_internal_clip_bpe_gz_begin);
  std::string out;
  int rc = Z_OK;
  while (rc == Z_OK) {
    const size_t have = out.size();
    out.resize(have + (1 << 20));
    zs.next_out = reinterpret_cast<Bytef*>(out.data() + have);
    zs.avail_out = 1 << 20;
    rc = inflate(&zs, Z_NO_FLUSH);
    out.resize(have + (1 << 20) - zs.avail_out);
  }
  inflateEnd(&zs);
  SD_CHECK(rc == Z_STREAM_END, "CLIP tokenizer: the built-in vocabulary is corrupt (zlib error ",
           rc, ")");
  return out;
}

}  // namespace sd::text
