// The page's files (apps/serve/web/), compiled into the binary by cmake/embed_web_assets.cmake:
// the server needs no files at run time and serves nothing but these (no path traversal).
#pragma once

#include <cstddef>
#include <string>

namespace streamdiff::serve {

struct WebAsset {
  const char* path;  // "/index.html"
  const char* content_type;
  const unsigned char* data;
  size_t size;
};

const WebAsset* find_web_asset(const std::string& path);  // null when there is none

}  // namespace streamdiff::serve
