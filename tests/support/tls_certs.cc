#include "support/tls_certs.h"

#include <fmt/format.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace aicache::testing {
namespace {

constexpr std::string_view kNewKey = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";

std::string read_file(const std::filesystem::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

TestCertificates::TestCertificates() {
  ca_ = make_ca("ca");
  server_ = make_leaf("server", ca_, "DNS:localhost,IP:127.0.0.1");
  client_ = make_leaf("client", ca_, "DNS:aicache-test-client");
  const CertAndKey other_ca = make_ca("other-ca");
  other_ca_server_ = make_leaf("other-ca-server", other_ca, "DNS:localhost,IP:127.0.0.1");
  expired_server_ = make_leaf("expired-server", ca_, "DNS:localhost,IP:127.0.0.1", true);
  wrong_host_server_ = make_leaf("wrong-host-server", ca_, "DNS:other.example");
}

void TestCertificates::openssl(const std::string& args) const {
  const auto log = dir() / "openssl.log";
  const std::string command =
      fmt::format("cd '{}' && openssl {} >'{}' 2>&1", dir().string(), args, log.string());
  if (std::system(command.c_str()) != 0) {
    throw std::runtime_error(fmt::format("openssl {} failed:\n{}", args, read_file(log)));
  }
}

CertAndKey TestCertificates::make_ca(const std::string& name) const {
  CertAndKey ca{dir() / (name + ".crt"), dir() / (name + ".key")};
  openssl(fmt::format("req -x509 {} -keyout {}.key -out {}.crt -days 30 -subj /CN=aicache-test-{} "
                      "-addext basicConstraints=critical,CA:TRUE "
                      "-addext keyUsage=critical,keyCertSign,cRLSign",
                      kNewKey, name, name, name));
  return ca;
}

CertAndKey TestCertificates::make_leaf(const std::string& name, const CertAndKey& ca,
                                       const std::string& subject_alt_name, bool expired) const {
  CertAndKey leaf{dir() / (name + ".crt"), dir() / (name + ".key")};
  openssl(fmt::format("req -new {} -keyout {}.key -out {}.csr -subj /CN={} -addext "
                      "subjectAltName={}",
                      kNewKey, name, name, name, subject_alt_name));
  if (!expired) {
    openssl(fmt::format("x509 -req -in {}.csr -CA '{}' -CAkey '{}' -CAcreateserial -out {}.crt "
                        "-days 30 -copy_extensions copy",
                        name, ca.cert.string(), ca.key.string(), name));
    return leaf;
  }
  // `x509 -days` cannot go back in time; `openssl ca` takes any dates.
  const std::string db = name + "-db";
  std::filesystem::create_directories(dir() / db);
  std::ofstream(dir() / db / "index.txt").close();
  std::ofstream(dir() / db / "serial") << "1000\n";
  std::ofstream(dir() / (name + ".cnf"))
      << "[ca]\ndefault_ca = ca_default\n"
      << "[ca_default]\ndatabase = " << (dir() / db / "index.txt").string() << "\n"
      << "new_certs_dir = " << (dir() / db).string() << "\n"
      << "serial = " << (dir() / db / "serial").string() << "\n"
      << "default_md = sha256\npolicy = policy_any\ncopy_extensions = copy\n"
      << "unique_subject = no\n"
      << "[policy_any]\ncommonName = supplied\n";
  openssl(fmt::format("ca -batch -notext -config {}.cnf -cert '{}' -keyfile '{}' -in {}.csr "
                      "-out {}.crt -startdate 20200101000000Z -enddate 20210101000000Z",
                      name, ca.cert.string(), ca.key.string(), name, name));
  return leaf;
}

}  // namespace aicache::testing
