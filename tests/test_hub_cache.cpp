// The hub layer without a server: which files of a repository a model needs (real file lists of
// sd-turbo, SD 1.5, TAESD, LCM-LoRA and sharded weights), the checks on names that come from the
// network, the cache layout (relative links, refs, folders that must not be symlinks, locks,
// free space), and a cache written by hand in huggingface_hub's layout, which resolve_model_path
// and Model::load read.
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <set>
#include <string>
#include <thread>

#include "hub/hub_cache.h"
#include "hub/hub_hash.h"
#include "hub/hub_http.h"
#include "hub/hub_select.h"
#include "hub_test_support.h"
#include "streamdiff/hub.hpp"
#include "streamdiff/media.hpp"
#include "streamdiff/streamdiff.h"
#include "streamdiff/streamdiff.hpp"
#include "streamdiff/tools.hpp"
#include "test_support.h"

namespace sd {
namespace {

namespace fs = std::filesystem;
using hub::RemoteFile;
using hub::RepoListing;
using test::error_of;
using test::read_text;
using Json = nlohmann::json;

const std::string kFixtures = SD_FIXTURE_DIR;

RepoListing listing_of(const std::vector<std::string>& paths) {
  RepoListing l;
  l.commit = std::string(40, 'a');
  for (const std::string& p : paths) l.files.push_back({p, 100, ""});
  return l;
}

std::set<std::string> chosen(const RepoListing& l, const Json* index, const std::string& variant,
                             const std::vector<std::string>& include = {}) {
  std::set<std::string> out;
  for (const RemoteFile& f : hub::choose_files(l, index, variant, include, "org/model"))
    out.insert(f.path);
  return out;
}

// stabilityai/sd-turbo's files and model_index.json.
const std::vector<std::string> kSdTurbo = {".gitattributes",
                                           "README.md",
                                           "image.jpg",
                                           "model_index.json",
                                           "scheduler/scheduler_config.json",
                                           "sd_turbo.safetensors",
                                           "text_encoder/config.json",
                                           "text_encoder/model.fp16.safetensors",
                                           "text_encoder/model.safetensors",
                                           "tokenizer/merges.txt",
                                           "tokenizer/special_tokens_map.json",
                                           "tokenizer/tokenizer_config.json",
                                           "tokenizer/vocab.json",
                                           "unet/config.json",
                                           "unet/diffusion_pytorch_model.fp16.safetensors",
                                           "unet/diffusion_pytorch_model.safetensors",
                                           "vae/config.json",
                                           "vae/diffusion_pytorch_model.fp16.safetensors",
                                           "vae/diffusion_pytorch_model.safetensors"};
const Json kSdTurboIndex = Json::parse(R"({
  "_class_name": "StableDiffusionPipeline", "_diffusers_version": "0.24.0.dev0",
  "feature_extractor": [null, null], "image_encoder": [null, null],
  "requires_safety_checker": false, "safety_checker": [null, null],
  "scheduler": ["diffusers", "EulerDiscreteScheduler"],
  "text_encoder": ["transformers", "CLIPTextModel"], "tokenizer": ["transformers", "CLIPTokenizer"],
  "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"]})");

TEST(HubSelect, SdTurboGetsItsFp16ComponentsAndNothingElse) {
  const std::set<std::string> want = {"model_index.json",
                                      "scheduler/scheduler_config.json",
                                      "text_encoder/config.json",
                                      "text_encoder/model.fp16.safetensors",
                                      "tokenizer/merges.txt",
                                      "tokenizer/special_tokens_map.json",
                                      "tokenizer/tokenizer_config.json",
                                      "tokenizer/vocab.json",
                                      "unet/config.json",
                                      "unet/diffusion_pytorch_model.fp16.safetensors",
                                      "vae/config.json",
                                      "vae/diffusion_pytorch_model.fp16.safetensors"};
  EXPECT_EQ(chosen(listing_of(kSdTurbo), &kSdTurboIndex, "fp16"), want);
  // No variant: the plain weights instead.
  std::set<std::string> plain;
  for (std::string f : want) {
    if (const size_t at = f.find(".fp16"); at != std::string::npos) f.erase(at, 5);
    plain.insert(f);
  }
  EXPECT_EQ(chosen(listing_of(kSdTurbo), &kSdTurboIndex, ""), plain);
}

