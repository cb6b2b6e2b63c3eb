// Identifies the client of one session from its commands: from ID when it sends
// one (RFC 2971), else from heuristics over its first few commands. The result is
// there from the first tagged command on and is upgraded when ID arrives later.
// Sans-IO, like the codec: commands in, ClientInfo out.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "proxy/identify/client_info.hpp"
#include "proxy/identify/signatures.hpp"
#include "proxy/imap/command.hpp"

namespace imapscope::identify {

class Identifier {
 public:
  // signatures must outlive the identifier (a session keeps its snapshot).
  explicit Identifier(const Signatures& signatures) : signatures_(&signatures) {}

  // Every complete tagged command, in order.
  void on_command(const imap::Command& command);
  const ClientInfo& info() const { return info_; }
  // Changes whenever info() may have changed (rules re-select what applies then).
  std::uint32_t revision() const { return revision_; }
  // ID was seen, or enough commands to stop guessing.
  bool settled() const { return settled_; }

 private:
  // Tags and names joined by newlines (neither can hold one): two strings instead
  // of two vectors of strings, for the idle sessions that never reach observe_commands.
  struct Observation {
    std::string tags;
    std::string names;               // upper case
    std::size_t count = 0;
    bool lower_case = false;         // some command name was written in lower case
  };
  void from_id(const imap::Command& command);
  void guess();
  // tags and names: the observation's, split once for every signature.
  double fit(const HeuristicSignature& signature, const std::vector<std::string_view>& tags,
             const std::vector<std::string_view>& names) const;

  const Signatures* signatures_;
  ClientInfo info_;
  std::unique_ptr<Observation> seen_;  // only while heuristics still look
  bool settled_ = false;               // ID seen, or enough commands observed
  std::uint32_t revision_ = 0;
};

}  // namespace imapscope::identify
