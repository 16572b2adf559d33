// `streamdiff pull` and the API's pull against tests/fake_hub.py, a local imitation of the
// Hugging Face Hub (HF_ENDPOINT points at it; each test has its own HF_HUB_CACHE): the cache
// layout, a second pull that downloads nothing, resuming after a cut transfer and after Ctrl-C,
// SHA-256 checks, 404 / gated repositories, HF_HUB_OFFLINE, two pulls at once, hostile file lists,
// and repository ids on the CLI's img2img.
#include <gtest/gtest.h>
#include <openssl/evp.h>

#include <filesystem>
#include <set>
#include <string>

#include "hub/hub_hash.h"
#include "hub_test_support.h"
#include "io/image.h"
#include "streamdiff/hub.hpp"
#include "streamdiff/streamdiff.h"
#include "streamdiff/streamdiff.hpp"
#include "test_support.h"

namespace sd {
namespace {

namespace fs = std::filesystem;
using test::quote;
using test::read_text;
using test::run_cli;

const std::string kFixtures = SD_FIXTURE_DIR;
const std::string kFrame = kFixtures + "/stream/frames/frame_00.png";

// The files of test-org/tiny-sd that a pull must fetch (fp16 UNet; no .bin, .fp32, safety
// checker, README or single-file copy at the top).
const std::set<std::string> kTinySdFiles = {
    "model_index.json",
    "scheduler/scheduler_config.json",
    "text_encoder/config.json",
    "text_encoder/model.safetensors",
    "tokenizer/merges.txt",
    "tokenizer/special_tokens_map.json",
    "tokenizer/tokenizer_config.json",
    "tokenizer/vocab.json",
    "unet/config.json",
    "unet/diffusion_pytorch_model.fp16.safetensors",
};

// git's blob id: SHA-1 of "blob <size>\0" + content (the Hub's ETag of a small file).
std::string git_blob_id(const std::string& data) {
  const std::string text = "blob " + std::to_string(data.size()) + std::string(1, '\0') + data;
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(text.data(), text.size(), md, &len, EVP_sha1(), nullptr);
  std::string hex;
  for (unsigned int i = 0; i < len; ++i) {
    hex += "0123456789abcdef"[md[i] >> 4];
    hex += "0123456789abcdef"[md[i] & 15];
  }
  return hex;
}

// Files under `dir` (paths relative to it), not following symlinks.
std::set<std::string> files_under(const fs::path& dir) {
  std::set<std::string> out;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(dir, ec);
       it != fs::recursive_directory_iterator(); ++it)
    if (!it->is_directory()) out.insert(it->path().lexically_relative(dir).string());
  return out;
}

class Hub : public testing::Test {
 protected:
  static void SetUpTestSuite() { hub_ = new test::FakeHub(); }
  static void TearDownTestSuite() {
    delete hub_;
    hub_ = nullptr;
  }

  void SetUp() override {
    session_ = testing::UnitTest::GetInstance()->current_test_info()->name();
    root_ = fs::temp_directory_path() / ("sd_hub_" + std::to_string(::getpid()) + "_" + session_);
    fs::remove_all(root_);
    fs::create_directories(root_);
    env_.set("HF_HUB_CACHE", cache().string());
    env_.set("HF_HOME", (root_ / "home").string());  // no token file of the user's
    env_.set("HF_TOKEN", std::nullopt);
    env_.set("HF_HUB_OFFLINE", std::nullopt);
    use_mode("normal");
  }
  void TearDown() override { fs::remove_all(root_); }

  void use_mode(const std::string& mode) {
    env_.set("HF_ENDPOINT", hub_->endpoint(session_, mode));
  }
  fs::path cache() const { return root_ / "cache"; }
  fs::path repo_dir(const std::string& folder) const { return cache() / folder; }
  nlohmann::json stats() const { return hub_->stats(session_); }

