// The admin API's routing operations (GET /api/backends, drain, undrain, kick),
// asked as the HTTP server would ask them, with a kick that only records its request.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "proxy/app/admin_api.hpp"

namespace imapscope::app {
namespace {

using json = nlohmann::json;
using namespace std::chrono_literals;

constexpr const char* kToken = "test-token";

transport::HttpRequest request(std::string method, std::string path, std::string body = "") {
  transport::HttpRequest r;
  r.method = std::move(method);
  r.version = "HTTP/1.1";
  r.path = std::move(path);
  r.headers = {{"host", "127.0.0.1:9143"}, {"authorization", std::string("Bearer ") + kToken}};
  if (r.method != "GET") r.headers["content-type"] = "application/json";
  r.body = std::move(body);
  r.content_length = r.body.size();
  return r;
}

json body_of(const transport::HttpResponse& response) { return json::parse(response.body, nullptr, false); }

class AdminRouting : public ::testing::Test {
 protected:
  AdminRouting() : api_(nullptr, nullptr, nullptr, AdminAccess(kToken, {"127.0.0.1", 9143}, {})) {
    pool_->add({"127.0.0.1", 1143}, true);
    pool_->add({"127.0.0.1", 2143}, true);
    api_.set_routing({pool_, [this](const route::KickRequest& k) {
                        kicks_.push_back(k);
                        return std::size_t{3};
                      }});
  }
  transport::HttpResponse ask(std::string method, std::string path, std::string body = "") {
    return api_.handle(request(std::move(method), std::move(path), std::move(body)));
  }

