// Replays a scripted conversation through a CommandDecoder and a ResponseDecoder, the
// way the relay will: each chunk goes to its direction's decoder, a blocked client
// waits until the server side has moved on. Renders every event as one log line, so
// a test compares logs; runs the same script whole, byte by byte, or split anywhere.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "proxy/imap/limits.hpp"

namespace imapscope::replay {

enum class Direction { Client, Server };

struct Chunk {
  Direction direction;
  std::string bytes;
};

struct Script {
  std::string name;
  imap::DecoderLimits limits;
  std::vector<Chunk> chunks;
  std::vector<std::string> expected;  // log lines
  int line = 0;                       // where the case starts in its file
};

struct RunResult {
  std::vector<std::string> log;
  std::string client_raw;  // concatenation of the raw bytes of all client events
  std::string server_raw;
  std::string client_input;  // what was fed
  std::string server_input;
};

// Splits each chunk into pieces: piece_sizes(chunk_index, size) gives their sizes.
using Splitter = std::function<std::vector<std::size_t>(std::size_t chunk_index, std::size_t size)>;

RunResult run_script(const Script& script, const Splitter& splitter = {});

// Scripts from a transcript file; throws std::runtime_error with file:line on bad syntax.
std::vector<Script> load_scripts(const std::string& path);

// Writes the file again with each case's expected lines replaced by actual logs.
void rewrite_expectations(const std::string& path, const std::vector<std::vector<std::string>>& logs);

}  // namespace imapscope::replay
