#include "proxy/inspect/stream_text.hpp"

#include <openssl/evp.h>

#include "proxy/inspect/encoding.hpp"
#include "proxy/policy/rewrite.hpp"

namespace imapscope::inspect {

struct StreamText::Hash {
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  ~Hash() { EVP_MD_CTX_free(ctx); }
};

StreamText::StreamText(std::size_t body_cap) : body_cap_(body_cap) {}
StreamText::~StreamText() = default;
StreamText::StreamText(StreamText&&) noexcept = default;
StreamText& StreamText::operator=(StreamText&&) noexcept = default;

void StreamText::add(std::string_view bytes, bool hash) {
  while (!bytes.empty()) {
    if (remaining_ > 0) {
      const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(remaining_, bytes.size()));
      if (hashing_) {
        EVP_DigestUpdate(hash_->ctx, bytes.data(), n);
        // Bodies are kept only where hashes are: never for credentials.
        std::string& head = literals_.back().head;
        if (head.size() < body_cap_) head.append(bytes.substr(0, std::min(n, body_cap_ - head.size())));
      }
      remaining_ -= n;
      bytes.remove_prefix(n);
      if (remaining_ == 0) finish_literal();
      continue;
    }
    const auto nl = bytes.find('\n');
    if (nl == std::string_view::npos) {
      line_.append(bytes);
      return;
    }
    line_.append(bytes.substr(0, nl));
    bytes.remove_prefix(nl + 1);
    if (!line_.empty() && line_.back() == '\r') line_.pop_back();
    text_.append(line_);
    const auto literal = policy::trailing_literal(line_);
    line_.clear();
    if (literal) {
      literals_.push_back(LiteralDigest{literal->size, {}});
      remaining_ = literal->size;
      hashing_ = hash;
      if (hash) {
        if (!hash_) hash_ = std::make_unique<Hash>();
        EVP_DigestInit_ex(hash_->ctx, EVP_sha256(), nullptr);
      }
      if (remaining_ == 0) finish_literal();
    }
  }
}

void StreamText::finish_literal() {
  if (!hashing_) return;
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  EVP_DigestFinal_ex(hash_->ctx, digest, &length);
  literals_.back().sha256 = hex(digest, length);
  hashing_ = false;
}

std::string StreamText::take_text() {
  // A message ends with its last line's CRLF: line_ is empty then, unless the
  // stream was cut (its start is kept, better than nothing).
  text_.append(line_);
  line_.clear();
  std::string out;
  out.swap(text_);
  return out;
}

void StreamText::release_memory() {
  if (line_.empty()) std::string().swap(line_);
  if (text_.empty()) std::string().swap(text_);
  if (!hashing_) hash_.reset();
}

std::vector<LiteralDigest> StreamText::take_literals() {
  std::vector<LiteralDigest> out;
  out.swap(literals_);
  return out;
}

}  // namespace imapscope::inspect
