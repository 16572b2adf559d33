// `streamdiff serve` end to end on loopback, with the committed tiny model: the demo's protocol,
// several clients whose outputs are traced to their own inputs, bad input of every kind (the
// server answers with an error or a close and keeps serving the others), the token and Origin
// checks, a full server, the idle timeout, txt2img, and bounded memory over 1000 frames.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <thread>

#include "api_test_support.h"
#include "serve/server.h"
#include "serve_client.h"
#include "streamdiff/tools.hpp"

namespace streamdiff {
namespace {

using nlohmann::json;
using test::http_get;
using test::MjpegReader;
using test::WsClient;

constexpr int kQuality = 85;

serve::ServerOptions options() {
  serve::ServerOptions o;
  o.port = 0;
  o.max_clients = 20;
  o.io_threads = 2;
  o.jpeg_quality = kQuality;
  o.img2img = test::tiny_config();
  o.txt2img = test::tiny_config();
  o.txt2img.t_index_list = {45};
  o.txt2img.cfg_type = CfgType::None;
  return o;
}

std::string uuid(int k) {
  char s[40];
  std::snprintf(s, sizeof s, "00000000-0000-4000-8000-%012d", k);
  return s;
}

// A 64x64 picture that only client `c`'s frame `f` has.
std::vector<uint8_t> frame_jpeg(int c, int f) {
  Image img;
  img.width = img.height = 64;
  img.rgb.resize(64 * 64 * 3);
  for (int y = 0; y < 64; ++y)
    for (int x = 0; x < 64; ++x) {
      uint8_t* p = &img.rgb[size_t((y * 64 + x) * 3)];
      p[0] = uint8_t(c * 37 + x * 2);
      p[1] = uint8_t(f * 50 + y * 3);
      p[2] = uint8_t(((x / (4 + c)) + (y / 8)) % 2 ? 220 : 30);
    }
  return encode_jpeg(img, 90);
}

class Serve : public testing::Test {
 protected:
  void start(serve::ServerOptions o = options()) {
    server_ = std::make_unique<serve::Server>(test::tiny_model(), o);
    port_ = server_->port();
  }
  void TearDown() override { server_.reset(); }

