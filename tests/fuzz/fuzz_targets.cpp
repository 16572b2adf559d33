// The fuzz targets (see fuzz_targets.h).
#include "fuzz_targets.h"

#include <unistd.h>

#include <cctype>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "hub/hub_cache.h"
#include "hub/hub_select.h"
#include "io/image.h"
#include "io/safetensors.h"
#include "io/safetensors_set.h"
#include "io/video.h"
#include "models/autoencoder_kl.h"
#include "models/clip_text.h"
#include "models/ldm_checkpoint.h"
#include "models/lora.h"
#include "models/taesd.h"
#include "models/unet.h"
#include "pipeline/scheduler.h"
#include "serve/params.h"
#include "serve/routes.h"
#include "serve/ws_protocol.h"
#include "text/clip_tokenizer.h"

namespace sd::fuzz {
namespace {

namespace fs = std::filesystem;

std::string_view as_text(const uint8_t* data, size_t size) {
  return std::string_view(reinterpret_cast<const char*>(data), size);
}

// The parts of a multi-file input, split at kPartSeparator.
std::vector<std::string> split_parts(std::string_view text) {
  const std::string_view sep = kPartSeparator;
  std::vector<std::string> parts;
  size_t start = 0;
  for (;;) {
    const size_t at = text.find(sep, start);
    if (at == std::string_view::npos) break;
    parts.emplace_back(text.substr(start, at - start));
    start = at + sep.size();
  }
  parts.emplace_back(text.substr(start));
  return parts;
}

std::vector<std::string> split_lines(std::string_view text) {
  std::vector<std::string> lines;
  size_t start = 0;
  while (start <= text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    lines.emplace_back(text.substr(start, end - start));
    start = end + 1;
  }
  return lines;
}

// This process's scratch folder for parsers that read files; removed at exit. Held in a heap
// object that is never destroyed, so that the exit handler can still read it.
const fs::path* g_scratch = nullptr;

void remove_scratch() {
  std::error_code ec;
  if (g_scratch) fs::remove_all(*g_scratch, ec);
}

const fs::path& scratch_dir() {
  if (!g_scratch) {
    // In memory where there is a /dev/shm: the file-reading targets then run several times
    // faster than through a disk.
    std::error_code ec;
    const fs::path base =
        fs::is_directory("/dev/shm", ec) ? fs::path("/dev/shm") : fs::temp_directory_path();
    g_scratch = new fs::path(base / ("streamdiff-fuzz-" + std::to_string(getpid())));
    fs::create_directories(*g_scratch);
    std::atexit(remove_scratch);
  }
  return *g_scratch;
}

void write_file(const fs::path& path, std::string_view bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), std::streamsize(bytes.size()));
  if (!out) std::abort();  // the scratch folder must be writable: not a finding
}

// A safetensors image: the 8-byte little-endian header length, the header, then `data_bytes`
// zero bytes.
std::string safetensors_image(const std::string& header, size_t data_bytes) {
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[size_t(i)] = char((uint64_t(header.size()) >> (8 * i)) & 0xff);
  return out + header + std::string(data_bytes, '\0');
}

void load_float_tensors(const SafetensorsFile& file) {
  for (const SafetensorsEntry& e : file.entries())
    if (e.dtype == "F32" || e.dtype == "F16" || e.dtype == "BF16")
      (void)file.load(e.name, DType::F32);
}

}  // namespace

int fuzz_safetensors(const uint8_t* data, size_t size) {
  try {
    auto file = SafetensorsFile::from_bytes(as_text(data, size), "fuzz-input");
    load_float_tensors(*file);
  } catch (const Error&) {
  }
  return 0;
}

int fuzz_safetensors_index(const uint8_t* data, size_t size) {
  static const fs::path dir = [] {
    const fs::path d = scratch_dir() / "index";
    fs::create_directories(d);
    write_file(d / "a.safetensors",
               safetensors_image("{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                                 "\"y\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[8,12]}}",
                                 12));
    write_file(d / "b.safetensors",
               safetensors_image(
                   "{\"z\":{\"dtype\":\"BF16\",\"shape\":[1,2],\"data_offsets\":[0,4]}}", 4));
    return d;
  }();
  const fs::path index = dir / "model.safetensors.index.json";
  write_file(index, as_text(data, size));
  try {
    auto set = SafetensorsSet::open(index.string());
    (void)set->describe();
    for (const SafetensorsEntry& e : set->entries()) (void)set->load(e.name, DType::F32);
  } catch (const Error&) {
  }
  return 0;
}

