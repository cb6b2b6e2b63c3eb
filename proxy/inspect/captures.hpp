// On-demand captures (POST /api/captures): "write transcripts of alice's sessions for
// the next ten minutes". A capture names a user, a client family, an address block
// or several of them (all must match) and lasts until it expires or is stopped.
// Sessions it matches, running or new, are written from then on, starting with the
// events the live view still holds of them; when the capture ends they stop.
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "proxy/inspect/selection.hpp"

namespace imapscope::inspect {

struct Capture {
  std::uint64_t id = 0;
  std::string user;                 // lower case; empty: any
  std::string client;               // a client family; empty: any
  std::string address_text;         // as given ("192.0.2.0/24"); empty: any
  std::optional<util::Cidr> address;
  std::int64_t created_us = 0, until_us = 0;
  std::uint64_t sessions = 0;       // sessions it has picked up
};

// What a session knows of itself when it asks (unknown parts can't match yet).
struct CaptureSubject {
  std::string_view address;                // without port
  const std::string* user = nullptr;       // the login name, when known
  const std::string* client = nullptr;     // the settled client family, when known
};

class Captures {
 public:
  // Throws std::invalid_argument with a reason a client can be shown.
  Capture start(const nlohmann::json& request, std::int64_t now_us);
  bool stop(std::uint64_t id);
  std::vector<Capture> list(std::int64_t now_us);
  // An active capture that matches (counting the session in it).
  std::optional<Capture> match(const CaptureSubject& subject, std::int64_t now_us);
  // Whether capture id is still running.
  bool active(std::uint64_t id, std::int64_t now_us);
  // Changes whenever a capture starts or stops: sessions look again only then.
  std::uint64_t generation() const { return generation_.load(std::memory_order_acquire); }
  static nlohmann::json to_json(const Capture& capture, std::int64_t now_us);

 private:
  void expire(std::int64_t now_us);

  std::mutex mutex_;
  std::vector<Capture> captures_;
  std::uint64_t next_id_ = 1;
  std::atomic<std::uint64_t> generation_{0};
};

}  // namespace imapscope::inspect
