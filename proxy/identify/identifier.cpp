#include "proxy/identify/identifier.hpp"

#include <algorithm>
#include <cctype>
#include <map>
#include <optional>

#include "proxy/imap/abnf.hpp"

namespace imapscope::identify {
namespace {

// The tag's counter: its last run of digits ("a0001" -> 1, "JGJD12" -> 12, "99.1"
// -> 1), or its first ("1.854" -> 1); none if the tag has no digits there.
std::optional<std::uint64_t> tag_counter(std::string_view tag, CounterPosition position) {
  if (position == CounterPosition::First) {
    std::size_t begin = 0;
    while (begin < tag.size() && !imap::is_digit(tag[begin])) ++begin;
    std::size_t end = begin;
    while (end < tag.size() && imap::is_digit(tag[end])) ++end;
    return imap::parse_number64(tag.substr(begin, end - begin));
  }
  std::size_t begin = tag.size();
  while (begin > 0 && imap::is_digit(tag[begin - 1])) --begin;
  return imap::parse_number64(tag.substr(begin));
}

// The ID name as it may appear in a log line or transcript: printable ASCII only,
// short. It is never a metric label (the family is).
std::string printable_name(std::string_view name) {
  std::string out;
  for (const char c : name.substr(0, 64)) out += (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') ? c : '?';
  return out;
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
  info.id_name = printable_name(version_of("name"));
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
  // Precision first: a feature the commands contradict rules the signature out, and
  // so does an opening not seen whole yet; a step that can't be judged yet (one tag)
  // counts half, so the guess grows surer as commands arrive.
  for (const auto tag : tags) {
    if (!std::regex_match(tag.begin(), tag.end(), s.tag)) return 0;
  }
  double total = 1, matched = 1;  // the tag shape
  if (s.counter_start) {
    total += 1;
    if (tag_counter(tags.front(), s.counter_position) != s.counter_start) return 0;
    matched += 1;
  }
  if (s.counter_step) {
    total += 1;
    if (tags.size() < 2) {
      matched += 0.5;
    } else {
      for (std::size_t i = 1; i < tags.size(); ++i) {
        const auto a = tag_counter(tags[i - 1], s.counter_position);
        const auto b = tag_counter(tags[i], s.counter_position);
        if (!a || !b || *b <= *a || *b - *a != *s.counter_step) return 0;
      }
      matched += 1;
    }
  }
  if (!s.opening.empty()) {
    total += 1;
    const std::size_t n = std::min(s.opening.size(), names.size());
    // An opening is judged whole: its first commands are shared by too many clients.
    if (names.size() < s.opening.size()) return 0;
    if (!std::equal(s.opening.begin(), s.opening.begin() + static_cast<std::ptrdiff_t>(n), names.begin())) return 0;
    matched += 1;
  }
  if (s.command_case != CommandCase::Any) {
    total += 1;
    // "lower": some command name written in lower case (Thunderbird writes
    // "capability" but "ID" and "ENABLE"); "upper": every one in upper case.
    const bool lower = seen_->lower_case;
    if (s.command_case == CommandCase::Lower ? !lower : lower) return 0;
    matched += 1;
  }
  return s.confidence * matched / total;
}

void Identifier::guess() {
  if (info_.method == IdMethod::Id) return;
  const HeuristicSignature* best = nullptr;
  double best_fit = 0;
  const auto tags = split_lines(seen_->tags);
  const auto names = split_lines(seen_->names);
  std::string_view rival;  // another family that fits well enough too
  for (const auto& signature : signatures_->heuristics) {
    const double f = fit(signature, tags, names);
    if (f < signatures_->min_confidence) continue;
    if (best && signature.family != best->family) rival = signature.family;
    if (f > best_fit) {  // ties: the earlier signature (the file's order is its priority)
      if (best && best->family != signature.family) rival = best->family;
      best_fit = f;
      best = &signature;
    }
  }
  // Two families that both fit: naming either could be wrong, so neither is named.
  if (best && rival.empty()) {
    info_ = ClientInfo{best->family, "", IdMethod::Heuristic, best_fit, ""};
  } else {
    info_ = ClientInfo{};
  }
  ++revision_;
}

}  // namespace imapscope::identify
