// The environment variables huggingface_hub reads, read the same way, so that streamdiff and the
// Python tools share one cache, one endpoint and one login.
#pragma once

#include <string>

namespace sd::hub {

// $name, or "" when unset.
std::string env(const char* name);

// $HF_HOME, else $XDG_CACHE_HOME/huggingface, else ~/.cache/huggingface ("~" expanded).
std::string hf_home();

// The hub cache: $HF_HUB_CACHE, else $HUGGINGFACE_HUB_CACHE (older name), else $HF_HOME/hub.
std::string hub_cache_dir();

// HF_HUB_OFFLINE is 1, ON, YES or TRUE (any case): no network requests at all.
bool hub_offline();

// $HF_ENDPOINT without a trailing slash, default https://huggingface.co.
std::string hub_endpoint();

}  // namespace sd::hub