int fuzz_model_config(const uint8_t* data, size_t size) {
  const fs::path path = scratch_dir() / "config.json";
  write_file(path, as_text(data, size));
  const std::string p = path.string();
  // Each reader on its own: one rejecting the file must not hide the others.
  try {
    const UNetConfig c = UNetConfig::from_json_file(p);
    (void)c.size_multiple();
    (void)c.temb_dim();
  } catch (const Error&) {
  }
  try {
    (void)AutoencoderKLConfig::from_json_file(p).downscale();
  } catch (const Error&) {
  }
  try {
    const TaesdConfig c = TaesdConfig::from_json_file(p);
    (void)c.encoder_downscale();
    (void)c.decoder_upscale();
  } catch (const Error&) {
  }
  try {
    const ClipTextConfig c = ClipTextConfig::from_json_file(p);
    (void)c.head_dim();
    (void)c.flops(77);
  } catch (const Error&) {
  }
  try {
    const LcmSchedulerConfig c = LcmSchedulerConfig::from_json_file(p);
    const LcmScheduler scheduler(c);  // its tables, sized by num_train_timesteps
    (void)scheduler.alphas_cumprod();
  } catch (const Error&) {
  }
  return 0;
}

int fuzz_lora(const uint8_t* data, size_t size) {
  const fs::path path = scratch_dir() / "lora.safetensors";
  write_file(path, as_text(data, size));
  try {
    const LoraFile lora = LoraFile::load(path.string());
    (void)lora.count(LoraPart::kUNet);
    (void)lora.count(LoraPart::kTextEncoder);
  } catch (const Error&) {
  }
  return 0;
}

int fuzz_ldm_checkpoint(const uint8_t* data, size_t size) {
  const fs::path path = scratch_dir() / "checkpoint.safetensors";
  write_file(path, as_text(data, size));
  try {
    const std::unique_ptr<LdmCheckpoint> ckpt = LdmCheckpoint::open(path.string());
    (void)ldm_family_name(ckpt->info().family);
    try {
      (void)ckpt->default_unet_config();
    } catch (const Error&) {
    }
    (void)ckpt->default_vae_config();
  } catch (const Error&) {
  }
  return 0;
}

int fuzz_clip_tokenizer(const uint8_t* data, size_t size) {
  static const text::ClipTokenizer sd1 = text::ClipTokenizer::builtin(text::ClipPad::kEndOfText);
  static const text::ClipTokenizer sd2 = text::ClipTokenizer::builtin(text::ClipPad::kExclamation);
  try {
    (void)sd1.encode(as_text(data, size));
    (void)sd2.tokenize_for_model(as_text(data, size));
  } catch (const Error&) {
  }
  return 0;
}

int fuzz_clip_tokenizer_folder(const uint8_t* data, size_t size) {
  static const fs::path dir = [] {
    const fs::path d = scratch_dir() / "tokenizer";
    fs::create_directories(d);
    return d;
  }();
  static const char* const kFiles[4] = {"vocab.json", "merges.txt", "tokenizer_config.json",
                                        "special_tokens_map.json"};
  const std::vector<std::string> parts = split_parts(as_text(data, size));
  for (size_t i = 0; i < 4; ++i) {
    std::error_code ec;
    fs::remove(dir / kFiles[i], ec);
    if (i < parts.size()) write_file(dir / kFiles[i], parts[i]);
  }
  try {
    const text::ClipTokenizer tok = text::ClipTokenizer::from_folder(dir);
    (void)tok.tokenize_for_model("a photo of a cat, <|endoftext|> !");
    if (parts.size() > 4) (void)tok.encode(parts[4]);
  } catch (const Error&) {
  }
  return 0;
}

int fuzz_image_png(const uint8_t* data, size_t size) {
  try {
    (void)sd::decode_image(data, size, "fuzz-input", 4096);
  } catch (const Error&) {
  }
  return 0;
}

