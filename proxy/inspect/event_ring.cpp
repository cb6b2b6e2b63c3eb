#include "proxy/inspect/event_ring.hpp"

#include <zlib.h>

#include <mutex>
#include <string_view>

namespace imapscope::inspect {
namespace {

// Deflate's preset dictionary: what event lines of a session that logs in, selects
// and idles have in common, so that even the first lines of a small chunk are
// back-references (a chunk of an idle session: ~900 bytes without, ~400 with).
// The most common strings come last, where references to them are shortest.
constexpr std::string_view kDictionary =
    R"d({"confidence":0,"event":"client","family":"unknown","method":"heuristic","settled":false,"version":"")d"
    R"d({"event":"start","listener":"imaps","client_address":"127.0.0.1:4","tls":"TLSv1.3"})d"
    R"d({"event":"user","user":"u:"})d"
    R"d("text":"* OK [CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE SORT SORT=DISPLAY )d"
    R"d(THREAD=REFERENCES THREAD=REFS THREAD=ORDEREDSUBJECT MULTIAPPEND URL-PARTIAL CATENATE UNSELECT )d"
    R"d(CHILDREN NAMESPACE UIDPLUS LIST-EXTENDED I18NLEVEL=1 CONDSTORE QRESYNC ESEARCH ESORT SEARCHRES )d"
    R"d(WITHIN CONTEXT=SEARCH LIST-STATUS BINARY MOVE SNIPPET=FUZZY PREVIEW=FUZZY PREVIEW STATUS=SIZE )d"
    R"d(SAVEDATE LITERAL+ NOTIFY SPECIAL-USE COMPRESS=DEFLATE AUTH=PLAIN AUTH=LOGIN] Logged in")d"
    R"d("text":"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)")d"
    R"d("text":"* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft \\*)] Flags permitted.")d"
    R"d("text":"* OK [UIDVALIDITY 1] UIDs valid""text":"* OK [UIDNEXT 1] Predicted next UID")d"
    R"d("text":"* OK [HIGHESTMODSEQ 1] Highest" [READ-WRITE] Select completed (0.000 + 0.000 secs).")d"
    R"d({"command":"LOGIN","dir":"C","kind":"command","tag":"a","text":"a LOGIN u: ***"})d"
    R"d({"command":"SELECT","dir":"C","kind":"command","text":"SELECT INBOX"})d"
    R"d({"dir":"S","kind":"data","name":"RECENT","text":"* 0 RECENT"})d"
    R"d({"dir":"S","kind":"data","name":"EXISTS","text":"* 1 EXISTS"})d"
    R"d({"command":"IDLE","dir":"C","kind":"command","text":"IDLE"})d"
    R"d({"dir":"S","kind":"continuation","text":"+ idling"})d"
    R"d({"dir":"S","kind":"tagged","status":"OK","tag":")d"
    R"d({"dir":"S","kind":"untagged_status","status":"OK","text":"* OK )d"
    R"d(,"s":1,"t":17)d";

constexpr int kRawDeflate = -15;  // no zlib header: the chunk is never read by anyone else

// The built-in text says what events look like; what a live session packed says what
// this server's greeting, capabilities and SELECT answers are, word for word, and
// those repeat from session to session: with the first pack of a recent session
// after the built-in text, an idle session's chunk is about half as big. The text
// is event lines, already redacted, and is only ever a dictionary: inflating a chunk
// gives back that chunk's own lines. Each chunk keeps the dictionary it was made with.
class LearnedDictionary {
 public:
  std::shared_ptr<const std::string> current() {
    std::lock_guard lock(mutex_);
    if (!current_) current_ = std::make_shared<const std::string>(kDictionary);
    return current_;
  }
  // The first pack of a session: every kRefresh-th one (and the first) is learnt, so
  // the dictionary follows the server (an upgrade changes its texts) at little cost.
  void offer(std::string_view packed) {
    std::lock_guard lock(mutex_);
    if (learnt_ && ++offers_ % kRefresh != 0) return;
    learnt_ = true;
    auto text = std::string(kDictionary);
    text.append(packed.substr(0, kLearnt));
    current_ = std::make_shared<const std::string>(std::move(text));
  }

 private:
  static constexpr std::uint32_t kRefresh = 1024;
  static constexpr std::size_t kLearnt = 8 * 1024;
  std::mutex mutex_;
  std::shared_ptr<const std::string> current_;
  bool learnt_ = false;
  std::uint32_t offers_ = 0;
};

LearnedDictionary& learned() {
  static LearnedDictionary dictionary;
  return dictionary;
}

