// Certificates for TLS tests, made at test time with the `openssl` CLI in a
// TempDir (no key material is checked in): a CA the client trusts, a server
// and a client certificate from it, and the certificates a client must
// refuse (another CA's, an expired one, one for another host name).
//
//   TestCertificates certs;                       // throws if openssl fails
//   RedisServer server({.tls = certs.server()});  // see RedisServerOptions::tls
//
// Every server certificate is for "localhost" and 127.0.0.1 (DNS and IP
// SANs) unless said otherwise. EC P-256 keys: quick to make.
//
// Not thread-safe; make it before the threads that use its files.
#pragma once

#include <filesystem>
#include <string>

#include "support/temp_dir.h"

namespace aicache::testing {

// A certificate (PEM, the leaf only) and its unencrypted PEM key.
struct CertAndKey {
  std::filesystem::path cert;
  std::filesystem::path key;
};

class TestCertificates {
 public:
  TestCertificates();

  // The CA the tests trust (tls_ca_file), and the server's CA (tls-ca-cert-file,
  // which checks client certificates).
  const std::filesystem::path& ca() const noexcept { return ca_.cert; }
  // From ca(): the server's, and a client's (for tls-auth-clients).
  const CertAndKey& server() const noexcept { return server_; }
  const CertAndKey& client() const noexcept { return client_; }
  // Refused by a client trusting ca(): from another CA ("unable to get local
  // issuer certificate"), expired in 2021 ("certificate has expired"), for
  // DNS:other.example only ("hostname mismatch" / "IP address mismatch").
  const CertAndKey& other_ca_server() const noexcept { return other_ca_server_; }
  const CertAndKey& expired_server() const noexcept { return expired_server_; }
  const CertAndKey& wrong_host_server() const noexcept { return wrong_host_server_; }

  const std::filesystem::path& dir() const noexcept { return dir_.path(); }

 private:
  // Runs `openssl <args>` (a shell word list) in dir(); throws with its output
  // on failure.
  void openssl(const std::string& args) const;
  CertAndKey make_ca(const std::string& name) const;
  // A key and a certificate for `subject_alt_name`, signed by `ca`; valid
  // now unless `expired`.
  CertAndKey make_leaf(const std::string& name, const CertAndKey& ca,
                       const std::string& subject_alt_name, bool expired = false) const;

  TempDir dir_;
  CertAndKey ca_;
  CertAndKey server_;
  CertAndKey client_;
  CertAndKey other_ca_server_;
  CertAndKey expired_server_;
  CertAndKey wrong_host_server_;
};

}  // namespace aicache::testing
