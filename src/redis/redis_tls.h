// The TLS settings of a store, made once (make_tls_context) and shared by
// every connection of the store (RedisConnection uses it for rediss://, and
// the Sentinel topology for TLS sentinels).
//
// Internal: OpenSSL's types stay out of the public headers.
#pragma once

#include <memory>
#include <string>

#include "aicache/redis_store.h"
#include "aicache/status.h"

struct ssl_ctx_st;

namespace aicache::redis {

// An SSL_CTX with the trust anchors and client certificate loaded. Immutable
// once made, so connections on many threads share it (OpenSSL's SSL_CTX is
// thread-safe for SSL_new()).
class TlsContext {
 public:
  ~TlsContext();
  TlsContext(const TlsContext&) = delete;
  TlsContext& operator=(const TlsContext&) = delete;

  ssl_ctx_st* get() const noexcept { return ctx_; }
  bool verify() const noexcept { return verify_; }
  // The name for SNI and the certificate check; empty: the endpoint's host.
  const std::string& server_name() const noexcept { return server_name_; }

 private:
  friend Result<std::shared_ptr<const TlsContext>> make_tls_context(const RedisTlsOptions&);
  TlsContext(ssl_ctx_st* ctx, bool verify, std::string server_name)
      : ctx_(ctx), verify_(verify), server_name_(std::move(server_name)) {}

  ssl_ctx_st* ctx_;
  bool verify_;
  std::string server_name_;
};

// Loads the CA file (or the system's CAs), the client certificate and key.
// kConfig errors name the file and OpenSSL's reason, never a file's content.
Result<std::shared_ptr<const TlsContext>> make_tls_context(const RedisTlsOptions& options);

// Whether a store's sentinels are reached over TLS: RedisSentinelOptions::tls
// if set, else as the master's endpoint (rediss://). The one place that
// decides it.
bool sentinels_use_tls(const RedisStoreOptions& options);

// The TLS contexts a store needs, both null when nothing is TLS; one
// context shared when both are (the same files and checks).
struct StoreTlsContexts {
  std::shared_ptr<const TlsContext> servers;    // a rediss:// endpoint's nodes
  std::shared_ptr<const TlsContext> sentinels;  // when sentinels_use_tls()
};

// Makes them (make_tls_context()) with the warning that tls_verify = false
// deserves, logged each time. TLS files set when neither the endpoint nor
// the sentinels use TLS are a kConfig error: they ask for TLS, and a silent
// plain connection is never what was meant.
Result<StoreTlsContexts> tls_contexts_for(const RedisStoreOptions& options);

}  // namespace aicache::redis
