// A transcript as a capture file (pcapng) that Wireshark and tshark dissect as IMAP:
// the session's decrypted conversation as one TCP connection to port 143, with the
// times of the transcript. Literal payloads are in transcripts only as far as
// body_cap_kb kept them (by default not at all): the rest is filled with '.' up to
// the literal's size, so the framing holds.
#pragma once

#include <cstdint>
#include <ostream>
#include <vector>

#include <nlohmann/json.hpp>

namespace imapscope::inspect {

// Writes one pcapng section with the sessions' conversations (each its own TCP
// connection, ports 40000 + n -> 143).
void write_pcapng(std::ostream& out, const std::vector<std::pair<std::uint64_t, const std::vector<nlohmann::json>*>>& sessions);

// The bytes a transcript event stood for: its text with CRLFs and literal payloads
// (placeholders) put back.
std::string wire_bytes(const nlohmann::json& event);

}  // namespace imapscope::inspect
