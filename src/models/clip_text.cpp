#include "models/clip_text.h"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>

#include "core/hash_random.h"
#include "io/json_config.h"
#include "io/model_files.h"
#include "io/safetensors_set.h"

namespace sd {

namespace fs = std::filesystem;

// ---- config ----------------------------------------------------------------------------------

namespace {

constexpr float kQuickGeluAlpha = 1.702f;

Act activation_of(const std::string& name, const std::string& where) {
  if (name == "quick_gelu") return Act::SiLU;  // with fc1 / fc2 rescaled, see clip_text.h
  if (name == "gelu") return Act::GELU;
  if (name == "gelu_new" || name == "gelu_pytorch_tanh") return Act::GELUTanh;
  fail(where, ": hidden_act \"", name,
       "\" is not supported (quick_gelu, gelu, gelu_new, gelu_pytorch_tanh)");
}

}  // namespace

ClipTextConfig ClipTextConfig::vit_l14() {
  return ClipTextConfig{};
}

ClipTextConfig ClipTextConfig::vit_h14() {
  ClipTextConfig c;
  c.hidden_size = 1024;
  c.intermediate_size = 4096;
  c.num_hidden_layers = 23;
  c.num_attention_heads = 16;
  c.hidden_act = "gelu";
  return c;
}

ClipTextConfig ClipTextConfig::from_json_file(const std::string& path) {
  JsonConfig j = JsonConfig::load(path, "text encoder config");
  if (j.json().contains("architectures") && j.json()["architectures"].is_array()) {
    for (const nlohmann::json& a : j.json()["architectures"])
      SD_CHECK(a.is_string() && a.get<std::string>().rfind("CLIPTextModel", 0) == 0, "'", path,
               "' describes a ", a.dump(), ", not a CLIPTextModel");
  }
  ClipTextConfig c;
  j.read("vocab_size", &c.vocab_size);
  j.read("hidden_size", &c.hidden_size);
  j.read("intermediate_size", &c.intermediate_size);
  j.read("num_hidden_layers", &c.num_hidden_layers);
  j.read("num_attention_heads", &c.num_attention_heads);
  j.read("max_position_embeddings", &c.max_position_embeddings);
  j.read("hidden_act", &c.hidden_act);
  j.read("layer_norm_eps", &c.layer_norm_eps);
  c.validate(path);
  return c;
}

void ClipTextConfig::validate(const std::string& where) const {
  SD_CHECK(vocab_size > 0 && hidden_size > 0 && intermediate_size > 0 && num_hidden_layers > 0 &&
               num_attention_heads > 0 && max_position_embeddings > 0,
           where, ": vocab_size ", vocab_size, ", hidden_size ", hidden_size,
           ", intermediate_size ", intermediate_size, ", num_hidden_layers ", num_hidden_layers,
           ", num_attention_heads ", num_attention_heads, ", max_position_embeddings ",
           max_position_embeddings, " must all be positive");
  SD_CHECK(hidden_size % num_attention_heads == 0, where, ": hidden_size ", hidden_size,
           " is not a multiple of num_attention_heads ", num_attention_heads);
  SD_CHECK(layer_norm_eps > 0.f && std::isfinite(layer_norm_eps), where, ": layer_norm_eps ",
           layer_norm_eps, " must be positive");
  activation_of(hidden_act, where);
}

double ClipTextConfig::flops(int tokens) const {
  const double l = tokens, w = hidden_size, i = intermediate_size;
  const double per_layer = 2.0 * l * (4.0 * w * w + 2.0 * w * i) + 4.0 * l * l * w;
  return per_layer * num_hidden_layers;
}

// ---- parameters ------------------------------------------------------------------------------

namespace {

std::string layer_name(int i, const char* rest) {
  return "text_model.encoder.layers." + std::to_string(i) + "." + rest;
}

DType float_dtype_of(const SafetensorsEntry& e, const std::string& file) {
  if (e.dtype == "F32") return DType::F32;
  if (e.dtype == "F16") return DType::F16;
  if (e.dtype == "BF16") return DType::BF16;
  fail("'", file, "': tensor '", e.name, "' has dtype ", e.dtype, ", expected F32, F16 or BF16");
}

// An owned host copy of `name` in its stored dtype, checked against `shape`.
Tensor load_native(const SafetensorsSet& f, const std::string& name, const Shape& shape) {
  SD_CHECK(f.contains(name), "'", f.path(), "': missing tensor '", name, "' (expected shape ",
           shape.str(), ")");
  return f.load(name, float_dtype_of(f.entry(name), f.path()), shape);
}

// Transformers names inside a file under `prefix` ("" or "cond_stage_model.transformer." with or
// without "text_model.").
ClipTextParamSource transformers_source(std::shared_ptr<SafetensorsSet> file, std::string prefix,
                                        bool has_text_model) {
  return [file, prefix, has_text_model](const std::string& name, const Shape& shape) {
    std::string stored = has_text_model ? name : name.substr(std::string("text_model.").size());
    return load_native(*file, prefix + stored, shape);
  };
}

// OpenCLIP names (SD 2.x single files) under `prefix`; q/k/v are row blocks of the fused
// in_proj_weight / in_proj_bias ([3W, W] / [3W], in that order).
ClipTextParamSource openclip_source(std::shared_ptr<SafetensorsSet> file, std::string prefix) {
  // The current layer's fused weight and bias (each is asked for three times in a row of six).
  auto fused_cache = std::make_shared<std::map<std::string, Tensor>>();
  return [file, prefix, fused_cache](const std::string& name, const Shape& shape) -> Tensor {
    static const std::pair<const char*, const char*> kTop[] = {
        {"text_model.embeddings.token_embedding.weight", "token_embedding.weight"},
        {"text_model.embeddings.position_embedding.weight", "positional_embedding"},
        {"text_model.final_layer_norm.weight", "ln_final.weight"},
        {"text_model.final_layer_norm.bias", "ln_final.bias"}};
    for (const auto& [from, to] : kTop)
      if (name == from) return load_native(*file, prefix + to, shape);
    const std::string layers = "text_model.encoder.layers.";
    SD_CHECK(name.rfind(layers, 0) == 0, "no OpenCLIP name for parameter '", name, "'");
    size_t dot = name.find('.', layers.size());
    const std::string index = name.substr(layers.size(), dot - layers.size());
    const std::string rest = name.substr(dot + 1);
    const std::string block = prefix + "transformer.resblocks." + index + ".";
    static const std::pair<const char*, const char*> kLayer[] = {
        {"layer_norm1.", "ln_1."},
        {"layer_norm2.", "ln_2."},
        {"self_attn.out_proj.", "attn.out_proj."},
        {"mlp.fc1.", "mlp.c_fc."},
        {"mlp.fc2.", "mlp.c_proj."}};
    for (const auto& [from, to] : kLayer) {
      const std::string f = from;
      if (rest.rfind(f, 0) == 0)
        return load_native(*file, block + to + rest.substr(f.size()), shape);
    }
    static const char* kQkv[] = {"self_attn.q_proj.", "self_attn.k_proj.", "self_attn.v_proj."};
    for (int part = 0; part < 3; ++part) {
      const std::string f = kQkv[part];
      if (rest.rfind(f, 0) != 0) continue;
      const std::string kind = rest.substr(f.size());  // "weight" or "bias"
      const std::string fused = block + "attn.in_proj_" + kind;
      auto it = fused_cache->find(fused);
      if (it == fused_cache->end()) {
        if (fused_cache->size() >= 2) fused_cache->clear();  // a new layer
        Shape s = shape;
        s[0] *= 3;
        it = fused_cache->emplace(fused, load_native(*file, fused, s)).first;
      }
      return it->second.slice0(part * shape[0], (part + 1) * shape[0]);
    }
    fail("no OpenCLIP name for parameter '", name, "'");
  };
}

int count_prefixed(const SafetensorsSet& f, const std::string& prefix, const std::string& suffix) {
  int n = 0;
  while (f.contains(prefix + std::to_string(n) + suffix)) ++n;
  return n;
}

// A config from the shapes in a single file (no config.json): `tok` / `pos` are the embedding
// tensors, `fc1` the first layer's fc1 / c_fc weight.
ClipTextConfig infer_config(const SafetensorsSet& f, const std::string& tok, const std::string& pos,
                            const std::string& fc1, int layers, bool openclip) {
  for (const std::string* n : {&tok, &pos, &fc1})
    SD_CHECK(f.contains(*n), "'", f.path(), "': missing tensor '", *n, "'");
  const Shape& t = f.entry(tok).shape;
  const Shape& p = f.entry(pos).shape;
  const Shape& m = f.entry(fc1).shape;
  SD_CHECK(t.rank == 2 && p.rank == 2 && m.rank == 2, "'", f.path(), "': '", tok, "' ", t.str(),
           ", '", pos, "' ", p.str(), " and '", fc1, "' ", m.str(), " must be matrices");
  ClipTextConfig c;
  c.vocab_size = int(t[0]);
  c.hidden_size = int(t[1]);
  c.max_position_embeddings = int(p[0]);
  c.intermediate_size = int(m[0]);
  c.num_hidden_layers = layers;
  SD_CHECK(c.hidden_size % 64 == 0, "'", f.path(), "': width ", c.hidden_size,
           " is not a multiple of 64; pass a config (heads are inferred as width / 64)");
  c.num_attention_heads = c.hidden_size / 64;
  c.hidden_act = openclip ? "gelu" : "quick_gelu";
  c.validate(f.path());
  return c;
}

fs::path find_text_encoder_folder(const fs::path& dir) {
  if (fs::exists(dir / "text_encoder" / "config.json")) return dir / "text_encoder";
  if (fs::exists(dir / "config.json")) return dir;
  fail("'", dir.string(), "' holds neither text_encoder/config.json nor config.json");
}

}  // namespace

Tensor ClipTextModel::hash_param(const std::string& name, const Shape& shape) {
  auto ends_with = [&](const char* s) {
    const std::string e = s;
    return name.size() >= e.size() && name.compare(name.size() - e.size(), e.size(), e) == 0;
  };
  float scale = 0.f, offset = 0.f;
  if (name.find("norm") != std::string::npos && ends_with(".weight")) {
    scale = 0.1f;
    offset = 1.f;
  } else if (ends_with(".bias")) {
    scale = 0.02f;
  } else if (name.find("embedding") != std::string::npos) {
    scale = 0.05f;
  } else {
    SD_CHECK(shape.rank == 2, "hash_param: no rule for '", name, "' of shape ", shape.str());
    scale = float(1.0 / std::sqrt(double(shape[1])));
  }
  Tensor t = Tensor::host(shape, DType::F32);
  hash_uniform(name, scale, offset, t.data_as<float>(), size_t(t.numel()));
  return t;
}

std::unique_ptr<ClipTextModel> ClipTextModel::hash_random(const ClipTextConfig& config,
                                                          Backend& backend) {
  return from_params(config, &ClipTextModel::hash_param, backend, "hash-random weights");
}

std::unique_ptr<ClipTextModel> ClipTextModel::from_params(const ClipTextConfig& config,
                                                          const ClipTextParamSource& params,
                                                          Backend& backend, std::string source) {
  config.validate(source);
  std::unique_ptr<ClipTextModel> m(new ClipTextModel(backend, config));
  m->source_ = std::move(source);
  m->mlp_act_ = activation_of(config.hidden_act, m->source_);
  const bool quick_gelu = config.hidden_act == "quick_gelu";
  const int64_t w = config.hidden_size, inter = config.intermediate_size;

  auto get = [&](const std::string& name, const Shape& shape) {
    Tensor t = params(name, shape);
    SD_CHECK(t.shape() == shape, m->source_, ": parameter '", name, "' has shape ", t.shape().str(),
             ", expected ", shape.str());
    SD_CHECK(t.device() == Device::CPU && t.is_contiguous(), m->source_, ": parameter '", name,
             "' is not a contiguous host tensor");
    return t;
  };
  auto scaled = [&](const std::string& name, const Shape& shape, float factor) {
    Tensor t = get(name, shape).to_host_dtype(DType::F32);
    float* p = t.data_as<float>();
    for (int64_t i = 0; i < t.numel(); ++i) p[i] *= factor;
    return t;
  };
  auto linear = [&](const std::string& name, const Shape& shape, float factor = 1.f) {
    Weight w =
        backend.linear_weight(factor == 1.f ? get(name, shape) : scaled(name, shape, factor));
    // Registered for LoRA by module name ("...self_attn.q_proj"), with its load-time factor.
    m->lora_.add(name.substr(0, name.size() - std::string(".weight").size()), w, shape, shape,
                 factor);
    return w;
  };
  m->lora_.set_base(params, m->source_);
  auto vec = [&](const std::string& name, int64_t n, float factor = 1.f) {
    return backend.vector(factor == 1.f ? get(name, {n}) : scaled(name, {n}, factor));
  };

  Tensor tok = get("text_model.embeddings.token_embedding.weight", {config.vocab_size, w});
  m->token_embedding_ = tok.storage() ? tok : tok.to_host_dtype(tok.dtype());
  m->position_embedding_ =
      get("text_model.embeddings.position_embedding.weight", {config.max_position_embeddings, w})
          .to_host_dtype(DType::F32);
  const float up = quick_gelu ? kQuickGeluAlpha : 1.f;
  const float down = quick_gelu ? 1.f / kQuickGeluAlpha : 1.f;
  for (int i = 0; i < config.num_hidden_layers; ++i) {
    Layer l;
    l.ln1_gamma = vec(layer_name(i, "layer_norm1.weight"), w);
    l.ln1_beta = vec(layer_name(i, "layer_norm1.bias"), w);
    l.q = linear(layer_name(i, "self_attn.q_proj.weight"), {w, w});
    l.q_bias = vec(layer_name(i, "self_attn.q_proj.bias"), w);
    l.k = linear(layer_name(i, "self_attn.k_proj.weight"), {w, w});
    l.k_bias = vec(layer_name(i, "self_attn.k_proj.bias"), w);
    l.v = linear(layer_name(i, "self_attn.v_proj.weight"), {w, w});
    l.v_bias = vec(layer_name(i, "self_attn.v_proj.bias"), w);
    l.out = linear(layer_name(i, "self_attn.out_proj.weight"), {w, w});
    l.out_bias = vec(layer_name(i, "self_attn.out_proj.bias"), w);
    l.ln2_gamma = vec(layer_name(i, "layer_norm2.weight"), w);
    l.ln2_beta = vec(layer_name(i, "layer_norm2.bias"), w);
    l.fc1 = linear(layer_name(i, "mlp.fc1.weight"), {inter, w}, up);
    l.fc1_bias = vec(layer_name(i, "mlp.fc1.bias"), inter, up);
    l.fc2 = linear(layer_name(i, "mlp.fc2.weight"), {w, inter}, down);
    l.fc2_bias = vec(layer_name(i, "mlp.fc2.bias"), w);
    m->layers_.push_back(std::move(l));
  }
  m->final_gamma_ = vec("text_model.final_layer_norm.weight", w);
  m->final_beta_ = vec("text_model.final_layer_norm.bias", w);
  return m;
}

std::unique_ptr<ClipTextModel> ClipTextModel::load(const std::string& path, Backend& backend,
                                                   const ClipTextConfig* config) {
  const fs::path p(path);
  SD_CHECK(fs::exists(p), "text encoder path '", path, "' does not exist");
  if (fs::is_directory(p)) {
    const fs::path dir = find_text_encoder_folder(p);
    ClipTextConfig c =
        config ? *config : ClipTextConfig::from_json_file((dir / "config.json").string());
    const std::string weights = find_component_weights(dir, "model", "text encoder folder");
    std::shared_ptr<SafetensorsSet> file = SafetensorsSet::open(weights);
    auto m = from_params(c, transformers_source(file, "", true), backend, weights);
    file->release_resident();  // kept open for LoRA re-reads only
    return m;
  }
  SD_CHECK(p.extension() == ".safetensors", "'", path,
           "' is not a .safetensors file or a model folder (pickle checkpoints are not "
           "supported; convert them to safetensors)");
  std::shared_ptr<SafetensorsSet> file = SafetensorsSet::open(path);
  const SafetensorsSet& f = *file;

  const std::string sd2 = "cond_stage_model.model.";
  if (f.contains(sd2 + "token_embedding.weight")) {
    const std::string blocks = sd2 + "transformer.resblocks.";
    const int resblocks = count_prefixed(f, blocks, ".ln_1.weight");
    SD_CHECK(resblocks >= 2, "'", path, "': OpenCLIP text tower with ", resblocks,
             " resblocks; SD 2.x uses all but the last, so at least 2 are needed");
    ClipTextConfig c =
        config ? *config
               : infer_config(f, sd2 + "token_embedding.weight", sd2 + "positional_embedding",
                              blocks + "0.mlp.c_fc.weight", resblocks - 1, true);
    SD_CHECK(c.num_hidden_layers < resblocks, "'", path, "': config asks for ", c.num_hidden_layers,
             " layers, the file has ", resblocks, " resblocks of which the last is not used");
    auto m = from_params(c, openclip_source(file, sd2), backend, path);
    m->openclip_names_ = true;
    file->release_resident();
    return m;
  }
  // OpenAI CLIP / transformers names: SD 1.x single files, or a bare text encoder file.
  for (const std::string prefix : {"cond_stage_model.transformer.", ""}) {
    for (bool has_text_model : {true, false}) {
      const std::string base = prefix + (has_text_model ? "text_model." : "");
      const std::string tok = base + "embeddings.token_embedding.weight";
      if (!f.contains(tok)) continue;
      const std::string layers = base + "encoder.layers.";
      ClipTextConfig c =
          config ? *config
                 : infer_config(f, tok, base + "embeddings.position_embedding.weight",
                                layers + "0.mlp.fc1.weight",
                                count_prefixed(f, layers, ".layer_norm1.weight"), false);
      auto m = from_params(c, transformers_source(file, prefix, has_text_model), backend, path);
      file->release_resident();
      return m;
    }
  }
  fail("'", path,
       "' holds no CLIP text encoder (looked for cond_stage_model.model.token_embedding.weight, "
       "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight and "
       "text_model.embeddings.token_embedding.weight)");
}

// ---- forward ---------------------------------------------------------------------------------

Tensor ClipTextModel::embed(const std::vector<int>& ids, int batch, int length) const {
  const int64_t w = config_.hidden_size;
  Tensor host = Tensor::host({batch, length, w}, DType::F32);
  float* out = host.data_as<float>();
  const float* pos = position_embedding_.data_as<float>();
  const size_t row_bytes = size_t(w) * dtype_size(token_embedding_.dtype());
  const auto* table = static_cast<const uint8_t*>(token_embedding_.data());
  for (int64_t r = 0; r < int64_t(batch) * length; ++r) {
    float* y = out + r * w;
    convert(table + size_t(ids[r]) * row_bytes, token_embedding_.dtype(), y, DType::F32, size_t(w));
    const float* p = pos + (r % length) * w;
    for (int64_t c = 0; c < w; ++c) y[c] += p[c];
  }
  Tensor x = backend_.upload(host);
  backend_.synchronize();  // `host` dies here
  return x;
}

Tensor ClipTextModel::forward(const std::vector<int>& ids, int batch, int clip_skip) const {
  SD_CHECK(batch >= 1 && !ids.empty() && ids.size() % size_t(batch) == 0, source_, ": ", ids.size(),
           " token ids do not form ", batch, " rows");
  const int length = int(ids.size() / size_t(batch));
  SD_CHECK(length <= config_.max_position_embeddings, source_, ": ", length,
           " tokens per prompt, the model has ", config_.max_position_embeddings, " positions");
  for (size_t i = 0; i < ids.size(); ++i)
    SD_CHECK(ids[i] >= 0 && ids[i] < config_.vocab_size, source_, ": token id ", ids[i],
             " (position ", i, ") is outside the vocabulary of ", config_.vocab_size);
  SD_CHECK(clip_skip >= 0 && clip_skip <= config_.num_hidden_layers, source_, ": clip_skip ",
           clip_skip, " is outside [0, ", config_.num_hidden_layers, "]");

  const float eps = config_.layer_norm_eps;
  Backend& b = backend_;
  Tensor x = embed(ids, batch, length);
  const int used = config_.num_hidden_layers - clip_skip;
  for (int i = 0; i < used; ++i) {
    const Layer& l = layers_[size_t(i)];
    Tensor h = b.layer_norm(x, l.ln1_gamma, l.ln1_beta, eps);
    Tensor q = b.linear(h, l.q, &l.q_bias);
    Tensor k = b.linear(h, l.k, &l.k_bias);
    Tensor v = b.linear(h, l.v, &l.v_bias);
    h = Tensor();
    Tensor a = b.attention(q, k, v, config_.num_attention_heads, /*causal=*/true);
    q = k = v = Tensor();
    x = b.linear(a, l.out, &l.out_bias, Act::None, &x);
    a = Tensor();
    h = b.layer_norm(x, l.ln2_gamma, l.ln2_beta, eps);
    h = b.linear(h, l.fc1, &l.fc1_bias, mlp_act_);
    x = b.linear(h, l.fc2, &l.fc2_bias, Act::None, &x);
  }
  return b.layer_norm(x, final_gamma_, final_beta_, eps);
}

Tensor ClipTextModel::forward_to_host(const std::vector<int>& ids, int batch, int clip_skip) const {
  Tensor y = forward(ids, batch, clip_skip);
  return backend_.download(y, DType::F32);
}

}  // namespace sd