TEST(HubSelect, Sd15SkipsPicklesNonEmaSafetyCheckerAndSingleFiles) {
  const std::vector<std::string> files = {"feature_extractor/preprocessor_config.json",
                                          "model_index.json",
                                          "safety_checker/config.json",
                                          "safety_checker/model.fp16.safetensors",
                                          "safety_checker/model.safetensors",
                                          "safety_checker/pytorch_model.bin",
                                          "scheduler/scheduler_config.json",
                                          "text_encoder/config.json",
                                          "text_encoder/model.fp16.safetensors",
                                          "text_encoder/model.safetensors",
                                          "text_encoder/pytorch_model.bin",
                                          "tokenizer/merges.txt",
                                          "tokenizer/vocab.json",
                                          "unet/config.json",
                                          "unet/diffusion_pytorch_model.bin",
                                          "unet/diffusion_pytorch_model.fp16.bin",
                                          "unet/diffusion_pytorch_model.fp16.safetensors",
                                          "unet/diffusion_pytorch_model.non_ema.bin",
                                          "unet/diffusion_pytorch_model.non_ema.safetensors",
                                          "unet/diffusion_pytorch_model.safetensors",
                                          "unet/diffusion_flax_model.msgpack",
                                          "vae/config.json",
                                          "vae/diffusion_pytorch_model.safetensors",
                                          "vae/diffusion_pytorch_model.fp16.safetensors",
                                          "vae/diffusion_pytorch_model.onnx",
                                          "v1-5-pruned-emaonly.safetensors",
                                          "v1-5-pruned.ckpt"};
  const Json index = Json::parse(R"({"_class_name": "StableDiffusionPipeline",
    "feature_extractor": ["transformers", "CLIPImageProcessor"],
    "safety_checker": ["stable_diffusion", "StableDiffusionSafetyChecker"],
    "scheduler": ["diffusers", "PNDMScheduler"], "text_encoder": ["transformers", "CLIPTextModel"],
    "tokenizer": ["transformers", "CLIPTokenizer"], "unet": ["diffusers", "UNet2DConditionModel"],
    "vae": ["diffusers", "AutoencoderKL"]})");
  EXPECT_EQ(chosen(listing_of(files), &index, "none"),
            (std::set<std::string>{"model_index.json", "scheduler/scheduler_config.json",
                                   "text_encoder/config.json", "text_encoder/model.safetensors",
                                   "tokenizer/merges.txt", "tokenizer/vocab.json",
                                   "unet/config.json", "unet/diffusion_pytorch_model.safetensors",
                                   "vae/config.json", "vae/diffusion_pytorch_model.safetensors"}));
}

