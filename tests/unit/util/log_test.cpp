// Log lines as key=value and as JSON, with and without the journal.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "proxy/util/log.hpp"

namespace imapscope::util {
namespace {

const auto kAt = std::chrono::system_clock::time_point(std::chrono::milliseconds(1796585406772));

TEST(LogLine, KeyValueWithTimeOrWithoutUnderTheJournal) {
  EXPECT_EQ(format_log_line(LogLevel::Info, "event=stopped", LogFormat::KeyValue, false, kAt),
            "2026-12-06T19:30:06.772Z level=info event=stopped");
  // journald stamps each line itself and takes the priority from the prefix.
  EXPECT_EQ(format_log_line(LogLevel::Warning, "event=stopped", LogFormat::KeyValue, true, kAt),
            "<4>level=warning event=stopped");
}

TEST(LogLine, JsonKeepsEveryFieldTypedAndUnquoted) {
  const std::string fields = "event=session_end session=42 reason=client_error cause=reset cause_detail=" +
                             log_quote("Connection \"reset\"\\ by\x01peer") +
                             " client=127.0.0.1:5000 duration_ms=0 client_version=\"\" zero=007 stray";
  const auto line = format_log_line(LogLevel::Info, fields, LogFormat::Json, false, kAt);
  const auto j = nlohmann::json::parse(line);
  EXPECT_EQ(j["ts"], "2026-12-06T19:30:06.772Z");
  EXPECT_EQ(j["level"], "info");
  EXPECT_EQ(j["event"], "session_end");
  EXPECT_EQ(j["session"], 42);
  EXPECT_EQ(j["duration_ms"], 0);
  EXPECT_EQ(j["cause_detail"], "Connection \"reset\"\\ by\x01peer");
  EXPECT_EQ(j["client"], "127.0.0.1:5000");
  EXPECT_EQ(j["client_version"], "");
  EXPECT_EQ(j["zero"], "007");
  EXPECT_EQ(j["msg"], "stray");
  EXPECT_EQ(line.find('\n'), std::string::npos);
  // Under the journal: the priority prefix, and the time stays in the object.
  const auto journal = format_log_line(LogLevel::Error, "event=x", LogFormat::Json, true, kAt);
  EXPECT_EQ(journal, "<3>{\"ts\":\"2026-12-06T19:30:06.772Z\",\"level\":\"error\",\"event\":\"x\"}");
}

TEST(LogLine, QuotedValuesCutAndEscapedStillParse) {
  const auto line = format_log_line(LogLevel::Info, "detail=" + log_quote(std::string(300, 'a') + "\n", 10),
                                    LogFormat::Json, false, kAt);
  EXPECT_EQ(nlohmann::json::parse(line)["detail"], "aaaaaaaaaa...");
}

}  // namespace
}  // namespace imapscope::util
