#include "proxy/imap/verbs.hpp"

#include <array>
#include <cstring>
#include <utility>

#include "proxy/imap/abnf.hpp"

namespace imapscope::imap {
namespace {

template <typename Enum, std::size_t N>
using NameTable = std::array<std::pair<std::string_view, Enum>, N>;

constexpr auto kVerbs = [] {
  NameTable<Verb, static_cast<std::size_t>(Verb::Other)> t{{
#define IMAPSCOPE_VERB_ROW(name, text) {text, Verb::name},
      IMAPSCOPE_VERBS(IMAPSCOPE_VERB_ROW)
#undef IMAPSCOPE_VERB_ROW
  }};
  return t;
}();

constexpr auto kResponseNames = [] {
  NameTable<ResponseName, static_cast<std::size_t>(ResponseName::Other)> t{{
#define IMAPSCOPE_RESPONSE_ROW(name, text) {text, ResponseName::name},
      IMAPSCOPE_RESPONSE_NAMES(IMAPSCOPE_RESPONSE_ROW)
#undef IMAPSCOPE_RESPONSE_ROW
  }};
  return t;
}();

// Names grouped by length: a lookup folds the name once and compares it with the
// few names of the same length (at most a handful), first byte first.
constexpr std::size_t kLongest = 16;  // longer than any known name

template <typename Enum, std::size_t N>
struct ByLength {
  std::array<std::array<std::pair<std::string_view, Enum>, N>, kLongest + 1> rows{};
  std::array<std::size_t, kLongest + 1> counts{};
};

template <typename Enum, std::size_t N>
constexpr ByLength<Enum, N> group_by_length(const NameTable<Enum, N>& table) {
  ByLength<Enum, N> g;
  for (const auto& row : table) {
    const auto n = row.first.size();
    g.rows[n][g.counts[n]++] = row;
  }
  return g;
}
constexpr auto kVerbsByLength = group_by_length(kVerbs);
constexpr auto kResponseNamesByLength = group_by_length(kResponseNames);

template <typename Grouped, typename Enum>
Enum lookup(const Grouped& grouped, std::string_view name, Enum other) {
  if (name.empty() || name.size() > kLongest) return other;
  char folded[kLongest];
  for (std::size_t i = 0; i < name.size(); ++i) folded[i] = ascii_upper(name[i]);
  const auto& row = grouped.rows[name.size()];
  for (std::size_t i = 0; i < grouped.counts[name.size()]; ++i) {
    const auto candidate = row[i].first;
    if (candidate[0] == folded[0] && std::memcmp(candidate.data(), folded, name.size()) == 0) return row[i].second;
  }
  return other;
}

}  // namespace

std::string_view verb_name(Verb v) {
  const auto i = static_cast<std::size_t>(v);
  return i < kVerbs.size() ? kVerbs[i].first : std::string_view("OTHER");
}

Verb verb_from_name(std::string_view name) { return lookup(kVerbsByLength, name, Verb::Other); }

std::string_view response_name(ResponseName n) {
  const auto i = static_cast<std::size_t>(n);
  return i < kResponseNames.size() ? kResponseNames[i].first : std::string_view("OTHER");
}

ResponseName response_name_from(std::string_view name) {
  return lookup(kResponseNamesByLength, name, ResponseName::Other);
}

}  // namespace imapscope::imap