  std::shared_ptr<route::Backends> pool_ = std::make_shared<route::Backends>(64, 2, 1);
  AdminApi api_;
  std::vector<route::KickRequest> kicks_;
};

TEST_F(AdminRouting, ListsBackendsWithTheirState) {
  const auto when = std::chrono::system_clock::time_point{} + 1'796'000'000s;  // 2026-11-30T00:53:20Z
  pool_->check_result({"127.0.0.1", 2143}, false, "connection refused", "", when);
  pool_->session_started({"127.0.0.1", 1143});
  const auto r = ask("GET", "/api/backends");
  ASSERT_EQ(r.status, 200);
  const auto b = body_of(r)["backends"];
  ASSERT_EQ(b.size(), 2U);
  EXPECT_EQ(b[0]["name"], "127.0.0.1:1143");
  EXPECT_EQ(b[0]["state"], "unknown");
  EXPECT_EQ(b[0]["sessions"], 1);
  EXPECT_TRUE(b[0]["last_check"].is_null());
  EXPECT_EQ(b[1]["state"], "down");
  EXPECT_EQ(b[1]["last_error"], "connection refused");
  EXPECT_EQ(b[1]["last_check"], "2026-11-30T00:53:20Z");
  EXPECT_EQ(ask("POST", "/api/backends", "{}").status, 405);
}

TEST_F(AdminRouting, DrainAndUndrain) {
  auto r = ask("POST", "/api/backends/drain", R"({"backend": "127.0.0.1:1143"})");
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(body_of(r), json::parse(R"({"backend": "127.0.0.1:1143", "state": "draining"})"));
  EXPECT_EQ(pool_->admit({"127.0.0.1", 1143}), route::Admission::Draining);
  EXPECT_EQ(body_of(ask("GET", "/api/backends"))["backends"][0]["state"], "draining");
  r = ask("POST", "/api/backends/undrain", R"({"backend": "127.0.0.1:1143"})");
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(body_of(r)["state"], "unknown");
  EXPECT_EQ(pool_->admit({"127.0.0.1", 1143}), route::Admission::Unknown);
}

TEST_F(AdminRouting, DrainRefusesBadBodiesAndUnknownBackends) {
  EXPECT_EQ(ask("POST", "/api/backends/drain", R"({"backend": "127.0.0.1:9"})").status, 404);
  for (const char* bad : {"", "not json", "[]", "{}", R"({"backend": 1143})", R"({"backend": ""})",
                          "{\"backend\": \"a\\r\\nb\"}"}) {
    EXPECT_EQ(ask("POST", "/api/backends/drain", bad).status, 400) << bad;
  }
  EXPECT_EQ(ask("GET", "/api/backends/drain").status, 405);
  EXPECT_EQ(ask("POST", "/api/backends/melt", R"({"backend": "127.0.0.1:1143"})").status, 404);
  // A state change needs JSON: what a form can send is refused before anything happens.
  auto form = request("POST", "/api/backends/drain", R"({"backend": "127.0.0.1:1143"})");
  form.headers["content-type"] = "application/x-www-form-urlencoded";
  EXPECT_EQ(api_.handle(form).status, 415);
  EXPECT_EQ(pool_->admit({"127.0.0.1", 1143}), route::Admission::Unknown);
}

TEST_F(AdminRouting, KickPassesTheRequestOn) {
  auto r = ask("POST", "/api/kick", R"({"user": "alice"})");
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(body_of(r), json::parse(R"({"kicked": 3})"));
  ASSERT_EQ(kicks_.size(), 1U);
  EXPECT_EQ(kicks_[0].user, "alice");
  EXPECT_EQ(kicks_[0].backend, "");
  EXPECT_EQ(kicks_[0].reason, "Disconnected by the administrator");
  EXPECT_EQ(kicks_[0].spread, -1ms);
  r = ask("POST", "/api/kick", R"({"backend": "127.0.0.1:2143", "reason": "Maintenance", "spread_ms": 0})");
  ASSERT_EQ(r.status, 200);
  ASSERT_EQ(kicks_.size(), 2U);
  EXPECT_EQ(kicks_[1].backend, "127.0.0.1:2143");
  EXPECT_EQ(kicks_[1].reason, "Maintenance");
  EXPECT_EQ(kicks_[1].spread, 0ms);
}

TEST_F(AdminRouting, KickRefusesBadBodies) {
  for (const char* bad : {"{}", "3", R"({"user": ["alice"]})", R"({"user": "alice", "spread_ms": -1})",
                          R"({"user": "alice", "spread_ms": 1.5})", R"({"user": "alice", "spread_ms": "10"})",
                          R"({"user": "alice", "reason": ""})", "{\"user\": \"alice\", \"reason\": \"a\\r\\n* OK\"}",
                          R"({"user": "alice", "spread_ms": 99999999999})"}) {
    EXPECT_EQ(ask("POST", "/api/kick", bad).status, 400) << bad;
  }
  EXPECT_EQ(ask("POST", "/api/kick", R"({"user": ")" + std::string(400, 'a') + R"("})").status, 400);
  EXPECT_EQ(ask("POST", "/api/kick", R"({"backend": "10.0.0.1:143"})").status, 404);
  EXPECT_EQ(ask("GET", "/api/kick").status, 405);
  EXPECT_TRUE(kicks_.empty());
}

TEST_F(AdminRouting, NeedsTheCredential) {
  auto r = request("POST", "/api/kick", R"({"user": "alice"})");
  r.headers.erase("authorization");
  EXPECT_EQ(api_.handle(r).status, 401);
  r = request("GET", "/api/backends");
  r.headers["authorization"] = "Bearer wrong";
  EXPECT_EQ(api_.handle(r).status, 401);
  EXPECT_TRUE(kicks_.empty());
}

TEST(AdminTransparentMode, RoutingPathsAnswer404) {
  AdminApi api(nullptr, nullptr, nullptr, AdminAccess(kToken, {"127.0.0.1", 9143}, {}));
  EXPECT_EQ(api.handle(request("GET", "/api/backends")).status, 404);
  EXPECT_EQ(api.handle(request("POST", "/api/backends/drain", R"({"backend": "127.0.0.1:1143"})")).status, 404);
  EXPECT_EQ(api.handle(request("POST", "/api/kick", R"({"user": "alice"})")).status, 404);
}

}  // namespace
}  // namespace imapscope::app