  std::unique_ptr<serve::Server> server_;
  int port_ = 0;
};

TEST_F(Serve, SettingsQueueHealthAndTheDemosSchema) {
  start();
  auto r = http_get(port_, "/api/settings");
  ASSERT_EQ(r.status, 200) << r.body;
  const json s = json::parse(r.body);
  EXPECT_EQ(s["info"]["properties"]["input_mode"]["default"], "image");
  const json& p = s["input_params"]["properties"];
  EXPECT_EQ(p["prompt"]["field"], "textarea");
  EXPECT_EQ(p["prompt"]["default"], "a photo of a cat");
  EXPECT_EQ(p["width"]["default"], 64);
  EXPECT_EQ(p["width"]["step"], 32);
  EXPECT_TRUE(p["width"]["hide"].get<bool>());
  EXPECT_EQ(p["t_index_list"]["default"], json({32, 45}));
  EXPECT_EQ(s["max_queue_size"], 20);
  EXPECT_EQ(json::parse(http_get(port_, "/api/queue").body)["queue_size"], 0);
  EXPECT_EQ(json::parse(http_get(port_, "/api/health").body)["status"], "ok");
  r = http_get(port_, "/");
  EXPECT_EQ(r.status, 200);
  EXPECT_NE(r.content_type.find("text/html"), std::string::npos);
  EXPECT_NE(r.body.find("/app.js"), std::string::npos);
  EXPECT_EQ(http_get(port_, "/app.js").status, 200);
  EXPECT_EQ(http_get(port_, "/../../etc/passwd").status, 404);
  EXPECT_EQ(http_get(port_, "/nothing").status, 404);
  EXPECT_EQ(http_get(port_, "/api/stream/" + uuid(99)).status, 404);
  EXPECT_EQ(http_get(port_, "/view/not-a-uuid").status, 404);
  r = http_get(port_, "/view/" + uuid(3));
  EXPECT_NE(r.body.find("/api/stream/" + uuid(3)), std::string::npos);
}

TEST_F(Serve, OneClientFollowsTheDemosProtocol) {
  start();
  WsClient ws(port_, uuid(1));
  EXPECT_EQ(ws.read()->dump(), R"({"message":"Connected","status":"connected"})");
  EXPECT_EQ((*ws.read())["status"], "wait");
  EXPECT_EQ((*ws.read())["status"], "send_frame");
  MjpegReader mjpeg(port_, "/api/stream/" + uuid(1));
  EXPECT_NE(mjpeg.status_line.find("200"), std::string::npos);
  EXPECT_NE(mjpeg.headers.find("multipart/x-mixed-replace;boundary=frame"), std::string::npos);
  ws.frame({{"prompt", "a dog"}, {"width", 64}, {"height", 64}}, frame_jpeg(1, 0));
  EXPECT_EQ((*ws.read())["status"], "send_frame");  // the engine took the frame
  const std::vector<uint8_t> jpeg = mjpeg.next();
  ASSERT_FALSE(jpeg.empty());
  const Image out = decode_image(jpeg.data(), jpeg.size(), "output");
  EXPECT_EQ(out.width, 64);
  const json stats = json::parse(http_get(port_, "/api/stats").body);
  ASSERT_EQ(stats["sessions"].size(), 1u);
  EXPECT_EQ(stats["sessions"][0]["prompt"], "a dog");
  EXPECT_EQ(stats["sessions"][0]["frames_out"], 1);
  const std::string metrics = http_get(port_, "/metrics").body;
  EXPECT_NE(metrics.find("streamdiff_sessions 1"), std::string::npos) << metrics;
  EXPECT_NE(metrics.find("streamdiff_session_frames_out_total{session=\"" + uuid(1) + "\"} 1"),
            std::string::npos)
      << metrics;
  // An empty frame (the demo's client before its camera starts) is answered with send_frame.
  ws.frame(json::object(), {});
  EXPECT_EQ((*ws.read())["status"], "send_frame");
}

// Each client's outputs are exactly the frames a stream of its own computes from its own
// inputs: the server's JPEGs equal those encoded from a local stream fed the same decoded frames.
TEST_F(Serve, ManyClientsGetOnlyTheirOwnFrames) {
  start();
  constexpr int kClients = 8, kFrames = 4;
  std::vector<std::vector<std::vector<uint8_t>>> expected(kClients);
  for (int c = 0; c < kClients; ++c) {
    Stream local(test::tiny_model(), test::tiny_config());
    Image out;
    out.width = out.height = 64;
    out.rgb.resize(64 * 64 * 3);
    for (int f = 0; f < kFrames; ++f) {
      const std::vector<uint8_t> in = frame_jpeg(c, f);
      local.img2img(decode_image(in.data(), in.size(), "in").view(), out.mutable_view());
      expected[size_t(c)].push_back(encode_jpeg(out, kQuality));
    }
  }
  std::vector<std::thread> clients;
  std::vector<std::string> failures(kClients);
  for (int c = 0; c < kClients; ++c)
    clients.emplace_back([&, c] {
      WsClient ws(port_, uuid(100 + c));
      if (!ws.read_until("send_frame")) return void(failures[size_t(c)] = "no send_frame");
      auto seen = std::async(std::launch::async, [&] {
        MjpegReader mjpeg(port_, "/api/stream/" + uuid(100 + c));
        size_t next = 0;  // outputs come in order; a slow viewer may skip some
        while (next < kFrames) {
          const std::vector<uint8_t> jpeg = mjpeg.next();
          if (jpeg.empty()) return std::string("the stream ended early");
          while (next < kFrames && jpeg != expected[size_t(c)][next]) ++next;
          if (next == kFrames) return std::string("an output that is not one of this client's");
          if (next == kFrames - 1) return std::string();
          ++next;
        }
        return std::string();
      });
      for (int f = 0; f < kFrames; ++f) {
        ws.frame({{"width", 64}, {"height", 64}}, frame_jpeg(c, f));
        if (!ws.read_until("send_frame")) return void(failures[size_t(c)] = "closed");
      }
      failures[size_t(c)] = seen.get();
      ws.close();
    });
  for (auto& t : clients) t.join();
  for (int c = 0; c < kClients; ++c) EXPECT_EQ(failures[size_t(c)], "") << "client " << c;
}

TEST_F(Serve, BadInputGetsAnErrorOrACloseAndOthersKeepGoing) {
  serve::ServerOptions o = options();
  o.max_message = 1 << 20;
  start(o);
  WsClient good(port_, uuid(1));
  ASSERT_TRUE(good.read_until("send_frame"));
  auto rejected_total = [&] {
    const std::string body = http_get(port_, "/metrics").body;
    const std::string key = "\nstreamdiff_rejected_total ";
    const size_t at = body.find(key);
    return at == std::string::npos ? -1L : std::stol(body.substr(at + key.size()));
  };
  auto expect_error = [&](int id, const std::function<void(WsClient&)>& misbehave,
                          const std::string& message) {
    WsClient bad(port_, uuid(id));
    ASSERT_TRUE(bad.read_until("send_frame"));
    const long rejected_before = rejected_total();
    bool write_broke = false;
    try {
      misbehave(bad);
    } catch (const std::exception&) {  // Beast's system_error: EPIPE, ECONNRESET
      write_broke = true;
    }
    EXPECT_TRUE(!write_broke || message.empty()) << "a write failed before: " << message;
    json last;
    if (message.empty()) {  // refused by the WebSocket layer: a close with code 1009
      EXPECT_FALSE(bad.read_until("error", &last)) << last.dump();
      // The server fails the connection as soon as the frame header is read, so the client may
      // still be writing: then its write breaks and the close frame can be lost with the
      // connection. The server's count of refused messages says what happened either way.
      if (!write_broke) {
        EXPECT_EQ(bad.stream().reason().code, test::websocket::close_code::too_big);
      }
      // (counted when the server's read handler runs, which may be just after the close)
      const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
      while (rejected_total() <= rejected_before && std::chrono::steady_clock::now() < deadline)
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
      EXPECT_GT(rejected_total(), rejected_before);
      return;
    }
    EXPECT_TRUE(bad.read_until("error", &last)) << message;
    EXPECT_NE(last.value("message", "").find(message), std::string::npos) << last.dump();
    EXPECT_FALSE(bad.read().has_value()) << "not closed after the error: " << message;
  };
  expect_error(
      2, [](WsClient& w) { w.text("{not json"); }, "not JSON");
  expect_error(
      3, [](WsClient& w) { w.binary(frame_jpeg(0, 0)); }, "before {\"status\":\"next_frame\"}");
  expect_error(
      4,
      [](WsClient& w) {
        w.text(R"({"status":"next_frame"})");
        w.binary(frame_jpeg(0, 0));
      },
      "a binary message before the params");
  expect_error(
      5,
      [](WsClient& w) {
        w.frame(json::object(), std::vector<uint8_t>{'n', 'o', 't', ' ', 'j', 'p', 'e', 'g'});
      },
      "not a PNG or JPEG");
  expect_error(
      6,
      [](WsClient& w) {
        w.frame({{"width", 100}}, frame_jpeg(0, 0));
      },
      "'width' is 100, not a multiple of 32");
  expect_error(
      7,
      [](WsClient& w) {
        w.frame({{"t_index_list", {45, 32}}}, frame_jpeg(0, 0));
      },
      "ascending");
  expect_error(
      8,
      [](WsClient& w) {
        w.text(R"({"status":"next_frame"})");
        w.text("{}");
        w.binary(std::vector<uint8_t>(2 << 20, 0xff));  // above the 1 MiB limit of this server
      },
      "");
  {  // A JPEG whose header claims 8192 x 8192: refused before its pixels are allocated.
    Image small;
    small.width = small.height = 8;
    small.rgb.assign(8 * 8 * 3, 128);
    std::vector<uint8_t> jpeg = encode_jpeg(small, 90);
    for (size_t i = 0; i + 8 < jpeg.size(); ++i)
      if (jpeg[i] == 0xff && jpeg[i + 1] == 0xc0) {  // SOF0: height, width at +5, +7
        jpeg[i + 5] = 0x20, jpeg[i + 6] = 0x00, jpeg[i + 7] = 0x20, jpeg[i + 8] = 0x00;
        break;
      }
    expect_error(
        9, [&](WsClient& w) { w.frame(json::object(), jpeg); }, "exceeds 4096");
  }
  // Not JSON, and its first 40 bytes end inside a two-byte character: the error quotes it
  // without breaking the JSON it is sent in.
  expect_error(
      11,
      [](WsClient& w) {
        w.text("a" + std::string(30, 'x') + "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9");
      },
      "not JSON: axxx");
  {  // A path that is not UTF-8: a 404 in JSON, not an exception out of the network thread.
    const auto r = http_get(port_, "/\xc3(\xff");
    EXPECT_EQ(r.status, 404);
    EXPECT_TRUE(json::parse(r.body, nullptr, false).is_object()) << r.body;
  }
  {  // A disconnect mid-frame.
    WsClient gone(port_, uuid(10));
    ASSERT_TRUE(gone.read_until("send_frame"));
    gone.text(R"({"status":"next_frame"})");
    gone.text(R"({"prompt":"x"})");
    gone.close();
  }
  EXPECT_EQ(http_get(port_, "/api/stream/" + uuid(999)).status, 404);
  // The well-behaved client still gets its frames.
  MjpegReader mjpeg(port_, "/api/stream/" + uuid(1));
  good.frame({{"width", 64}}, frame_jpeg(1, 0));
  EXPECT_TRUE(good.read_until("send_frame"));
  EXPECT_FALSE(mjpeg.next().empty());
  EXPECT_EQ(json::parse(http_get(port_, "/api/health").body)["status"], "ok");
}

TEST_F(Serve, FullServerTimeoutTokenAndOrigin) {
  serve::ServerOptions o = options();
  o.max_clients = 2;
  o.idle_timeout_s = 1;
  o.token = "s3cret";
  start(o);
  EXPECT_EQ(http_get(port_, "/api/settings").status, 401);
  EXPECT_EQ(http_get(port_, "/api/settings?token=wrong").status, 401);
  EXPECT_EQ(http_get(port_, "/api/settings?token=s3cret").status, 200);
  EXPECT_EQ(http_get(port_, "/api/queue", {{"Authorization", "Bearer s3cret"}}).status, 200);
  EXPECT_EQ(http_get(port_, "/", {{"Cookie", "a=b; streamdiff_token=s3cret"}}).status, 200);
  EXPECT_THROW(WsClient(port_, uuid(1)), std::exception);  // no token: 401, no upgrade
  EXPECT_THROW(WsClient(port_, uuid(1), "?token=s3cret", "http://evil.example"), std::exception);
  WsClient a(port_, uuid(1), "?token=s3cret", "http://127.0.0.1:" + std::to_string(port_));
  WsClient b(port_, uuid(2), "?token=s3cret");
  ASSERT_TRUE(a.read_until("send_frame"));
  ASSERT_TRUE(b.read_until("send_frame"));
  WsClient c(port_, uuid(3), "?token=s3cret");
  json last;
  EXPECT_FALSE(c.read_until("connected", &last));
  EXPECT_EQ(last.dump(), R"({"message":"Server is full","status":"error"})");
  // a and b send nothing: after the 1 s idle timeout both are told so and closed.
  EXPECT_TRUE(a.read_until("timeout", &last));
  EXPECT_EQ(last["message"], "Your session has ended");
  EXPECT_FALSE(a.read().has_value());
}

TEST_F(Serve, Txt2ImgPredict) {
  start();
  auto r = test::http_request(port_, test::http::verb::post, "/api/predict",
                              R"({"prompt":"a red car","seed":5})");
  ASSERT_EQ(r.status, 200) << r.body;
  const std::string b64 = json::parse(r.body)["base64_image"];
  EXPECT_GT(b64.size(), 100u);
  EXPECT_EQ(b64.substr(0, 4), "/9j/");  // a JPEG (FF D8 FF) in base64
  r = test::http_request(port_, test::http::verb::post, "/api/predict", "not json");
  EXPECT_EQ(r.status, 400);
  r = test::http_request(port_, test::http::verb::post, "/api/predict", R"({"seed":-3})");
  EXPECT_EQ(r.status, 422);
  EXPECT_NE(r.body.find("seed"), std::string::npos);
}

TEST_F(Serve, MemoryStaysFlatOverAThousandFrames) {
  start();
  WsClient ws(port_, uuid(7));
  ASSERT_TRUE(ws.read_until("send_frame"));
  const std::vector<uint8_t> jpeg = frame_jpeg(7, 1);
  int64_t rss_warm = 0;
  for (int f = 0; f < 1000; ++f) {
    ws.frame({{"seed", f % 7}}, jpeg);
    ASSERT_TRUE(ws.read_until("send_frame")) << "frame " << f;
    if (f == 199) rss_warm = process_memory().rss;
  }
  const int64_t rss_end = process_memory().rss;
  const json s = json::parse(http_get(port_, "/api/stats").body)["sessions"][0];
  EXPECT_GE(s["frames_in"].get<int>(), 1000);
  EXPECT_LT(rss_end - rss_warm, std::max<int64_t>(rss_warm / 20, 8 << 20))
      << "RSS grew from " << rss_warm << " to " << rss_end << " bytes over 800 frames";
}

}  // namespace
}  // namespace streamdiff