int fuzz_image_jpeg(const uint8_t* data, size_t size) {
  return fuzz_image_png(data, size);
}

int fuzz_serve_params(const uint8_t* data, size_t size) {
  // The server parses with exceptions and rejects a json::exception; the non-throwing form
  // rejects the same texts.
  const std::string_view text = as_text(data, size);
  const nlohmann::json j = nlohmann::json::parse(text.begin(), text.end(), nullptr, false);
  if (j.is_discarded()) return 0;
  try {
    (void)streamdiff::serve::parse_params(j, streamdiff::serve::ParamLimits{});
  } catch (const streamdiff::serve::ParamError&) {
  }
  return 0;
}

int fuzz_serve_http(const uint8_t* data, size_t size) {
  using namespace streamdiff::serve;
  const std::vector<std::string> lines = split_lines(as_text(data, size));
  Request req;
  req.method = "GET";
  split_target(lines[0], &req.path, &req.query);
  for (size_t i = 1; i < lines.size(); ++i) {
    const size_t colon = lines[i].find(':');
    if (colon == std::string::npos) continue;
    std::string name = lines[i].substr(0, colon);
    for (char& c : name) c = char(std::tolower(static_cast<unsigned char>(c)));
    size_t v = colon + 1;
    while (v < lines[i].size() && lines[i][v] == ' ') ++v;
    req.headers[name] = lines[i].substr(v);
  }
  for (const char* prefix : {"/api/ws/", "/api/stream/", "/view/"}) {
    const std::string uuid = uuid_after(req.path, prefix);
    if (!uuid.empty() && !is_uuid(uuid)) std::abort();  // uuid_after promises a valid id
  }
  (void)is_uuid(req.path);
  (void)authorized(req, "s3cret-token");
  (void)authorized(req, "");
  (void)origin_allowed(req, {});
  (void)origin_allowed(req, {"https://example.com", "http://localhost:7860"});
  return 0;
}

int fuzz_hub_listing(const uint8_t* data, size_t size) {
  const std::vector<std::string> parts = split_parts(as_text(data, size));
  try {
    const hub::RepoListing listing = hub::parse_repo_listing(parts[0], "org/model");
    for (const hub::RemoteFile& f : listing.files) (void)hub::weight_variant(f.path);
    nlohmann::json model_index;
    if (parts.size() > 1) model_index = nlohmann::json::parse(parts[1], nullptr, false);
    std::vector<std::string> include;
    if (parts.size() > 2)
      for (const std::string& line : split_lines(parts[2]))
        if (!line.empty()) include.push_back(line);
    for (const char* variant : {"fp16", ""}) {
      try {
        (void)hub::choose_files(listing, model_index.is_object() ? &model_index : nullptr, variant,
                                include, "org/model");
      } catch (const Error&) {
      }
    }
  } catch (const Error&) {
  }
  return 0;
}

int fuzz_hub_names(const uint8_t* data, size_t size) {
  for (const std::string& line : split_lines(as_text(data, size))) {
    try {
      if (hub::is_repo_id(line)) (void)hub::repo_folder_name(line);
      hub::check_repo_id(line);
    } catch (const Error&) {
    }
    try {
      (void)hub::is_commit_hash(line);
      hub::check_revision(line);
    } catch (const Error&) {
    }
    try {
      hub::check_repo_path(line, "org/model");
    } catch (const Error&) {
    }
    try {
      hub::check_etag(hub::normalize_etag(line), "model.safetensors");
    } catch (const Error&) {
    }
    (void)hub::weight_variant(line);
  }
  return 0;
}

int fuzz_serve_ws(const uint8_t* data, size_t size) {
  using namespace streamdiff::serve;
  using Kind = WsProtocol::Step::Kind;
  WsProtocol protocol(ParamLimits{}, 4096);
  for (const std::string& part : split_parts(as_text(data, size))) {
    const bool text = !part.empty() && part[0] == 'T';
    const std::string message = part.empty() ? part : part.substr(1);
    WsProtocol::Step step = text ? protocol.on_text(message) : protocol.on_binary(message);
    if (step.kind == Kind::Fail) {
      if (step.error.empty()) std::abort();  // an error always says what was wrong
      // What the session sends (WsSession::send).
      (void)nlohmann::json({{"status", "error"}, {"message", step.error}})
          .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    }
    if (step.kind == Kind::Frame && (step.frame.width <= 0 || step.frame.rgb.empty()))
      std::abort();  // a frame handed to the engine has pixels
  }
  return 0;
}