  static test::FakeHub* hub_;
  std::string session_;
  fs::path root_;
  test::EnvScope env_;
};

test::FakeHub* Hub::hub_ = nullptr;

TEST_F(Hub, FullPullGivesTheCacheLayoutAndASecondPullDownloadsNothing) {
  std::vector<streamdiff::PullProgress> events;
  streamdiff::PullOptions o;
  o.on_progress = [&](const streamdiff::PullProgress& p) { events.push_back(p); };
  const std::string snapshot = streamdiff::pull("test-org/tiny-sd", o);

  const fs::path repo = repo_dir("models--test-org--tiny-sd");
  const std::string commit = read_text(repo / "refs" / "main");
  ASSERT_EQ(commit.size(), 40u);
  EXPECT_EQ(fs::path(snapshot), repo / "snapshots" / commit);
  EXPECT_EQ(files_under(snapshot), kTinySdFiles);
  for (const std::string& f : kTinySdFiles) {
    const fs::path link = fs::path(snapshot) / f;
    ASSERT_TRUE(fs::is_symlink(link)) << f;
    const fs::path target = fs::read_symlink(link);
    EXPECT_TRUE(target.is_relative() && target.string().starts_with("../")) << target;
    const fs::path blob = fs::canonical(link);
    EXPECT_EQ(blob.parent_path(), fs::canonical(repo / "blobs")) << f;
    // Blobs are named by ETag: the SHA-256 of LFS files, the git blob id of the others.
    const std::string data = read_text(blob);
    const std::string name = blob.filename().string();
    if (f.ends_with(".safetensors"))
      EXPECT_EQ(name, hub::sha256_file(blob.string())) << f;
    else
      EXPECT_EQ(name, git_blob_id(data)) << f;
  }
  EXPECT_EQ(read_text(fs::path(snapshot) / "text_encoder/model.safetensors"),
            read_text(kFixtures + "/tiny_sd/text_encoder/model.safetensors"));
  for (const std::string& f : files_under(repo / "blobs"))
    EXPECT_FALSE(f.ends_with(".incomplete")) << f;
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events.front().stage, streamdiff::PullProgress::Stage::Start);
  const streamdiff::PullProgress& done = events.back();
  EXPECT_EQ(done.stage, streamdiff::PullProgress::Stage::Done);
  EXPECT_EQ(done.files_done, 10);
  EXPECT_EQ(done.files_total, 10);
  EXPECT_EQ(done.files_cached, 0);
  EXPECT_EQ(done.bytes, done.total_bytes);
  EXPECT_GT(done.received, 3000000);

  const nlohmann::json before = stats();
  events.clear();
  EXPECT_EQ(streamdiff::pull("test-org/tiny-sd", o), snapshot);
  const nlohmann::json after = stats();
  EXPECT_EQ(after["api"], before["api"].get<int>() + 1);
  for (const char* k : {"head", "resolve_get", "storage_get"}) EXPECT_EQ(after[k], before[k]) << k;
  EXPECT_EQ(events.back().files_cached, 10);
  EXPECT_EQ(events.back().received, 0);
  EXPECT_FALSE(after["auth"].get<bool>());  // no token, no Authorization header
}

TEST_F(Hub, ResumesAfterTheServerCutsATransferHalfway) {
  use_mode("cut");
  const std::string snapshot = streamdiff::pull("test-org/tiny-sd");
  EXPECT_EQ(files_under(snapshot), kTinySdFiles);
  const std::string te = read_text(fs::path(snapshot) / "text_encoder/model.safetensors");
  EXPECT_EQ(te, read_text(kFixtures + "/tiny_sd/text_encoder/model.safetensors"));
  // Each LFS file was cut once, then asked for again from where the cut left it.
  const nlohmann::json s = stats();
  EXPECT_EQ(s["storage_get"], 4);  // 2 LFS files, 2 requests each
  std::set<int64_t> ranges(s["ranges"].begin(), s["ranges"].end());
  EXPECT_TRUE(ranges.count(int64_t(te.size() / 2))) << s.dump();
}