bool deflate_with_dictionary(std::string_view in, std::string_view dictionary, std::string& out) {
  z_stream z{};
  if (deflateInit2(&z, 6, Z_DEFLATED, kRawDeflate, 8, Z_DEFAULT_STRATEGY) != Z_OK) return false;
  deflateSetDictionary(&z, reinterpret_cast<const Bytef*>(dictionary.data()), static_cast<uInt>(dictionary.size()));
  out.resize(deflateBound(&z, static_cast<uLong>(in.size())));
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  z.avail_in = static_cast<uInt>(in.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  const bool done = deflate(&z, Z_FINISH) == Z_STREAM_END;
  out.resize(out.size() - z.avail_out);
  deflateEnd(&z);
  return done;
}

bool inflate_with_dictionary(std::string_view in, std::string_view dictionary, std::string& out) {
  z_stream z{};
  if (inflateInit2(&z, kRawDeflate) != Z_OK) return false;
  inflateSetDictionary(&z, reinterpret_cast<const Bytef*>(dictionary.data()), static_cast<uInt>(dictionary.size()));
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  z.avail_in = static_cast<uInt>(in.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  const bool done = inflate(&z, Z_FINISH) == Z_STREAM_END && z.avail_out == 0;
  inflateEnd(&z);
  return done;
}

}  // namespace

void EventRing::add(std::string line) {
  bytes_ += line.size();
  lines_.push_back(std::move(line));
  trim();
}

void EventRing::trim() {
  while (size() > 0 && (size() > max_events_ || bytes_ > max_bytes_)) {
    if (!chunks_.empty()) {
      packed_events_ -= chunks_.front().events;
      // The joined size counts one newline per line but the last.
      bytes_ -= chunks_.front().bytes - (chunks_.front().events - 1);
      chunks_.erase(chunks_.begin());
      continue;
    }
    bytes_ -= lines_[head_].size();
    std::string().swap(lines_[head_]);
    ++head_;
  }
  // Dropped lines are moved out in batches: O(1) per line on average.
  if (head_ > 32 && head_ * 2 > lines_.size()) {
    lines_.erase(lines_.begin(), lines_.begin() + static_cast<std::ptrdiff_t>(head_));
    head_ = 0;
  }
}

void EventRing::pack() {
  if (head_ == lines_.size()) return;
  const auto adding = static_cast<std::uint32_t>(lines_.size() - head_);
  std::size_t adding_bytes = 0;
  for (std::size_t i = head_; i < lines_.size(); ++i) {
    if (lines_[i].find('\n') != std::string::npos) return;  // can't be split again: stays as it is
    adding_bytes += lines_[i].size() + 1;
  }
  // A session in IDLE packs again after each keepalive or notification: the newest
  // chunk takes the new lines while it is small (a quarter of the limits, so that
  // trimming a whole chunk loses little), and a session idle for hours keeps one
  // chunk instead of a line per keepalive.
  std::string joined;
  std::uint32_t events = 0;
  const bool merge = !chunks_.empty() && chunks_.back().events + adding <= max_events_ / 4 &&
                     chunks_.back().bytes + adding_bytes <= max_bytes_ / 4;
  if (merge) {
    joined.assign(chunks_.back().bytes, '\0');
    if (inflate_with_dictionary(chunks_.back().deflated, *dictionary_, joined)) {
      events = chunks_.back().events;
    } else {
      joined.clear();
    }
  }
  joined.reserve(joined.size() + adding_bytes);
  for (std::size_t i = head_; i < lines_.size(); ++i) {
    if (events > 0 || i > head_) joined += '\n';
    joined += lines_[i];
  }
  if (chunks_.empty()) dictionary_ = learned().current();
  Chunk chunk;
  if (!deflate_with_dictionary(joined, *dictionary_, chunk.deflated)) return;  // out of memory: the lines stay
  if (chunks_.empty() && !joined.empty()) learned().offer(joined);
  chunk.deflated.shrink_to_fit();
  chunk.events = events + adding;
  chunk.bytes = static_cast<std::uint32_t>(joined.size());
  packed_events_ += adding;
  if (events > 0) {
    chunks_.back() = std::move(chunk);
  } else {
    chunks_.push_back(std::move(chunk));
  }
  std::vector<std::string>().swap(lines_);
  head_ = 0;
}

std::vector<std::string> EventRing::lines() const {
  std::vector<std::string> out;
  out.reserve(size());
  for (const auto& chunk : chunks_) {
    std::string joined(chunk.bytes, '\0');
    if (!inflate_with_dictionary(chunk.deflated, *dictionary_, joined)) continue;
    std::size_t start = 0;
    for (std::size_t end; (end = joined.find('\n', start)) != std::string::npos; start = end + 1) {
      out.push_back(joined.substr(start, end - start));
    }
    out.push_back(joined.substr(start));
  }
  for (std::size_t i = head_; i < lines_.size(); ++i) out.push_back(lines_[i]);
  return out;
}

}  // namespace imapscope::inspect
