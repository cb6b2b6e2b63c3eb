#include "proxy/imap/verbs.hpp"

#include <algorithm>
#include <array>
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

// The same tables sorted by name, for a binary search on the hot path.
template <typename Table>
constexpr Table sorted(Table t) {
  std::sort(t.begin(), t.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  return t;
}
constexpr auto kVerbsByName = sorted(kVerbs);
constexpr auto kResponseNamesByName = sorted(kResponseNames);

template <typename Table, typename Enum>
Enum lookup(const Table& table, std::string_view name, Enum other) {
  constexpr std::size_t kLongest = 16;  // longer than any known name
  if (name.empty() || name.size() > kLongest) return other;
  char folded[kLongest];
  for (std::size_t i = 0; i < name.size(); ++i) folded[i] = ascii_upper(name[i]);
  const std::string_view key(folded, name.size());
  auto it = std::lower_bound(table.begin(), table.end(), key,
                             [](const auto& row, std::string_view k) { return row.first < k; });
  return (it != table.end() && it->first == key) ? it->second : other;
}

}  // namespace

std::string_view verb_name(Verb v) {
  const auto i = static_cast<std::size_t>(v);
  return i < kVerbs.size() ? kVerbs[i].first : std::string_view("OTHER");
}

Verb verb_from_name(std::string_view name) { return lookup(kVerbsByName, name, Verb::Other); }

std::string_view response_name(ResponseName n) {
  const auto i = static_cast<std::size_t>(n);
  return i < kResponseNames.size() ? kResponseNames[i].first : std::string_view("OTHER");
}

ResponseName response_name_from(std::string_view name) {
  return lookup(kResponseNamesByName, name, ResponseName::Other);
}

}  // namespace imapscope::imap
