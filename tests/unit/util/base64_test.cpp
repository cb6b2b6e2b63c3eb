#include "proxy/util/base64.hpp"

#include <gtest/gtest.h>

namespace imapscope::util {
namespace {

TEST(Base64, EncodesWithPadding) {
  EXPECT_EQ(base64_encode(""), "");
  EXPECT_EQ(base64_encode("f"), "Zg==");
  EXPECT_EQ(base64_encode("fo"), "Zm8=");
  EXPECT_EQ(base64_encode("foo"), "Zm9v");
  EXPECT_EQ(base64_encode("foobar"), "Zm9vYmFy");
  EXPECT_EQ(base64_encode(std::string("\0\xff\xfe", 3)), "AP/+");
}

TEST(Base64, DecodesWhatItEncodes) {
  std::string all;
  for (int c = 0; c < 256; ++c) all += static_cast<char>(c);
  for (std::size_t n = 0; n <= all.size(); n += 7) {
    const auto bytes = all.substr(0, n);
    EXPECT_EQ(base64_decode(base64_encode(bytes)), bytes) << n;
  }
}

TEST(Base64, RefusesAnythingNotCanonical) {
  EXPECT_EQ(base64_decode(""), "");
  for (const char* bad : {"Zg", "Zg=", "Zg===", "Z===", "====", "=", "Zm9v\r\n", " Zm9v", "Zm 9v", "Zm9v=",
                          "Zg==Zm9v", "Zm=v", "Zh==", "Zm9=", "Zm-v", "Zm_v"}) {
    EXPECT_EQ(base64_decode(bad), std::nullopt) << bad;
  }
  EXPECT_EQ(base64_decode(std::string_view("Zm9v\0AAA", 8)), std::nullopt);
}

}  // namespace
}  // namespace imapscope::util
