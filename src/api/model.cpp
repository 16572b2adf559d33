// Model::load and Model::random: everything the CLI used to do by hand (pick the loader for a
// folder or a single file, the text encoder, TAESD or the full VAE, LoRA fusing) in one call.
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <thread>

#include "api/api_common.h"
#include "api/model_impl.h"
#include "backend/cpu/cpu_backend.h"
#include "models/ldm_checkpoint.h"
#include "models/lora.h"
#include "models/unet_hash_weights.h"
#include "pipeline/autoencoder_kl_codec.h"

namespace streamdiff {

namespace fs = std::filesystem;
using detail::guarded;
using detail::require;

namespace {

double ms_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

void progress(const ModelOptions& o, const std::string& line) {
  if (o.on_progress) o.on_progress(line);
}

void require_file(const std::string& path, const char* what) {
  std::error_code ec;
  if (!fs::exists(path, ec))
    throw Error(Status::Io, std::string(what) + " '" + path + "' does not exist");
}

void fuse_loras(const ModelOptions& o, Model::Impl& m) {
  for (const LoraSpec& spec : o.loras) {
    const auto t0 = std::chrono::steady_clock::now();
    const sd::LoraFile lora = sd::LoraFile::load(spec.path);
    sd::ClipTextModel* text = m.text ? &m.text->model_for_update() : nullptr;
    const sd::LoraFuseReport r =
        sd::fuse_lora(lora, spec.scale, m.unet.get(), text, o.lora_allow_unmatched, spec.path);
    std::string line = sd::detail::concat(spec.path, " (scale ", spec.scale, "): ", r.unet_layers,
                                          " UNet and ", r.text_layers, " text-encoder weights");
    if (!r.unmatched.empty())
      line += sd::detail::concat("; ", r.unmatched.size(),
                                 " layers matched no weight (first: ", r.unmatched.front(), ")");
    m.info.loras.push_back(line);
    progress(o, sd::detail::concat("fused LoRA ", line, " in ", std::lround(ms_since(t0)), " ms"));
  }
}

void fill_info(Model::Impl& m, const std::string& path) {
  const sd::UNetConfig& c = m.unet->config();
  m.info.path = path;
  m.info.family = c.use_linear_projection ? "sd2" : "sd1";  // SD 2.x: linear proj_in/out
  m.info.vae = m.taesd ? "taesd" : "autoencoder_kl";
  m.info.backend = m.backend->description();
  m.info.dtype = sd::dtype_name(m.backend->compute_dtype());
  m.info.size_multiple = m.codec->downscale() * c.size_multiple();
  m.info.cross_attention_dim = c.cross_attention_dim;
}

void load_codec(const std::string& path, const ModelOptions& o, const sd::LdmCheckpoint* ckpt,
                Model::Impl& m) {
  if (!o.taesd.empty()) {
    progress(o, "loading TAESD " + o.taesd);
    m.taesd = sd::Taesd::load(o.taesd, *m.backend);
    require(m.taesd->has_encoder() && m.taesd->has_decoder(), "TAESD '", o.taesd, "' has only its ",
            m.taesd->has_encoder() ? "encoder" : "decoder", " (a stream needs both halves)");
    m.codec = std::make_unique<sd::TaesdCodec>(*m.taesd);
    return;
  }
  progress(o, "loading the VAE");
  m.vae = ckpt ? ckpt->load_vae(*m.backend) : sd::AutoencoderKL::load(path, *m.backend);
  m.codec = std::make_unique<sd::AutoencoderKLCodec>(*m.vae);
}

}  // namespace

namespace detail {

void check_model_options(const ModelOptions& o) {
  require(o.device == "cpu" || o.device == "cuda", "device '", o.device, "' is not cpu or cuda");
  require(o.dtype == "auto" || o.dtype == "f32" || o.dtype == "bf16", "dtype '", o.dtype,
          "' is not auto, f32 or bf16");
  require(o.threads >= 0, "threads must be >= 0 (0 = all cores), got ", o.threads);
  if (o.device == "cuda" && !sd::cuda_available())
    throw Error(Status::Unsupported,
                "device cuda: this build has no CUDA backend or no usable GPU was found");
  if (o.device == "cpu" && o.dtype == "bf16" && !sd::cpu_has_native_bf16())
    throw Error(Status::Unsupported,
                "dtype bf16 needs a CPU with AVX512-BF16; this one has none (use f32 or auto)");
  if (!o.taesd.empty()) require_file(o.taesd, "TAESD");
  for (const LoraSpec& l : o.loras) {
    require_file(l.path, "LoRA");
    require(std::isfinite(l.scale), "LoRA '", l.path, "': scale ", l.scale, " is not finite");
  }
}

std::unique_ptr<sd::Backend> make_backend_for(const ModelOptions& o, int* threads) {
  sd::BackendOptions b;
  b.device = o.device;
  b.dtype = o.dtype;
  b.threads = o.threads > 0 ? o.threads : int(std::max(1u, std::thread::hardware_concurrency()));
  *threads = b.threads;
  return sd::make_backend(b);
}

}  // namespace detail

sd::Tensor Model::Impl::encode_prompt(const std::string& prompt, int clip_skip) {
  if (text) return text->encode(prompt, clip_skip);
  const int64_t dim = unet->config().cross_attention_dim;
  return sd::hash_host_tensor("prompt:" + prompt, sd::Shape{77, dim}, 1.f);
}

int Model::Impl::text_layers() const {
  return text ? text->model().config().num_hidden_layers : 0;
}

Model::Model(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}
Model::~Model() = default;

Model Model::load(const std::string& model_path, const ModelOptions& model_options) {
  return guarded(Status::Io, [&] {
    const auto t0 = std::chrono::steady_clock::now();
    const std::string path = detail::local_model_path(model_path, model_options);
    const ModelOptions options = detail::with_local_paths(model_options);
    detail::check_model_options(options);
    std::error_code ec;
    const bool single_file = fs::is_regular_file(path, ec);
    if (single_file) {
      require(fs::path(path).extension() == ".safetensors", "model '", path,
              "' is not a .safetensors checkpoint or a diffusers model folder (pickle .ckpt files "
              "are not loaded: convert them to .safetensors)");
    } else {
      if (!fs::is_directory(path, ec))
        throw Error(Status::Io, "model '" + path +
                                    "' is neither a folder (a diffusers model with unet/, "
                                    "text_encoder/, tokenizer/) nor a single-file .safetensors "
                                    "checkpoint");
      if (options.taesd.empty() && !fs::is_directory(fs::path(path) / "vae", ec))
        throw Error(
            Status::InvalidArgument,
            "'" + path + "' has no vae/ folder: give a TAESD (ModelOptions::taesd, --taesd)");
    }
    auto m = std::make_shared<Impl>();
    m->backend = detail::make_backend_for(options, &m->threads);
    std::unique_ptr<sd::LdmCheckpoint> ckpt;
    progress(options, "loading the UNet from " + path);
    if (single_file) {
      ckpt = sd::LdmCheckpoint::open(path);
      m->unet = ckpt->load_unet(*m->backend);
    } else {
      m->unet = sd::UNet::load(path, *m->backend);
    }
    progress(options, "loading the text encoder");
    m->text = sd::PromptEncoder::load(path, *m->backend);
    load_codec(path, options, ckpt.get(), *m);
    fill_info(*m, model_path);
    fuse_loras(options, *m);
    m->info.load_ms = ms_since(t0);
    return Model(std::move(m));
  });
}

Model Model::random(const std::string& arch, const ModelOptions& model_options) {
  return guarded(Status::Io, [&] {
    const auto t0 = std::chrono::steady_clock::now();
    const ModelOptions options = detail::with_local_paths(model_options);
    sd::UNetConfig cfg;
    try {
      cfg = sd::reference_unet_config(arch);
    } catch (const sd::Error& e) {  // a name the caller chose: not an I/O failure
      throw Error(Status::InvalidArgument, std::string("random model: ") + e.what());
    }
    require(!options.taesd.empty(), "a random model needs a TAESD (ModelOptions::taesd)");
    require(options.loras.empty(), "a random model takes no LoRA");
    detail::check_model_options(options);
    auto m = std::make_shared<Impl>();
    m->backend = detail::make_backend_for(options, &m->threads);
    progress(options, "making a random " + arch + " UNet");
    sd::HashUNetWeights weights("hash-random " + arch + " UNet");
    m->unet = sd::UNet::create(cfg, weights, *m->backend);
    load_codec("", options, nullptr, *m);
    fill_info(*m, "random:" + arch);
    m->info.random_weights = true;
    m->info.load_ms = ms_since(t0);
    return Model(std::move(m));
  });
}

ModelInfo Model::info() const {
  return impl_->info;
}

}  // namespace streamdiff