int fuzz_serve_routes(const uint8_t* data, size_t size) {
  using namespace streamdiff::serve;
  static ServerContext* const ctx = [] {
    streamdiff::ModelOptions mo;
    mo.taesd = std::string(SD_SOURCE_DIR) + "/tests/fixtures/taesd/tiny";
    mo.dtype = "f32";
    mo.threads = 1;
    ServerOptions o;
    o.port = 0;
    o.img2img.width = o.img2img.height = o.txt2img.width = o.txt2img.height = 64;
    o.img2img.t_index_list = {32, 45};
    o.txt2img.t_index_list = {45};
    // Never destroyed: its engine thread lives as long as the process.
    return new ServerContext(
        streamdiff::Model::load(std::string(SD_SOURCE_DIR) + "/tests/fixtures/tiny_sd", mo), o);
  }();
  const std::vector<std::string> parts = split_parts(as_text(data, size));
  const std::vector<std::string> lines = split_lines(parts[0]);
  Request req;
  const size_t space = lines[0].find(' ');
  req.method = lines[0].substr(0, space);
  split_target(space == std::string::npos ? "/" : lines[0].substr(space + 1), &req.path,
               &req.query);
  for (size_t i = 1; i < lines.size(); ++i) {
    const size_t colon = lines[i].find(':');
    if (colon == std::string::npos) continue;
    std::string name = lines[i].substr(0, colon);
    for (char& c : name) c = char(std::tolower(static_cast<unsigned char>(c)));
    req.headers[name] = lines[i].substr(colon + 1);
  }
  if (parts.size() > 1) req.body = parts[1];
  if (req.method == "POST" && req.path == "/api/predict") {
    const nlohmann::json j = nlohmann::json::parse(req.body, nullptr, false);
    if (j.is_object()) return 0;  // would run the model: serve_params covers the parsing
  }
  const Response r = route(req, *ctx);
  if (r.status < 100 || r.status > 599) std::abort();
  return 0;
}

int fuzz_video(const uint8_t* data, size_t size) {
  const fs::path path = scratch_dir() / "video.bin";
  write_file(path, as_text(data, size));
  try {
    // Frames up to 1024 a side (the default limit is 8192): every path but the size check is
    // the same, and the fuzzer does not spend its time allocating and converting 8K frames.
    VideoInputOptions options;
    options.max_side = 1024;
    VideoReader reader(path.string(), options);
    Image frame;
    const int width = reader.width(), height = reader.height();
    if (width < 1 || height < 1 || width > 1024 || height > 1024) std::abort();
    for (int k = 0; k < 3 && reader.read(frame); ++k) {
      // A stream may change size mid-way; what the reader states at open does not.
      if (frame.width < 1 || frame.height < 1 || frame.width > 1024 || frame.height > 1024 ||
          frame.rgb.size() != size_t(frame.width) * size_t(frame.height) * 3)
        std::abort();
      if (reader.width() != width || reader.height() != height) std::abort();
    }
  } catch (const Error&) {
  }
  return 0;
}

const Target kTargets[] = {
    {"safetensors", fuzz_safetensors},
    {"safetensors_index", fuzz_safetensors_index},
    {"model_config", fuzz_model_config},
    {"lora", fuzz_lora},
    {"ldm_checkpoint", fuzz_ldm_checkpoint},
    {"clip_tokenizer", fuzz_clip_tokenizer},
    {"clip_tokenizer_folder", fuzz_clip_tokenizer_folder},
    {"image_png", fuzz_image_png},
    {"image_jpeg", fuzz_image_jpeg},
    {"serve_params", fuzz_serve_params},
    {"serve_http", fuzz_serve_http},
    {"serve_ws", fuzz_serve_ws},
    {"serve_routes", fuzz_serve_routes},
    {"video", fuzz_video},
    {"hub_listing", fuzz_hub_listing},
    {"hub_names", fuzz_hub_names},
    {nullptr, nullptr},
};

}  // namespace sd::fuzz
