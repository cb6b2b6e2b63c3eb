#include "proxy/identify/identifier.hpp"

#include <algorithm>
#include <cctype>
#include <map>
#include <optional>

#include "proxy/imap/abnf.hpp"

namespace imapscope::identify {
namespace {

// The number a tag ends with ("a0001" -> 1, "JGJD12" -> 12); none if it ends otherwise.
std::optional<std::uint64_t> trailing_number(std::string_view tag) {
  std::size_t begin = tag.size();
  while (begin > 0 && imap::is_digit(tag[begin - 1])) --begin;
  return imap::parse_number64(tag.substr(begin));
}

// id-params-list = "(" *(string SP nstring) ")" / nil   (RFC 2971 §4)
std::map<std::string, std::string> id_fields(const imap::Command& c) {
  std::map<std::string, std::string> fields;
  const auto& args = c.args;
  if (args.empty() || args.front().kind != imap::TokenKind::ListOpen) return fields;
  for (std::size_t i = 1; i + 1 < args.size(); i += 2) {
    if (args[i].kind == imap::TokenKind::ListClose) break;
    const auto key = args[i].string_value();
    const auto value = args[i + 1].string_value();  // NIL: no value
    if (!key) continue;
    // Field names are at most 30 octets and values 1024 (RFC 2971 §3.3).
    if (key->size() > 30) continue;
    fields[imap::ascii_lower(*key)] = value ? value->substr(0, 1024) : std::string();
  }
  return fields;
}

std::vector<std::string_view> split_lines(std::string_view joined) {
  std::vector<std::string_view> out;
  for (std::size_t start = 0; start <= joined.size();) {
    const auto end = std::min(joined.find('\n', start), joined.size());
    out.push_back(joined.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

void append_line(std::string& joined, std::size_t lines, std::string_view line) {
  if (lines > 0) joined += '\n';
  joined += line;
}

}  // namespace

std::string_view id_method_name(IdMethod method) {
  switch (method) {
    case IdMethod::Unknown: return "unknown";
    case IdMethod::Heuristic: return "heuristic";
    case IdMethod::Id: return "id";
  }
  return "unknown";
}

void Identifier::on_command(const imap::Command& c) {
  if (c.kind != imap::CommandKind::Tagged || c.rejected || c.malformed || c.tag.empty()) return;
  if (c.verb == imap::Verb::Id && !c.uid) from_id(c);
  if (settled_) return;
  if (!seen_) seen_ = std::make_unique<Observation>();
  append_line(seen_->tags, seen_->count, c.tag);
  const std::string name = imap::ascii_upper(c.name);
  append_line(seen_->names, seen_->count, c.uid ? "UID " + name : name);
  ++seen_->count;
  const bool has_letter = std::any_of(c.name.begin(), c.name.end(), [](unsigned char ch) { return std::isalpha(ch); });
  if (has_letter && imap::ascii_lower(c.name) == c.name) seen_->lower_case = true;
  if (has_letter && name == c.name) seen_->upper_case = true;
  guess();
  if (seen_->count >= signatures_->observe_commands) {
    settled_ = true;
    seen_.reset();  // an idle session keeps nothing of this
  }
}

void Identifier::from_id(const imap::Command& c) {
  const auto fields = id_fields(c);
  if (fields.empty()) return;  // "ID NIL": the client says nothing; heuristics go on
  ClientInfo info;
  info.method = IdMethod::Id;
  info.confidence = 1.0;
  info.family = std::string(kOtherFamily);
  auto version_of = [&](const std::string& field) {
    auto it = fields.find(field);
    return it == fields.end() ? std::string() : it->second;
  };
  info.version = version_of("version");
  for (const auto& signature : signatures_->id) {
    const bool all = std::all_of(signature.fields.begin(), signature.fields.end(), [&](const auto& field) {
      auto it = fields.find(field.first);
      return it != fields.end() && std::regex_search(it->second, field.second);
    });
    if (!all) continue;
    info.family = signature.family;
    info.version = version_of(signature.version_field);
    if (signature.version_pattern) {
      std::smatch m;
      info.version = std::regex_search(info.version, m, *signature.version_pattern) && m.size() > 1 ? m[1].str() : "";
    }
    break;
  }
  info.version = info.version.substr(0, 64);
  info_ = std::move(info);
  ++revision_;
  settled_ = true;
  seen_.reset();
}

double Identifier::fit(const HeuristicSignature& s, const std::vector<std::string_view>& tags,
                       const std::vector<std::string_view>& names) const {
  for (const auto tag : tags) {
    if (!std::regex_match(tag.begin(), tag.end(), s.tag)) return 0;
  }
  double total = 1, matched = 1;  // the tag shape
  if (s.counter_start) {
    total += 1;
    if (trailing_number(tags.front()) == s.counter_start) matched += 1;
  }
  if (s.counter_step) {
    total += 1;
    if (tags.size() < 2) {
      matched += 0.5;  // can't tell yet
    } else {
      bool steady = true;
      for (std::size_t i = 1; i < tags.size() && steady; ++i) {
        const auto a = trailing_number(tags[i - 1]);
        const auto b = trailing_number(tags[i]);
        steady = a && b && *b > *a && *b - *a == *s.counter_step;
      }
      if (steady) matched += 1;
    }
  }
  if (!s.opening.empty()) {
    total += 1;
    const std::size_t n = std::min(s.opening.size(), names.size());
    if (std::equal(s.opening.begin(), s.opening.begin() + static_cast<std::ptrdiff_t>(n), names.begin())) {
      matched += 1;
    }
  }
  if (s.command_case != CommandCase::Any) {
    total += 1;
    // "lower": some command name written in lower case (Thunderbird writes
    // "capability" but "ID" and "ENABLE"); "upper": every one in upper case.
    const bool lower = seen_->lower_case;
    const bool upper_only = seen_->upper_case && !seen_->lower_case;
    if ((s.command_case == CommandCase::Lower && lower) || (s.command_case == CommandCase::Upper && upper_only)) {
      matched += 1;
    }
  }
  return s.confidence * matched / total;
}

void Identifier::guess() {
  if (info_.method == IdMethod::Id) return;
  const HeuristicSignature* best = nullptr;
  double best_fit = 0;
  const auto tags = split_lines(seen_->tags);
  const auto names = split_lines(seen_->names);
  for (const auto& signature : signatures_->heuristics) {
    const double f = fit(signature, tags, names);
    if (f > best_fit) {  // ties: the earlier signature (the file's order is its priority)
      best_fit = f;
      best = &signature;
    }
  }
  if (best && best_fit >= signatures_->min_confidence) {
    info_ = ClientInfo{best->family, "", IdMethod::Heuristic, best_fit};
    ++revision_;
  } else {
    info_ = ClientInfo{};
    ++revision_;
  }
}

}  // namespace imapscope::identify
