// imapscope entry point. Until the relay lands, it offers the codec on transcripts:
//   imapscope decode FILE...   replays C:/S: transcripts through both decoders and
//                              prints every event, as the tests see them.
#include <cstdio>
#include <exception>
#include <string>
#include <string_view>

#include "proxy/replay/conversation.hpp"

namespace {

int usage(int code) {
  std::fputs(
      "usage: imapscope decode FILE...\n"
      "  Replays IMAP transcripts (lines 'C: ...' from the client, 'S: ...' from the\n"
      "  server) through the command and response decoders and prints their events.\n",
      code == 0 ? stdout : stderr);
  return code;
}

int decode(int argc, char** argv) {
  for (int i = 2; i < argc; ++i) {
    for (const auto& script : imapscope::replay::load_scripts(argv[i])) {
      std::printf("=== %s\n", script.name.c_str());
      const auto result = imapscope::replay::run_script(script);
      for (const auto& line : result.log) std::printf("%s\n", line.c_str());
    }
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    if (argc < 2) return usage(2);
    const std::string_view command = argv[1];
    if (command == "--help" || command == "-h") return usage(0);
    if (command == "decode" && argc > 2) return decode(argc, argv);
    return usage(2);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "imapscope: %s\n", e.what());
    return 1;
  }
}