TEST_F(Hub, ACancelledPullKeepsItsPartialFileAndTheNextOneResumesIt) {
  use_mode("slow");
  struct Cancel {};
  streamdiff::PullOptions o;
  o.on_progress = [](const streamdiff::PullProgress& p) {
    if (p.file == "text_encoder/model.safetensors" && p.file_bytes > 0) throw Cancel();
  };
  EXPECT_THROW(streamdiff::pull("test-org/tiny-sd", o), Cancel);  // the caller's own exception
  const fs::path blobs = repo_dir("models--test-org--tiny-sd") / "blobs";
  int64_t partial = -1;
  for (const std::string& f : files_under(blobs))
    if (f.ends_with(".incomplete")) partial = int64_t(fs::file_size(blobs / f));
  ASSERT_GT(partial, 0);
  EXPECT_FALSE(fs::exists(repo_dir("models--test-org--tiny-sd") / "refs" / "main"));

  use_mode("normal");
  const std::string snapshot = streamdiff::pull("test-org/tiny-sd");
  EXPECT_EQ(read_text(fs::path(snapshot) / "text_encoder/model.safetensors"),
            read_text(kFixtures + "/tiny_sd/text_encoder/model.safetensors"));
  const nlohmann::json s = stats();
  std::set<int64_t> ranges(s["ranges"].begin(), s["ranges"].end());
  EXPECT_TRUE(ranges.count(partial)) << "resumed at " << partial << ": " << s.dump();
}

