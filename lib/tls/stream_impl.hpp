// lib/tls/stream_impl.hpp - tls::stream's state (see stream.cpp for the protocol between
// its reader, its writer and OpenSSL; stream_info.cpp for what it tells about the session).
#pragma once

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <atomic>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>

#include "fibers/error.hpp"
#include "fibers/mutex.hpp"
#include "tls/tls_impl.hpp"

namespace fibers::tls {

inline constexpr std::size_t in_capacity = 64 * 1024;  // > one record (16 KiB + overhead), read in bulk
inline constexpr std::size_t max_write = 64 * 1024;    // per write_some: four full records

struct stream::impl {
  std::unique_ptr<detail::transport> t;
  std::shared_ptr<context::impl> ctx;
  SSL* ssl = nullptr;
  std::string name;         // the server name given (client) or asked for (server, after SNI)
  std::string session_key;  // client session cache key, "name:port"
  std::string peer;         // for messages: "name:port" or the transport's peer address

  std::mutex mu;  // OpenSSL calls, in_pos/in_end/in_eof, out, detail, write_error
  std::unique_ptr<char[]> in{new char[in_capacity]};
  std::size_t in_pos = 0, in_end = 0;
  bool in_eof = false;
  std::vector<char> out;
  std::string detail;          // OpenSSL's reason for the last TLS failure
  std::error_code failure;     // the tls::errc of that failure
  std::error_code write_error; // sticky after a write failed midway

  fibers::mutex flush_mu;
  std::vector<char> sending;
  fibers::mutex handshake_mu;
  std::atomic<bool> handshaken{false};
  std::atomic<bool> reading{false}, writing{false};

  ~impl() {
    if (ssl != nullptr) SSL_free(ssl);  // frees the BIO too
    if (t) t->close();
  }

  struct result {
    int ret;
    int err;
    bool made_records;  // the call appended records to `out`...
    bool first;         // ...and `out` was empty before it (nobody else is due to send them)
  };
  // One OpenSSL call: the error queue is clean before, read and cleared after. `ok` tells a
  // return value that is not a failure (SSL_shutdown's 0: "sent, the peer's not yet seen").
  template <class F>
  result call(F&& f, int ok_from = 1) {
    std::lock_guard lk(mu);
    const std::size_t before = out.size();
    ERR_clear_error();
    const int r = f();
    const int e = r >= ok_from ? SSL_ERROR_NONE : SSL_get_error(ssl, r);
    if (e == SSL_ERROR_SSL || e == SSL_ERROR_SYSCALL) record_failure(e);
    ERR_clear_error();
    return {r, e, out.size() > before, before == 0};
  }

  void record_failure(int e) {
    const unsigned long code = ERR_peek_error();
    const int reason = ERR_GET_REASON(code);
    if (code == 0 && e == SSL_ERROR_SYSCALL) {
      failure = make_error_code(errc::truncated);
      detail = "peer closed the connection without close_notify";
      return;
    }
    if (reason == SSL_R_CERTIFICATE_VERIFY_FAILED) {
      if (!session_key.empty()) ctx->drop_session(session_key);
      failure = make_error_code(errc::verify_failed);
      const long v = SSL_get_verify_result(ssl);
      detail = std::string("certificate verify failed: ") + X509_verify_cert_error_string(v);
      return;
    }
    if (reason == SSL_R_UNEXPECTED_EOF_WHILE_READING) {
      failure = make_error_code(errc::truncated);
      detail = "peer closed the connection without close_notify";
      return;
    }
    // A connection that failed (not merely cut short) is not to be resumed (RFC 5246 7.2.2).
    if (!session_key.empty()) ctx->drop_session(session_key);
    failure = make_error_code(handshaken.load(std::memory_order_relaxed) ? errc::protocol_error
                                                                          : errc::handshake_failed);
    std::string reasons = detail::drain_error_queue();
    detail = failure.message() + (reasons.empty() ? "" : ": " + reasons);
  }

  std::error_code take_failure() {
    std::lock_guard lk(mu);
    return failure ? failure : make_error_code(errc::protocol_error);
  }

