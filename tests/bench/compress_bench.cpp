// What COMPRESS=DEFLATE costs the relay per byte, on the two kinds of mail data that
// matter: text (headers, bodies; compresses well) and base64 attachments (random
// bytes in base64: compresses to ~76 %). The relay writes in bursts and reads in
// 16 KiB pieces, so both sides are measured that way.
//
// A compressed leg costs one inflate per byte read and one deflate per byte written.
// Passing a compressed stream through unchanged while inflating a copy for
// inspection would cost the inflate only: BM_inflate against BM_deflate + BM_inflate
// is that comparison (tests/bench/README.md, "COMPRESS").
#include <benchmark/benchmark.h>

#include <random>
#include <string>

#include "proxy/compress/deflate.hpp"
#include "tests/bench/bench_support.hpp"

namespace {

using imapscope::compress::Deflater;
using imapscope::compress::Inflater;

constexpr std::size_t kCorpus = 8 << 20;
constexpr std::size_t kPiece = 16 * 1024;

std::string base64_attachment(std::size_t size) {
  static const char* alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::mt19937 rng(42);
  std::string out;
  out.reserve(size);
  while (out.size() < size) {
    for (int i = 0; i < 76 && out.size() < size; ++i) out += alphabet[rng() % 64];
    out += "\r\n";
  }
  out.resize(size);
  return out;
}

const std::string& corpus(int kind) {
  static const std::string text = imapscope::bench::make_text(kCorpus);
  static const std::string attachment = base64_attachment(kCorpus);
  return kind == 0 ? text : attachment;
}

void BM_deflate(benchmark::State& state) {
  const auto& data = corpus(static_cast<int>(state.range(0)));
  const std::size_t burst = static_cast<std::size_t>(state.range(1));
  std::string out;
  std::size_t compressed = 0;
  for (auto _ : state) {
    Deflater deflater;
    for (std::size_t at = 0; at < data.size(); at += burst) {
      out.clear();
      deflater.compress(std::string_view(data).substr(at, burst), out);
      compressed += out.size();
    }
    benchmark::DoNotOptimize(out.data());
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * data.size()));
  state.counters["ratio"] = static_cast<double>(compressed) / static_cast<double>(state.iterations() * data.size());
}

void BM_inflate(benchmark::State& state) {
  const auto& data = corpus(static_cast<int>(state.range(0)));
  std::string wire;
  {
    Deflater deflater;
    for (std::size_t at = 0; at < data.size(); at += 64 * 1024) deflater.compress(std::string_view(data).substr(at, 64 * 1024), wire);
  }
  std::string out;
  for (auto _ : state) {
    Inflater inflater;
    for (std::size_t at = 0; at < wire.size(); at += kPiece) {
      std::string_view piece = std::string_view(wire).substr(at, kPiece);
      while (!piece.empty()) {
        out.clear();
        if (!inflater.inflate(piece, out, 64 * 1024)) state.SkipWithError("inflate failed");
      }
    }
    benchmark::DoNotOptimize(out.data());
  }
  // Plaintext bytes, so that the figure compares with BM_deflate's.
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * data.size()));
}

// range(0): 0 text, 1 base64 attachment; range(1): bytes per write burst.
BENCHMARK(BM_deflate)->Args({0, 16 * 1024})->Args({0, 256 * 1024})->Args({1, 256 * 1024})->Unit(benchmark::kMillisecond);
BENCHMARK(BM_inflate)->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
