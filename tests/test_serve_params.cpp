// The server's parameters and routes as plain functions: params parsing and its errors, applying
// params to a stream (only what changed), the schema, targets, ids, the token and Origin checks.
#include <gtest/gtest.h>

#include "api_test_support.h"
#include "serve/params.h"
#include "serve/routes.h"

namespace streamdiff::serve {
namespace {

using nlohmann::json;

std::string error_of(const json& j, const ParamLimits& l = ParamLimits{}) {
  try {
    parse_params(j, l);
  } catch (const ParamError& e) {
    return e.what();
  }
  return "";
}

TEST(ServeParams, ParsesEveryKeyAndIgnoresUnknownOnes) {
  const FrameParams p = parse_params(
      {{"prompt", "a cat"},
       {"negative_prompt", "blurry"},
       {"width", 512},
       {"height", 256},
       {"guidance_scale", 1.5},
       {"delta", 0.5},
       {"seed", 12345678901.0},
       {"t_index_list", {20, 40}},
       {"similarity_filter", true},
       {"similarity_threshold", 0.97},
       {"prompt_blend", json::array({json::array({"a cat", 0.3}), json::array({"a dog", 0.7})})},
       {"blend", "slerp"},
       {"image", "ignored"}},
      ParamLimits{});
  EXPECT_EQ(*p.prompt, "a cat");
  EXPECT_EQ(*p.width, 512);
  EXPECT_EQ(*p.height, 256);
  EXPECT_FLOAT_EQ(*p.guidance_scale, 1.5f);
  EXPECT_EQ(*p.seed, 12345678901u);
  EXPECT_EQ(*p.t_index_list, (std::vector<int>{20, 40}));
  EXPECT_TRUE(*p.similarity_filter);
  ASSERT_EQ(p.prompt_blend->size(), 2u);
  EXPECT_EQ((*p.prompt_blend)[1].prompt, "a dog");
  EXPECT_EQ(*p.blend, Blend::Slerp);
  const FrameParams empty = parse_params(json::object(), ParamLimits{});
  EXPECT_FALSE(empty.prompt || empty.width || empty.seed || empty.t_index_list);
}

TEST(ServeParams, BadValuesNameTheKey) {
  EXPECT_NE(error_of(json::array()).find("expected a JSON object"), std::string::npos);
  EXPECT_NE(error_of({{"prompt", 5}}).find("'prompt' must be a string"), std::string::npos);
  EXPECT_NE(error_of({{"prompt", std::string(5000, 'x')}}).find("5000 bytes"), std::string::npos);
  EXPECT_NE(error_of({{"width", 100}}).find("'width' is 100, not a multiple of 64"),
            std::string::npos);
  EXPECT_NE(error_of({{"width", 4096}}).find("not in [64, 1024]"), std::string::npos);
  EXPECT_NE(error_of({{"height", "512"}}).find("'height' must be a number"), std::string::npos);
  EXPECT_NE(error_of({{"guidance_scale", -1}}).find("guidance_scale"), std::string::npos);
  EXPECT_NE(error_of({{"seed", 1.5}}).find("whole number"), std::string::npos);
  EXPECT_NE(error_of({{"seed", -1}}).find("'seed'"), std::string::npos);
  EXPECT_NE(error_of({{"t_index_list", {40, 20}}}).find("ascending"), std::string::npos);
  EXPECT_NE(error_of({{"t_index_list", {60}}}).find("t_index_list"), std::string::npos);
  EXPECT_NE(error_of({{"t_index_list", json::array()}}).find("1 to 50"), std::string::npos);
  EXPECT_NE(error_of({{"similarity_filter", 1}}).find("true or false"), std::string::npos);
  EXPECT_NE(
      error_of({{"prompt_blend", json::array({json::array({"a", 0}), json::array({"b", 0})})}})
          .find("sum to 0"),
      std::string::npos);
  EXPECT_NE(error_of({{"prompt_blend", json::array({"a"})}}).find("[prompt, weight]"),
            std::string::npos);
  EXPECT_NE(error_of({{"prompt_blend", json::array({json::array({"a", 1}), json::array({"b", 1}),
                                                    json::array({"c", 1})})},
                      {"blend", "slerp"}})
                .find("slerp blends exactly two"),
            std::string::npos);
  EXPECT_NE(error_of({{"blend", "cubic"}}).find("\"linear\" or \"slerp\""), std::string::npos);
}

TEST(ServeParams, ApplyChangesOnlyWhatDiffers) {
  StreamConfig c = test::tiny_config();
  Stream s(test::tiny_model(), c);
  ParamLimits l;
  l.size_multiple = 32;
  apply_params(parse_params({{"prompt", "a dog"}, {"seed", 9}, {"width", 96}}, l), s, c);
  EXPECT_EQ(s.config().prompt, "a dog");
  EXPECT_EQ(s.config().seed, 9u);
  EXPECT_EQ(s.config().width, 96);
  EXPECT_EQ(c.width, 96);
  apply_params(
      parse_params({{"prompt_blend", json::array({json::array({"a", 1}), json::array({"b", 1})})}},
                   l),
      s, c);
  EXPECT_EQ(s.config().prompt, "a");  // the blend's first prompt
  apply_params(parse_params({{"prompt_blend", json::array()}}, l), s, c);
  EXPECT_EQ(s.config().prompt, "a dog");  // an empty blend goes back to the prompt
}

TEST(ServeParams, SchemaHasTheDemosHints) {
  ParamLimits l;
  const json s = input_params_schema(test::tiny_config(), l);
  const json& p = s["properties"];
  EXPECT_EQ(s["title"], "InputParams");
  EXPECT_EQ(p["prompt"]["field"], "textarea");
  EXPECT_EQ(p["prompt"]["id"], "prompt");
  EXPECT_EQ(p["guidance_scale"]["field"], "range");
  EXPECT_EQ(p["seed"]["field"], "seed");
  EXPECT_EQ(p["width"]["min"], 64);
  EXPECT_EQ(p["similarity_filter"]["type"], "boolean");
}

TEST(ServeRoutes, TargetsIdsTokensAndOrigins) {
  std::string path;
  std::map<std::string, std::string> q;
  split_target("/api/settings?token=a%20b&x=1+2&flag", &path, &q);
  EXPECT_EQ(path, "/api/settings");
  EXPECT_EQ(q["token"], "a b");
  EXPECT_EQ(q["x"], "1 2");
  EXPECT_TRUE(q.count("flag"));
  EXPECT_TRUE(is_uuid("0f8fad5b-d9cb-469f-a165-70867728950e"));
  EXPECT_FALSE(is_uuid("0f8fad5b-d9cb-469f-a165-70867728950"));
  EXPECT_FALSE(is_uuid("../../../etc/passwd-0000-0000-00000000"));
  EXPECT_EQ(uuid_after("/api/ws/0f8fad5b-d9cb-469f-a165-70867728950e", "/api/ws/"),
            "0f8fad5b-d9cb-469f-a165-70867728950e");
  EXPECT_EQ(uuid_after("/api/ws/x", "/api/ws/"), "");

  Request r;
  EXPECT_TRUE(authorized(r, ""));
  EXPECT_FALSE(authorized(r, "t"));
  r.query["token"] = "t";
  EXPECT_TRUE(authorized(r, "t"));
  r.query.clear();
  r.headers["authorization"] = "Bearer t";
  EXPECT_TRUE(authorized(r, "t"));
  r.headers["authorization"] = "Bearer tt";
  EXPECT_FALSE(authorized(r, "t"));
  r.headers.erase("authorization");
  r.headers["cookie"] = "x=1; streamdiff_token=t";
  EXPECT_TRUE(authorized(r, "t"));

  Request o;
  EXPECT_TRUE(origin_allowed(o, {}));  // no Origin: not a browser
  o.headers["host"] = "127.0.0.1:7860";
  o.headers["origin"] = "http://127.0.0.1:7860";
  EXPECT_TRUE(origin_allowed(o, {}));
  o.headers["origin"] = "http://evil.example";
  EXPECT_FALSE(origin_allowed(o, {}));
  EXPECT_TRUE(origin_allowed(o, {"http://evil.example"}));
}

}  // namespace
}  // namespace streamdiff::serve