  // Reads more TLS bytes from the transport into `in` (the reader, or the handshaker).
  std::error_code fill(deadline dl) {
    std::size_t start;
    {
      std::lock_guard lk(mu);
      if (in_pos == in_end) {
        in_pos = in_end = 0;
      } else if (in_pos > 0) {
        std::memmove(in.get(), in.get() + in_pos, in_end - in_pos);
        in_end -= in_pos;
        in_pos = 0;
      }
      start = in_end;
    }
    std::error_code ec;
    const std::size_t n = t->read_some(mutable_buffer(in.get() + start, in_capacity - start), ec, dl);
    if (ec) return ec;
    std::lock_guard lk(mu);
    in_end += n;
    if (n == 0) in_eof = true;
    return {};
  }

  // Takes a fibers::mutex within `dl`, as an error code (its lock() throws).
  static std::error_code lock_within(fibers::mutex& m, deadline dl) {
    try {
      if (m.lock_until(dl)) return {};
      return std::make_error_code(std::errc::timed_out);
    } catch (const fibers::canceled&) {
      return make_error_code(fibers::errc::canceled);
    } catch (const std::system_error& e) {
      return e.code();  // the fiber's inherited deadline
    }
  }

  // Sends what OpenSSL has written so far, in order. `wait`: take the send lock even if
  // another fiber holds it (writers, the handshake); otherwise (readers) leave the records to
  // the fiber that holds it. A reader must not wait behind a writer stuck on a full
  // transport: with both ends doing that, neither would read again.
  //
  // Nothing is stranded: whoever appends records either flushes or finds the lock taken, and
  // every holder looks at `out` again after unlocking (under mu, so it sees any append that
  // came before a failed try_lock).
  std::error_code flush(deadline dl, bool wait = true) {
    for (;;) {
      if (wait) {
        if (std::error_code ec = lock_within(flush_mu, dl)) {
          std::lock_guard lk(mu);
          // Our records are numbered but may never leave: the stream cannot write any more
          // (the holder sends what it took; write_error stops it before ours).
          if (!write_error) write_error = ec;
          return ec;
        }
      } else if (!flush_mu.try_lock()) {
        return {};
      }
      std::error_code ec = send_pending(dl);
      flush_mu.unlock();
      if (ec) return ec;
      std::lock_guard lk(mu);
      if (out.empty() || write_error) return write_error;
      wait = false;  // appended after our last look by someone whose try_lock failed
    }
  }

  // Under flush_mu: sends `out` until it is empty.
  std::error_code send_pending(deadline dl) {
    for (;;) {
      {
        std::lock_guard lk(mu);
        if (write_error) return write_error;
        if (out.empty()) return {};
        sending.swap(out);
      }
      std::error_code ec;
      std::size_t done = 0;
      while (done < sending.size()) {
        done += t->write_some(const_buffer(sending.data() + done, sending.size() - done), ec, dl);
        if (ec) {
          std::lock_guard lk(mu);
          // OpenSSL has numbered these records: without them (or with part of one sent)
          // nothing more can be written on this stream.
          if (!write_error) write_error = ec;
          sending.clear();
          return ec;
        }
      }
      sending.clear();
    }
  }

  void handshake(std::error_code& ec, deadline dl) {
    ec.clear();
    if (handshaken.load(std::memory_order_acquire)) return;
    if ((ec = lock_within(handshake_mu, dl))) return;
    std::lock_guard hl(handshake_mu, std::adopt_lock);
    if (handshaken.load(std::memory_order_acquire)) return;
    for (;;) {
      const result r = call([&] { return SSL_do_handshake(ssl); });
      if (r.ret == 1) handshaken.store(true, std::memory_order_release);
      if (r.made_records) {
        // Also after a failure: the alert that tells the peer why. A TLS failure is the
        // better report than a failure to send its alert.
        std::error_code fe = flush(dl);
        if (fe && r.err != SSL_ERROR_SSL && r.err != SSL_ERROR_SYSCALL) {
          ec = fe;
          return;
        }
      }
      if (r.ret == 1) return;
      if (r.err == SSL_ERROR_WANT_READ) {
        if ((ec = fill(dl))) return;
        continue;
      }
      ec = take_failure();
      return;
    }
  }
};

}  // namespace fibers::tls
