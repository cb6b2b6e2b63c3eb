// The TLS settings: certificates, the policy (top level, per listener, flags), key
// permissions, listen addresses; bad values refused with the file, key and reason.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cstdio>
#include <string>

#include "proxy/app/config.hpp"
#include "tests/support/temp_paths.hpp"

namespace imapscope::app {
namespace {

std::string write_temp(const std::string& text) { return imapscope::testing::write_temp_file("imapscope-tls-config-", text); }

// The error without the file name in front ("" when it loaded).
std::string error_of(const std::string& text) {
  const auto path = write_temp(text);
  std::string message;
  try {
    (void)load_config_file(path);
  } catch (const ConfigError& e) {
    message = e.what();
    EXPECT_EQ(message.rfind(path + ": ", 0), 0u) << message;
    message = message.substr(path.size() + 2);
  }
  std::remove(path.c_str());
  return message;
}

Config load(const std::string& text) {
  const auto path = write_temp(text);
  auto config = load_config_file(path);
  std::remove(path.c_str());
  return config;
}

std::string listener(const std::string& extra) {
  return R"({"listen": "127.0.0.1:993", "upstream": {"addresses": ["mail.example:143"]})" + extra + "}";
}

TEST(TlsConfig, SecureDefaults) {
  const auto config = load(R"({"listeners": [)" + listener(R"(, "tls": "implicit", "cert": "c", "key": "k")") + "]}");
  const auto& l = config.proxy.listeners.at(0);
  ASSERT_EQ(l.certificates.size(), 1u);
  EXPECT_EQ(l.certificates[0].cert, "c");
  EXPECT_EQ(l.tls_policy.min_version, transport::TlsVersion::Tls12);
  EXPECT_EQ(l.tls_policy.ciphers, transport::kIntermediateCiphers);
  EXPECT_EQ(l.tls_policy.ciphers.find("CBC"), std::string::npos);
  EXPECT_EQ(l.tls_policy.ciphers.find("-SHA:"), std::string::npos);
  EXPECT_TRUE(l.tls_policy.ciphersuites.empty());
  EXPECT_FALSE(l.tls_policy.allow_world_readable_keys);
}

TEST(TlsConfig, SeveralCertificatesAndAPolicyOverriddenPerListener) {
  const auto config = load(R"({"allow_world_readable_keys": true,
    "tls_policy": {"min_version": "TLSv1.3", "ciphersuites": "TLS_AES_256_GCM_SHA384"},
    "listeners": [)" + listener(R"(, "tls": "implicit", "cert": "rsa.pem", "key": "rsa.key",
      "certificates": [{"cert": "ec.pem", "key": "ec.key"}],
      "tls_policy": {"min_version": "TLSv1.2", "ciphers": "ECDHE-ECDSA-AES128-GCM-SHA256"})") + "," +
                           listener(R"(, "tls": "starttls", "certificates": [{"cert": "b.pem", "key": "b.key"}])") + "]}");
  const auto& first = config.proxy.listeners.at(0);
  ASSERT_EQ(first.certificates.size(), 2u);
  EXPECT_EQ(first.certificates[0].key, "rsa.key");
  EXPECT_EQ(first.certificates[1].cert, "ec.pem");
  EXPECT_EQ(first.tls_policy.min_version, transport::TlsVersion::Tls12);
  EXPECT_EQ(first.tls_policy.ciphers, "ECDHE-ECDSA-AES128-GCM-SHA256");
  EXPECT_EQ(first.tls_policy.ciphersuites, "TLS_AES_256_GCM_SHA384");  // from the top level
  EXPECT_TRUE(first.tls_policy.allow_world_readable_keys);
  const auto& second = config.proxy.listeners.at(1);
  EXPECT_EQ(second.certificates.size(), 1u);
  EXPECT_EQ(second.tls_policy.min_version, transport::TlsVersion::Tls13);
  EXPECT_EQ(second.tls_policy.ciphers, transport::kIntermediateCiphers);
}

TEST(TlsConfig, MistakesNameTheKey) {
  EXPECT_EQ(error_of(R"({"tls_policy": {"ciphers": "NOT-A-CIPHER:ALSO-NOT"}, "listeners": []})"),
            "/tls_policy/ciphers: OpenSSL knows no TLS 1.2 cipher in \"NOT-A-CIPHER:ALSO-NOT\" "
            "(SSL routines: no cipher match)");
  EXPECT_EQ(error_of(R"({"tls_policy": {"ciphersuites": "TLS_AES_128_GCM_SHA256:TLS_AES_129"}, "listeners": []})"),
            "/tls_policy/ciphersuites: \"TLS_AES_129\" is not a TLS 1.3 suite OpenSSL knows "
            "(e.g. TLS_AES_128_GCM_SHA256, TLS_CHACHA20_POLY1305_SHA256)");
  EXPECT_EQ(error_of(R"({"tls_policy": {"min_version": "TLSv1.0"}, "listeners": []})"),
            "/tls_policy/min_version: must be one of TLSv1.2, TLSv1.3 (not \"TLSv1.0\")");
  EXPECT_EQ(error_of(R"({"tls_policy": {"cipher": "x"}, "listeners": []})"), "/tls_policy/cipher: unknown setting");
  EXPECT_EQ(error_of(R"({"listeners": [)" + listener(R"(, "tls_policy": {"ciphers": "eNULL:!eNULL"})") + "]}"),
            "/listeners/0/tls_policy/ciphers: OpenSSL knows no TLS 1.2 cipher in \"eNULL:!eNULL\" "
            "(SSL routines: no cipher match)");
  EXPECT_EQ(error_of(R"({"listeners": [)" + listener(R"(, "tls": "starttls", "certificates": [{"cert": "c"}])") + "]}"),
            "/listeners/0/certificates/0/key: is required (its PEM private key)");
  EXPECT_EQ(error_of(R"({"listeners": [)" + listener(R"(, "tls": "starttls", "certificates": ["c"])") + "]}"),
            "/listeners/0/certificates/0: must be {\"cert\": FILE, \"key\": FILE}");
  EXPECT_EQ(error_of(R"({"listeners": [)" + listener(R"(, "cert": "c", "key": "k")") + "]}"),
            "/listeners/0/cert: is set but tls is \"none\" (use \"starttls\")");
  EXPECT_EQ(error_of(R"({"listeners": [)" + listener(R"(, "tls": "starttls", "cert": "c")") + "]}"),
            "/listeners/0/key: goes with cert");
}

TEST(TlsConfig, ListenAddressMustBeAnAddress) {
  EXPECT_EQ(error_of(R"({"listeners": [{"listen": "localhost:1143", "upstream": {"addresses": ["x:1"]}}]})"),
            "/listeners/0/listen: \"localhost\" is not an IP address (one to listen on: 127.0.0.1, 0.0.0.0, ::1, ::)");
  EXPECT_EQ(error_of(R"({"listeners": [{"listen": "[::]:1143", "upstream": {"addresses": ["x:1"]}}]})"), "");
  EXPECT_EQ(error_of(R"({"admin": "localhost:9143", "listeners": []})"),
            "/admin: \"localhost\" is not an IP address (one to listen on: 127.0.0.1, 0.0.0.0, ::1, ::)");
  try {
    (void)build_config(parse_flags({"--listen", "imap.example:143", "--upstream", "x:1"}));
    FAIL() << "accepted";
  } catch (const ConfigError& e) {
    EXPECT_EQ(std::string(e.what()),
              "flag --listen: \"imap.example\" is not an IP address (one to listen on: 127.0.0.1, 0.0.0.0, ::1, ::)");
  }
}

TEST(TlsFlags, PairsAndPolicy) {
  const auto config = build_config(parse_flags(
      {"--listen-tls", "0.0.0.0:993", "--tls-cert", "rsa.pem", "--tls-key", "rsa.key", "--tls-cert", "ec.pem",
       "--tls-key", "ec.key", "--upstream", "x:1", "--tls-min-version", "TLSv1.3", "--tls-ciphersuites",
       "TLS_CHACHA20_POLY1305_SHA256", "--allow-world-readable-keys"}));
  const auto& l = config.proxy.listeners.at(0);
  ASSERT_EQ(l.certificates.size(), 2u);
  EXPECT_EQ(l.certificates[1].cert, "ec.pem");
  EXPECT_EQ(l.certificates[1].key, "ec.key");
  EXPECT_EQ(l.tls_policy.min_version, transport::TlsVersion::Tls13);
  EXPECT_EQ(l.tls_policy.ciphersuites, "TLS_CHACHA20_POLY1305_SHA256");
  EXPECT_TRUE(l.tls_policy.allow_world_readable_keys);

  EXPECT_THROW(parse_flags({"--tls-cert", "a", "--tls-key", "a", "--tls-cert", "b"}), ConfigError);
  EXPECT_THROW(parse_flags({"--tls-min-version", "1.3"}), ConfigError);
  try {
    (void)build_config(parse_flags({"--listen", "127.0.0.1:1", "--upstream", "x:1", "--tls-ciphers", "RC4-NOPE"}));
    FAIL() << "accepted";
  } catch (const ConfigError& e) {
    EXPECT_EQ(std::string(e.what()).rfind("flag --tls-ciphers: OpenSSL knows no TLS 1.2 cipher", 0), 0u) << e.what();
  }

  // Flags over a config file: the pairs replace its certificates, the policy flags change its policy.
  const auto path = write_temp(R"({"tls_policy": {"ciphers": "ECDHE-RSA-AES256-GCM-SHA384"}, "listeners": [)" +
                               listener(R"(, "tls": "implicit", "cert": "c", "key": "k")") + "]}");
  const auto over = build_config(parse_flags({"--config", path, "--tls-cert", "n.pem", "--tls-key", "n.key"}));
  std::remove(path.c_str());
  ASSERT_EQ(over.proxy.listeners.at(0).certificates.size(), 1u);
  EXPECT_EQ(over.proxy.listeners.at(0).certificates[0].cert, "n.pem");
  EXPECT_EQ(over.proxy.listeners.at(0).tls_policy.ciphers, "ECDHE-RSA-AES256-GCM-SHA384");
}

}  // namespace
}  // namespace imapscope::app