TEST(HubSelect, ShardedWeightsComponentsLorasAndGlobs) {
  const Json index = Json::parse(R"({"unet": ["diffusers", "UNet2DConditionModel"]})");
  const std::vector<std::string> sharded = {
      "model_index.json",
      "unet/config.json",
      "unet/diffusion_pytorch_model.safetensors.index.json",
      "unet/diffusion_pytorch_model-00001-of-00002.safetensors",
      "unet/diffusion_pytorch_model-00002-of-00002.safetensors",
      "unet/diffusion_pytorch_model.safetensors.index.fp16.json",
      "unet/diffusion_pytorch_model.fp16-00001-of-00002.safetensors",
      "unet/diffusion_pytorch_model.fp16-00002-of-00002.safetensors"};
  EXPECT_EQ(
      chosen(listing_of(sharded), &index, "fp16"),
      (std::set<std::string>{"model_index.json", "unet/config.json",
                             "unet/diffusion_pytorch_model.safetensors.index.fp16.json",
                             "unet/diffusion_pytorch_model.fp16-00001-of-00002.safetensors",
                             "unet/diffusion_pytorch_model.fp16-00002-of-00002.safetensors"}));
  EXPECT_EQ(hub::weight_variant("model.fp16.safetensors.index.json"), "fp16");
  EXPECT_EQ(hub::weight_variant("model-00001-of-00003.safetensors"), "");
  EXPECT_EQ(hub::weight_variant("diffusion_pytorch_model.non_ema.safetensors"), "non_ema");

  // A component repository (madebyollin/taesd): its config and main weights only.
  const std::vector<std::string> taesd = {"README.md",
                                          "config.json",
                                          "diffusion_pytorch_model.bin",
                                          "diffusion_pytorch_model.safetensors",
                                          "taesd_decoder.pth",
                                          "taesd_decoder.safetensors",
                                          "taesd_encoder.pth",
                                          "taesd_encoder.safetensors",
                                          "images/screenshot.png"};
  EXPECT_EQ(chosen(listing_of(taesd), nullptr, "fp16"),
            (std::set<std::string>{"config.json", "diffusion_pytorch_model.safetensors"}));
  // A LoRA repository (latent-consistency/lcm-lora-sdv1-5).
  EXPECT_EQ(chosen(listing_of({".gitattributes", "README.md", "image.png",
                               "pytorch_lora_weights.safetensors"}),
                   nullptr, "fp16"),
            std::set<std::string>{"pytorch_lora_weights.safetensors"});
  // Several checkpoints: include chooses; without it, an error listing them.
  const RepoListing several = listing_of({"v1.safetensors", "v2.safetensors", "v2.ckpt"});
  EXPECT_NE(
      error_of([&] { chosen(several, nullptr, "fp16"); })
          .find("holds 2 .safetensors files (v1.safetensors, v2.safetensors): choose one with "
                "--include"),
      std::string::npos);
  EXPECT_EQ(chosen(several, nullptr, "fp16", {"v2.safe*"}),
            std::set<std::string>{"v2.safetensors"});
  EXPECT_NE(error_of([&] {
              chosen(several, nullptr, "fp16", {"*.onnx"});
            }).find("no file of org/model matches '*.onnx'"),
            std::string::npos);
  // Pickles only: said so at pull time, not after the download.
  const Json te = Json::parse(R"({"text_encoder": ["transformers", "CLIPTextModel"]})");
  EXPECT_NE(
      error_of([&] {
        chosen(listing_of({"model_index.json", "text_encoder/config.json",
                           "text_encoder/pytorch_model.bin"}),
               &te, "fp16");
      }).find("org/model: text_encoder/ has no .safetensors weights (only pytorch_model.bin)"),
      std::string::npos);
}

TEST(HubSelect, ListingsWithPathsLeavingTheCacheAreRefusedWhole) {
  for (const char* bad :
       {"../../etc/x", "/etc/passwd", "a/../../b", "a\\..\\x", "a//b", "./a", "a/", "", "a\nb"}) {
    const Json j = {{"sha", std::string(40, 'b')},
                    {"siblings", {{{"rfilename", "config.json"}}, {{"rfilename", bad}}}}};
    EXPECT_NE(error_of([&] {
                hub::parse_repo_listing(j.dump(), "org/m");
              }).find("refusing the file list of org/m"),
              std::string::npos)
        << bad;
  }
  const Json ok = {{"sha", std::string(40, 'b')},
                   {"siblings",
                    {{{"rfilename", "unet/diffusion_pytorch_model.safetensors"},
                      {"size", 10},
                      {"lfs", {{"sha256", std::string(64, 'c')}, {"size", 12345}}}}}}};
  const RepoListing l = hub::parse_repo_listing(ok.dump(), "org/m");
  ASSERT_EQ(l.files.size(), 1u);
  EXPECT_EQ(l.files[0].size, 12345);
  EXPECT_EQ(l.files[0].sha256, std::string(64, 'c'));
  const Json bad_commit = {{"sha", "../../x"}, {"siblings", Json::array()}};
  EXPECT_NE(error_of([&] {
              hub::parse_repo_listing(bad_commit.dump(), "org/m");
            }).find("not 40 hex digits"),
            std::string::npos);
}

