// Which certificate answers an SNI name: exact names, wildcards one label deep, case.
#include <gtest/gtest.h>

#include "proxy/transport/tls_names.hpp"

namespace imapscope::transport {
namespace {

TEST(TlsNames, ExactAndWildcard) {
  EXPECT_TRUE(tls_name_matches("imap.example.org", "imap.example.org"));
  EXPECT_TRUE(tls_name_matches("IMAP.Example.org", "imap.example.ORG"));
  EXPECT_TRUE(tls_name_matches("imap.example.org", "imap.example.org."));
  EXPECT_FALSE(tls_name_matches("imap.example.org", "mail.example.org"));
  EXPECT_TRUE(tls_name_matches("*.example.org", "imap.example.org"));
  EXPECT_FALSE(tls_name_matches("*.example.org", "example.org"));
  EXPECT_FALSE(tls_name_matches("*.example.org", "a.imap.example.org"));
  EXPECT_FALSE(tls_name_matches("*.example.org", ".example.org"));
  EXPECT_FALSE(tls_name_matches("", "example.org"));
  EXPECT_FALSE(tls_name_matches("example.org", ""));
}

TEST(TlsNames, CertificatesInConfiguredOrder) {
  const std::vector<std::vector<std::string>> names = {
      {"a.example", "*.a.example"}, {"b.example"}, {"a.example"}, {"*.example"}};
  EXPECT_EQ(certificates_for(names, "a.example"), (std::vector<std::size_t>{0, 2, 3}));
  EXPECT_EQ(certificates_for(names, "imap.a.example"), (std::vector<std::size_t>{0}));
  EXPECT_EQ(certificates_for(names, "b.example"), (std::vector<std::size_t>{1, 3}));
  EXPECT_TRUE(certificates_for(names, "c.other").empty());
}

}  // namespace
}  // namespace imapscope::transport
