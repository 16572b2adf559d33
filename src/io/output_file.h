// Writing an output file so that its final name only ever holds a complete file.
//
// The bytes go to a temporary file beside it ("<path>.tmp-XXXXXX"), which is renamed to `path`
// once everything is written and closed. When anything fails (a full disk, a quota, a read-only
// folder) the temporary file is removed, a file that was already at `path` is left as it was, and
// the error names the file and the reason: "cannot write image 'out/a.png': No space left on
// device". A process killed mid-write leaves at most a "*.tmp-*" file, never a truncated output
// under its final name.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace sd {

struct ByteSpan {
  const void* data;
  size_t size;
};

// Writes `pieces`, one after another, as the file `path` (mode 0644). `what` names the kind of
// file in errors ("image", "safetensors file").
void write_file_atomically(const std::string& path, const std::vector<ByteSpan>& pieces,
                           const std::string& what);

}  // namespace sd
