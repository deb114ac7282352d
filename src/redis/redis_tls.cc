#include "redis/redis_tls.h"

#include <fmt/format.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <string_view>

#include "aicache/log.h"
#include "core/try.h"
#include "redis/redis_errors.h"

namespace aicache::redis {
namespace {

// A file's name as messages show it: it comes from configuration.
std::string shown(std::string_view path) { return printable(path, 256); }

// An encrypted key is refused rather than asked for: OpenSSL's default
// callback would prompt on the terminal, blocking a service at start.
int no_passphrase(char* /*buf*/, int /*size*/, int /*rwflag*/, void* /*userdata*/) { return 0; }

// OpenSSL computes a certificate's cached extensions (key identifiers,
// constraints) on first use, under a lock but behind a flag read with an
// atomic load; ThreadSanitizer cannot see those atomics in the uninstrumented
// libcrypto and reports the first verifications on two threads as a race.
// Computing them here, before the context is shared, leaves the connections
// only reading.
void cache_extensions(SSL_CTX* ctx) {
  X509_STORE* store = SSL_CTX_get_cert_store(ctx);
  STACK_OF(X509_OBJECT)* objects = X509_STORE_get0_objects(store);
  for (int i = 0; i < sk_X509_OBJECT_num(objects); ++i) {
    if (X509* cert = X509_OBJECT_get0_X509(sk_X509_OBJECT_value(objects, i))) {
      X509_check_purpose(cert, -1, 0);
    }
  }
  if (X509* own = SSL_CTX_get0_certificate(ctx)) X509_check_purpose(own, -1, 0);
}

Error file_error(std::string_view what, std::string_view path) {
  return Error{ErrorCode::kConfig, fmt::format("redis TLS: cannot use the {} {}: {}", what,
                                               shown(path), take_openssl_errors())};
}

}  // namespace

TlsContext::~TlsContext() { SSL_CTX_free(ctx_); }

Result<std::shared_ptr<const TlsContext>> make_tls_context(const RedisTlsOptions& options) {
  if (options.cert_file.empty() != options.key_file.empty()) {
    return make_error(ErrorCode::kConfig,
                      "redis TLS: a client certificate needs both tls_cert_file and tls_key_file");
  }
  ERR_clear_error();
  SSL_CTX* raw = SSL_CTX_new(TLS_client_method());
  if (raw == nullptr) {
    return make_error(ErrorCode::kResourceExhausted,
                      fmt::format("redis TLS: cannot make a context: {}", take_openssl_errors()));
  }
  std::shared_ptr<const TlsContext> ctx(
      new TlsContext(raw, options.verify, options.server_name));
  // Redis supports TLS 1.2 and 1.3; older versions are broken.
  SSL_CTX_set_min_proto_version(raw, TLS1_2_VERSION);
  if (!options.ca_file.empty()) {
    if (SSL_CTX_load_verify_locations(raw, options.ca_file.c_str(), nullptr) != 1) {
      return std::unexpected(file_error("CA file", options.ca_file));
    }
  } else if (SSL_CTX_set_default_verify_paths(raw) != 1) {
    return make_error(ErrorCode::kConfig, fmt::format("redis TLS: cannot load the system's CAs: {}",
                                                      take_openssl_errors()));
  }
  SSL_CTX_set_default_passwd_cb(raw, no_passphrase);
  if (!options.cert_file.empty()) {
    if (SSL_CTX_use_certificate_chain_file(raw, options.cert_file.c_str()) != 1) {
      return std::unexpected(file_error("certificate file", options.cert_file));
    }
    // The key's file is named, never its content (OpenSSL's reasons do not
    // quote it either).
    if (SSL_CTX_use_PrivateKey_file(raw, options.key_file.c_str(), SSL_FILETYPE_PEM) != 1) {
      return std::unexpected(file_error("key file", options.key_file));
    }
    if (SSL_CTX_check_private_key(raw) != 1) {
      ERR_clear_error();
      return make_error(ErrorCode::kConfig,
                        fmt::format("redis TLS: the key file {} does not match the certificate {}",
                                    shown(options.key_file), shown(options.cert_file)));
    }
  }
  SSL_CTX_set_verify(raw, options.verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, nullptr);
  cache_extensions(raw);
  ERR_clear_error();
  return ctx;
}

bool sentinels_use_tls(const RedisStoreOptions& options) {
  return options.sentinel.tls.value_or(options.endpoint.tls);
}

Result<StoreTlsContexts> tls_contexts_for(const RedisStoreOptions& options) {
  const RedisEndpoint& endpoint = options.endpoint;
  const bool servers = endpoint.tls;
  const bool sentinels = !options.sentinel.sentinels.empty() && sentinels_use_tls(options);
  const RedisTlsOptions& tls = options.tls;
  if (!servers && !sentinels) {
    if (!tls.ca_file.empty() || !tls.cert_file.empty() || !tls.key_file.empty()) {
      return make_error(ErrorCode::kConfig,
                        fmt::format("redis TLS: TLS files are set but {} is not a rediss:// URL{}; "
                                    "use rediss:// for TLS, or unset them",
                                    endpoint.redacted_url(),
                                    options.sentinel.sentinels.empty()
                                        ? ""
                                        : " and the sentinels are plain (sentinel_tls = false)"));
    }
    return StoreTlsContexts{};
  }
  if (!tls.verify) {
    const std::string who = !sentinels ? endpoint.redacted_url()
                            : servers  ? endpoint.redacted_url() + " and its sentinels"
                                       : std::string("sentinels");
    log_message(LogLevel::kWarning,
                fmt::format("redis {}: TLS certificate verification is off (tls_verify = false): "
                            "the connection is encrypted but the server is not authenticated",
                            who));
  }
  AICACHE_ASSIGN_OR_RETURN(std::shared_ptr<const TlsContext> ctx, make_tls_context(tls));
  return StoreTlsContexts{.servers = servers ? ctx : nullptr,
                          .sentinels = sentinels ? ctx : nullptr};
}

}  // namespace aicache::redis
