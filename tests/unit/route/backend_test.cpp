#include "proxy/route/backend.hpp"

#include <gtest/gtest.h>

namespace imapscope::route {
namespace {

TEST(Backend, NameBracketsIPv6) {
  EXPECT_EQ((Backend{"127.0.0.1", 1143}).name(), "127.0.0.1:1143");
  EXPECT_EQ((Backend{"::1", 993, BackendTls::Implicit}).name(), "[::1]:993");
}

}  // namespace
}  // namespace imapscope::route
