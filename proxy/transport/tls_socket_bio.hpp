// The socket under OpenSSL, with the records of one write gathered into a single
// system call.
//
// OpenSSL writes each TLS record (at most 16 KiB) with its own write() on a socket
// BIO. Relaying 64 KiB then costs four writes, and on loopback or a LAN each write
// also wakes the reader: per-write costs were most of the proxy's kernel time in
// the TLS→TLS benchmark. While a RecordBatch is open on a thread, this BIO appends
// the records OpenSSL writes to the batch instead, and the caller sends the batch
// at once. Outside a batch (handshakes, alerts, close_notify, a key update answered
// during a read) it writes to the socket directly, like OpenSSL's own socket BIO.
#pragma once

#include <string>

using BIO = struct bio_st;

namespace imapscope::transport {

// Reads and writes the socket fd (non-blocking; the caller owns and closes it).
BIO* make_socket_bio(int fd);

// While one lives, the thread's socket BIOs append what OpenSSL writes to records.
class RecordBatch {
 public:
  explicit RecordBatch(std::string& records);
  ~RecordBatch();
  RecordBatch(const RecordBatch&) = delete;
  RecordBatch& operator=(const RecordBatch&) = delete;

 private:
  std::string* previous_;
};

}  // namespace imapscope::transport