TEST_F(Hub, CtrlCStopsTheCliWith130AndTheSameCommandResumes) {
  use_mode("slow");
  const std::string log = (root_ / "pull.log").string();
  const pid_t pid = test::spawn_cli({"pull", "test-org/tiny-sd"}, log);
  const fs::path blobs = repo_dir("models--test-org--tiny-sd") / "blobs";
  fs::path partial;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (partial.empty() && std::chrono::steady_clock::now() < deadline) {
    std::error_code ec;
    for (auto it = fs::directory_iterator(blobs, ec); it != fs::directory_iterator(); ++it)
      // The text encoder's weights (3.2 MB, sent slowly), well under way.
      if (it->path().extension() == ".incomplete" && fs::file_size(it->path(), ec) > 100000)
        partial = it->path();
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  ASSERT_FALSE(partial.empty()) << read_text(log);
  ::kill(pid, SIGINT);
  EXPECT_EQ(test::wait_exit(pid), 130) << read_text(log);
  const std::string out = read_text(log);
  EXPECT_NE(out.find("interrupted: "), std::string::npos) << out;
  EXPECT_NE(out.find("MB kept, run the same command to resume"), std::string::npos) << out;
  ASSERT_TRUE(fs::exists(partial));
  const int64_t kept = int64_t(fs::file_size(partial));
  EXPECT_GT(kept, 0);

  use_mode("normal");
  const test::RunResult r = run_cli("pull test-org/tiny-sd");
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_FALSE(fs::exists(partial));
  const nlohmann::json s = stats();
  std::set<int64_t> ranges(s["ranges"].begin(), s["ranges"].end());
  EXPECT_TRUE(ranges.count(kept)) << "kept " << kept << ": " << s.dump();
  EXPECT_NE(r.output.find("resuming after"), std::string::npos) << r.output;
}

TEST_F(Hub, AWrongSha256IsRejectedAndNothingIsLeftUnderAFinalName) {
  use_mode("badsha");
  try {
    streamdiff::pull("test-org/tiny-lora");
    FAIL() << "no error";
  } catch (const streamdiff::Error& e) {
    EXPECT_EQ(e.status(), streamdiff::Status::Io);
    const std::string m = e.what();
    EXPECT_NE(m.find("pytorch_lora_weights.safetensors failed its SHA-256 check"),
              std::string::npos)
        << m;
  }
  const fs::path repo = repo_dir("models--test-org--tiny-lora");
  EXPECT_TRUE(files_under(repo / "blobs").empty());  // no blob, no .incomplete
  EXPECT_FALSE(fs::exists(repo / "refs" / "main"));
  EXPECT_TRUE(files_under(repo / "snapshots").empty());
}

TEST_F(Hub, MissingAndGatedRepositoriesGiveClearMessages) {
  test::RunResult r = run_cli("pull test-org/no-such-model");
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_NE(r.output.find("repository test-org/no-such-model was not found"), std::string::npos)
      << r.output;

  r = run_cli("pull test-org/gated");
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_NE(r.output.find("test-org/gated is a gated repository"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("HTTP 401"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find(hub_->endpoint(session_) + "/test-org/gated"), std::string::npos)
      << r.output;  // where to accept the conditions
  EXPECT_NE(r.output.find("set HF_TOKEN"), std::string::npos) << r.output;

  env_.set("HF_TOKEN", "hf_wrong_secret_1234");
  r = run_cli("pull test-org/gated");
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_NE(r.output.find("has no access"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("hf_wrong_secret_1234"), std::string::npos) << r.output;  // never shown

  env_.set("HF_TOKEN", "hf_test_token");
  r = run_cli("pull test-org/gated");
  EXPECT_EQ(r.code, 0) << r.output;
  EXPECT_EQ(r.output.find("hf_test_token"), std::string::npos) << r.output;
  EXPECT_TRUE(stats()["auth"].get<bool>());
}

TEST_F(Hub, OfflineModeUsesOnlyTheCache) {
  env_.set("HF_HUB_OFFLINE", "1");
  try {
    streamdiff::pull("test-org/tiny-taesd");
    FAIL() << "no error";
  } catch (const streamdiff::Error& e) {
    EXPECT_NE(std::string(e.what()).find("HF_HUB_OFFLINE is set"), std::string::npos) << e.what();
  }
  EXPECT_EQ(stats()["api"], 0);

  env_.set("HF_HUB_OFFLINE", std::nullopt);
  const std::string snapshot = streamdiff::pull("test-org/tiny-taesd");
  const int api = stats()["api"].get<int>();
  env_.set("HF_HUB_OFFLINE", "true");
  EXPECT_EQ(streamdiff::pull("test-org/tiny-taesd"), snapshot);
  EXPECT_EQ(streamdiff::resolve_model_path("test-org/tiny-taesd"), snapshot);
  EXPECT_EQ(stats()["api"], api);  // no request at all
}

TEST_F(Hub, TwoConcurrentPullsOfTheSameRepository) {
  use_mode("slow");
  const std::string log_a = (root_ / "a.log").string(), log_b = (root_ / "b.log").string();
  const pid_t a = test::spawn_cli({"pull", "test-org/tiny-sd"}, log_a);
  const pid_t b = test::spawn_cli({"pull", "test-org/tiny-sd"}, log_b);
  EXPECT_EQ(test::wait_exit(a), 0) << read_text(log_a);
  EXPECT_EQ(test::wait_exit(b), 0) << read_text(log_b);
  const fs::path repo = repo_dir("models--test-org--tiny-sd");
  const std::string snapshot = (repo / "snapshots" / read_text(repo / "refs" / "main")).string();
  EXPECT_NE(read_text(log_a).find(snapshot), std::string::npos);
  EXPECT_NE(read_text(log_b).find(snapshot), std::string::npos);
  EXPECT_EQ(files_under(snapshot), kTinySdFiles);
  EXPECT_EQ(read_text(fs::path(snapshot) / "text_encoder/model.safetensors"),
            read_text(kFixtures + "/tiny_sd/text_encoder/model.safetensors"));
  for (const std::string& f : files_under(repo / "blobs"))
    EXPECT_FALSE(f.ends_with(".incomplete") || f.find(".tmp.") != std::string::npos) << f;
  EXPECT_EQ(stats()["storage_get"], 2);  // each LFS file downloaded once, by one of them
}

TEST_F(Hub, HostileFileListsAreRefused) {
  for (const char* repo : {"hostile-dotdot", "hostile-absolute", "hostile-backslash"}) {
    const test::RunResult r = run_cli(std::string("pull test-org/") + repo);
    EXPECT_EQ(r.code, 1) << r.output;
    EXPECT_NE(r.output.find("refusing the file list of test-org/" + std::string(repo)),
              std::string::npos)
        << r.output;
  }
  const test::RunResult r = run_cli("pull test-org/hostile-etag");
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_NE(r.output.find("cannot name a file in the cache"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(root_ / "etc"));
  EXPECT_FALSE(fs::exists(cache() / "escaped"));
  EXPECT_FALSE(fs::exists(repo_dir("models--test-org--hostile-etag") / "escaped"));
  for (const std::string& f : files_under(cache()))
    EXPECT_EQ(f.find("snapshots/"), std::string::npos) << f;
}

TEST_F(Hub, RepositoryIdsRunImg2imgAndAMissingOneNamesThePullCommand) {
  const std::string args =
      " --taesd test-org/tiny-taesd --lora test-org/tiny-lora:0.5"
      " --prompt 'a cat' --width 64 --height 64 --dtype f32 --threads 1"
      " --input " +
      quote(kFrame) + " --output " + quote((root_ / "out.png").string());
  test::RunResult r = run_cli("img2img --model test-org/tiny-sd" + args);
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_NE(r.output.find("fetch it with: streamdiff pull test-org/tiny-sd"), std::string::npos)
      << r.output;
  EXPECT_FALSE(fs::exists(root_ / "out.png"));

  r = run_cli("img2img --pull --model test-org/tiny-sd" + args);  // fetches all three
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("fused LoRA"), std::string::npos) << r.output;
  const Image out = read_image((root_ / "out.png").string());
  EXPECT_EQ(out.width, 64);
  EXPECT_EQ(out.height, 64);
  const int api = stats()["api"].get<int>();
  fs::remove(root_ / "out.png");

  r = run_cli("img2img --model test-org/tiny-sd" + args);  // now from the cache, no requests
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_TRUE(fs::exists(root_ / "out.png"));
  EXPECT_EQ(stats()["api"], api);

  // The same through the API: Model::load takes repository ids.
  streamdiff::ModelOptions o;
  o.taesd = "test-org/tiny-taesd";
  o.loras = {{"test-org/tiny-lora", 0.5f}};
  o.dtype = "f32";
  o.threads = 1;
  const streamdiff::Model m = streamdiff::Model::load("test-org/tiny-sd", o);
  EXPECT_EQ(m.info().path, "test-org/tiny-sd");
  EXPECT_EQ(m.info().loras.size(), 1u);
}

TEST_F(Hub, IncludeChoosesAmongSeveralFilesAndCApiPulls) {
  test::RunResult r = run_cli("pull test-org/two-files");
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_NE(r.output.find("holds 2 .safetensors files (a.safetensors, b.safetensors)"),
            std::string::npos)
      << r.output;
  r = run_cli("pull test-org/two-files --include 'a.*'");
  ASSERT_EQ(r.code, 0) << r.output;
  const fs::path repo = repo_dir("models--test-org--two-files");
  const fs::path snapshot = repo / "snapshots" / read_text(repo / "refs" / "main");
  EXPECT_EQ(files_under(snapshot), std::set<std::string>{"a.safetensors"});
  EXPECT_EQ(streamdiff::resolve_model_path("test-org/two-files"),
            (snapshot / "a.safetensors").string());

  char path[4096];
  ASSERT_EQ(sd_pull("test-org/tiny-lora", nullptr, path, sizeof path), SD_OK) << sd_last_error();
  char resolved[4096];
  ASSERT_EQ(sd_resolve_model_path("test-org/tiny-lora", "main", resolved, sizeof resolved), SD_OK);
  EXPECT_EQ(std::string(resolved), std::string(path) + "/pytorch_lora_weights.safetensors");
  char small[8];
  EXPECT_EQ(sd_resolve_model_path("test-org/tiny-lora", nullptr, small, sizeof small),
            SD_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(sd_pull("test-org/not-there", nullptr, path, sizeof path), SD_ERR_IO);
  EXPECT_NE(std::string(sd_last_error()).find("not found"), std::string::npos) << sd_last_error();
  EXPECT_EQ(sd_pull("not a repo id", nullptr, path, sizeof path), SD_ERR_INVALID_ARGUMENT);
}

}  // namespace
}  // namespace sd