TEST(HubNames, RepositoryIdsEtagsAndUrls) {
  for (const char* id : {"stabilityai/sd-turbo", "madebyollin/taesd", "gpt2", "a_b/c.d-e"})
    EXPECT_TRUE(hub::is_repo_id(id)) << id;
  for (const char* id : {"a/b/c", "../x", "a/..", "a--b/c", "org/name.git", "-a/b", "a/b-", "",
                         "/abs", "a b/c", "a/"})
    EXPECT_FALSE(hub::is_repo_id(id)) << id;
  EXPECT_EQ(hub::repo_folder_name("stabilityai/sd-turbo"), "models--stabilityai--sd-turbo");
  EXPECT_EQ(hub::normalize_etag("W/\"abc\""), "abc");
  EXPECT_EQ(hub::normalize_etag("\"0123\""), "0123");
  EXPECT_NE(error_of([] { hub::check_etag("../../x", "f"); }).find("cannot name a file"),
            std::string::npos);
  EXPECT_NE(error_of([] { hub::check_revision("../main"); }).find("not a branch, tag or commit"),
            std::string::npos);
  EXPECT_EQ(hub::url_origin("https://huggingface.co/api/x"), "https://huggingface.co:443");
  EXPECT_EQ(hub::url_origin("http://127.0.0.1:8080/s"), "http://127.0.0.1:8080");
  EXPECT_NE(hub::url_origin("https://cdn-lfs.huggingface.co/x"),
            hub::url_origin("https://huggingface.co/x"));  // no token goes there
  EXPECT_EQ(hub::resolve_url("https://h.co/a/b/resolve/x", "/other/path?q=1"),
            "https://h.co/other/path?q=1");
  EXPECT_EQ(hub::resolve_url("https://h.co/a", "https://cdn.h.co/blob"), "https://cdn.h.co/blob");
  EXPECT_EQ(hub::url_escape("unet/a b+c.json", true), "unet/a%20b%2Bc.json");
  EXPECT_EQ(hub::url_escape("refs/pr/1", false), "refs%2Fpr%2F1");
}

