// Hand-written event lines parse as JSON and keep the text, whatever bytes the
// traffic had: quotes, controls, 8-bit charsets, broken and overlong UTF-8.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "proxy/inspect/json_line.hpp"

namespace imapscope::inspect {
namespace {

using json = nlohmann::json;

std::string roundtrip(std::string_view text) {
  const auto line = JsonLine().str("text", text).finish(1, 2);
  return json::parse(line)["text"].get<std::string>();
}

TEST(JsonLine, FieldsParseBack) {
  const auto line = JsonLine().str("dir", "C").num("n", 18446744073709551615ull).real("c", 0.75).flag("ok", true)
                        .raw("literals", "[{\"size\":5}]").finish(1795398157222119, 7);
  const auto e = json::parse(line);
  EXPECT_EQ(e["t"], 1795398157222119);
  EXPECT_EQ(e["s"], 7);
  EXPECT_EQ(e["dir"], "C");
  EXPECT_EQ(e["n"], 18446744073709551615ull);
  EXPECT_EQ(e["c"], 0.75);
  EXPECT_EQ(e["ok"], true);
  EXPECT_EQ(e["literals"][0]["size"], 5);
}

TEST(JsonLine, TextIsKeptExactlyWhenItIsUtf8) {
  for (std::string_view text : {"a1 SELECT \"Sent Items\"", "back\\slash", "tab\there", "line\r\nbreak",
                                "\x01\x1f control", "Gr\xc3\xbc\xc3\x9f" "e", "\xe2\x82\xac 10", "\xf0\x9f\x93\xa7 mail", ""}) {
    EXPECT_EQ(roundtrip(text), text);
  }
}

TEST(JsonLine, BytesThatAreNotUtf8BecomeReplacementCharacters) {
  EXPECT_EQ(roundtrip("Gr\xfc\xdf" "e"), "Gr\xef\xbf\xbd\xef\xbf\xbd" "e");  // Latin-1
  EXPECT_EQ(roundtrip("\xc0\xaf"), "\xef\xbf\xbd\xef\xbf\xbd");                // overlong '/'
  EXPECT_EQ(roundtrip("\xed\xa0\x80"), "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"); // a surrogate
  EXPECT_EQ(roundtrip("cut \xe2\x82"), "cut \xef\xbf\xbd\xef\xbf\xbd");        // truncated at the end
  EXPECT_EQ(roundtrip("\xf4\x90\x80\x80"), "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");  // above U+10FFFF
}

}  // namespace
}  // namespace imapscope::inspect