class HubCache : public testing::Test {
 protected:
  void SetUp() override {
    root_ =
        fs::temp_directory_path() / ("sd_hub_cache_" + std::to_string(::getpid()) + "_" +
                                     testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(root_);
    fs::create_directories(root_);
    env_.set("HF_HUB_CACHE", (root_ / "cache").string());
    env_.set("HF_HUB_OFFLINE", "1");  // nothing here may reach a network
  }
  void TearDown() override { fs::remove_all(root_); }

  // A repository written into the cache as huggingface_hub writes it: blobs named by ETag,
  // snapshot files as relative symlinks, refs/main. `files` maps repository paths to fixtures.
  fs::path write_hf_repo(const std::string& repo_id,
                         const std::vector<std::pair<std::string, std::string>>& files) {
    const fs::path repo = root_ / "cache" / hub::repo_folder_name(repo_id);
    const std::string commit = "0123456789abcdef0123456789abcdef" + std::string("01234567");
    const fs::path snapshot = repo / "snapshots" / commit;
    fs::create_directories(repo / "blobs");
    fs::create_directories(repo / "refs");
    for (const auto& [path, fixture] : files) {
      const std::string etag = hub::sha256_file(fixture);  // as for an LFS file
      fs::copy_file(fixture, repo / "blobs" / etag, fs::copy_options::overwrite_existing);
      const fs::path link = snapshot / path;
      fs::create_directories(link.parent_path());
      fs::create_symlink(fs::relative(repo / "blobs" / etag, link.parent_path()), link);
    }
    std::ofstream(repo / "refs" / "main") << commit;  // no newline, as huggingface_hub writes it
    return snapshot;
  }

  fs::path root_;
  test::EnvScope env_;
};

TEST_F(HubCache, AHuggingFaceHubCacheIsResolvedAndLoaded) {
  const std::string sd = kFixtures + "/tiny_sd", tok = kFixtures + "/tokenizer/sd15";
  const fs::path model = write_hf_repo(
      "hand/tiny-sd", {{"model_index.json", sd + "/model_index.json"},
                       {"unet/config.json", sd + "/unet/config.json"},
                       {"unet/diffusion_pytorch_model.safetensors",
                        sd + "/unet/diffusion_pytorch_model.safetensors"},
                       {"text_encoder/config.json", sd + "/text_encoder/config.json"},
                       {"text_encoder/model.safetensors", sd + "/text_encoder/model.safetensors"},
                       {"tokenizer/vocab.json", tok + "/vocab.json"},
                       {"tokenizer/merges.txt", tok + "/merges.txt"}});
  const fs::path taesd = write_hf_repo(
      "hand/taesd", {{"config.json", kFixtures + "/taesd/tiny/config.json"},
                     {"diffusion_pytorch_model.safetensors",
                      kFixtures + "/taesd/tiny/diffusion_pytorch_model.safetensors"}});
  const fs::path lora = write_hf_repo(
      "hand/lora",
      {{"pytorch_lora_weights.safetensors", kFixtures + "/lora/sd2_diffusers.safetensors"}});

  EXPECT_EQ(streamdiff::resolve_model_path("hand/tiny-sd"), model.string());
  EXPECT_EQ(streamdiff::resolve_model_path("hand/taesd"), taesd.string());
  EXPECT_EQ(streamdiff::resolve_model_path("hand/lora"),
            (lora / "pytorch_lora_weights.safetensors").string());
  EXPECT_EQ(streamdiff::resolve_model_path("hand/tiny-sd", model.filename().string()),
            model.string());                                    // a commit as the revision
  EXPECT_EQ(streamdiff::pull("hand/tiny-sd"), model.string());  // offline: the cache's snapshot

  // Model::load through the symlinks (safetensors, configs, the tokenizer folder).
  streamdiff::ModelOptions o;
  o.taesd = "hand/taesd";
  o.dtype = "f32";
  o.threads = 1;
  const streamdiff::Model m = streamdiff::Model::load("hand/tiny-sd", o);
  streamdiff::StreamConfig c;
  c.width = c.height = 64;
  c.prompt = "a watercolor painting";
  streamdiff::Stream s(m, c);
  const streamdiff::Image in = streamdiff::read_image(kFixtures + "/stream/frames/frame_00.png");
  streamdiff::Image out;
  out.width = out.height = 64;
  out.rgb.resize(64 * 64 * 3);
  s.img2img(in.view(), out.mutable_view());
  // ... the same frame as the model read from its committed folder (the tokenizer's ids are the
  // built-in vocabulary's).
  o.taesd = kFixtures + "/taesd/tiny";
  streamdiff::Stream ref(streamdiff::Model::load(sd, o), c);
  streamdiff::Image want = out;
  ref.img2img(in.view(), want.mutable_view());
  EXPECT_EQ(out.rgb, want.rgb);

  // A folder symlinked to the snapshot loads too, and the tools take repository ids.
  fs::create_directory_symlink(model, root_ / "linked-model");
  o.taesd = "hand/taesd";
  EXPECT_EQ(streamdiff::Model::load((root_ / "linked-model").string(), o).info().family, "sd1");
  EXPECT_EQ(streamdiff::TextEncoder::load("hand/tiny-sd", o).encode("a cat").shape,
            (std::vector<int64_t>{77, 32}));
  EXPECT_EQ(streamdiff::Autoencoder::load_taesd("hand/taesd", o).downscale(), 8);

  char path[4096];
  ASSERT_EQ(sd_resolve_model_path("hand/tiny-sd", nullptr, path, sizeof path), SD_OK);
  EXPECT_EQ(std::string(path), model.string());
  ASSERT_EQ(sd_hub_cache_dir(path, sizeof path), SD_OK);
  EXPECT_EQ(std::string(path), (root_ / "cache").string());
  sd_model_options mo;
  sd_model_options_init(&mo);
  EXPECT_EQ(mo.pull, 0);
}

TEST_F(HubCache, MissingRepositoriesNameThePullCommandAndLocalPathsStayAsTheyAre) {
  try {
    streamdiff::resolve_model_path("someone/missing-model", "v2");
    FAIL() << "no error";
  } catch (const streamdiff::Error& e) {
    EXPECT_EQ(e.status(), streamdiff::Status::Io);
    const std::string m = e.what();
    EXPECT_NE(m.find("is not in the Hugging Face cache (" + (root_ / "cache").string() + ")"),
              std::string::npos)
        << m;
    EXPECT_NE(m.find("fetch it with: streamdiff pull someone/missing-model --revision v2"),
              std::string::npos)
        << m;
  }
  EXPECT_EQ(streamdiff::resolve_model_path(kFixtures + "/tiny_sd"), kFixtures + "/tiny_sd");
  EXPECT_EQ(streamdiff::resolve_model_path("models/a/b.safetensors"), "models/a/b.safetensors");
  EXPECT_EQ(streamdiff::resolve_model_path("lonely-name"), "lonely-name");
  // A ref to a snapshot that is not there is no model.
  fs::create_directories(root_ / "cache/models--x--y/refs");
  std::ofstream(root_ / "cache/models--x--y/refs/main") << std::string(40, 'f');
  EXPECT_THROW(streamdiff::resolve_model_path("x/y"), streamdiff::Error);
  // Model::load says the same.
  streamdiff::ModelOptions o;
  o.taesd = kFixtures + "/taesd/tiny";
  try {
    streamdiff::Model::load("someone/missing-model", o);
    FAIL() << "no error";
  } catch (const streamdiff::Error& e) {
    EXPECT_NE(std::string(e.what()).find("streamdiff pull someone/missing-model"),
              std::string::npos)
        << e.what();
  }
}

TEST_F(HubCache, LinksAreRelativeRefsNestAndSymlinkedFoldersAreRefused) {
  const hub::RepoCache repo((root_ / "cache").string(), "org/m");
  const std::string commit(40, 'd');
  fs::create_directories(repo.blobs_dir());
  std::ofstream(repo.blob_path("e1")) << "x";
  repo.link_snapshot_file(commit, "a/b/c.json", "e1");
  const fs::path link = repo.snapshot_file(commit, "a/b/c.json");
  EXPECT_EQ(fs::read_symlink(link), fs::path("../../../../blobs/e1"));
  EXPECT_EQ(read_text(link), "x");
  repo.link_snapshot_file(commit, "a/b/c.json", "e1");  // again: replaced in place
  repo.write_ref("refs/pr/1", commit);
  EXPECT_EQ(repo.cached_commit("refs/pr/1"), commit);
  EXPECT_EQ(repo.cached_commit(commit), commit);
  EXPECT_EQ(repo.cached_commit("main"), "");

  // A snapshot folder that is a symlink (to outside the cache) is not written through.
  fs::create_directories(root_ / "outside");
  fs::create_directory_symlink(root_ / "outside", fs::path(repo.snapshot_dir(commit)) / "unet");
  EXPECT_NE(error_of([&] {
              repo.link_snapshot_file(commit, "unet/x.json", "e1");
            }).find("it is a symlink"),
            std::string::npos);
  EXPECT_FALSE(fs::exists(root_ / "outside" / "x.json"));
  EXPECT_NE(error_of([&] { repo.link_snapshot_file(commit, "../x", "e1"); }).find("refusing"),
            std::string::npos);
}

TEST_F(HubCache, LocksWaitForEachOtherAndFreeSpaceIsChecked) {
  const std::string path = (root_ / "locks" / "e.lock").string();
  auto first = std::make_unique<hub::FileLock>(path, nullptr);
  std::atomic<bool> waited{false}, got{false};
  std::thread t([&] {
    hub::FileLock second(path, [&] { waited = true; });
    got = true;
  });
  while (!waited) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_FALSE(got);  // held by `first`
  first.reset();
  t.join();
  EXPECT_TRUE(got);

  EXPECT_GT(hub::free_bytes(root_.string()), 0);
  EXPECT_NE(error_of([&] {
              hub::check_free_space(root_.string(), int64_t(1) << 62, "x.bin");
            }).find("not enough disk space for x.bin"),
            std::string::npos);
  EXPECT_EQ(hub::format_bytes(1730000000), "1.73 GB");
}

}  // namespace
}  // namespace sd
