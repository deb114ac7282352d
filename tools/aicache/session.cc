#include "session.h"

#include <fmt/format.h>

#include <optional>
#include <utility>

#include "aicache/log.h"
#include "aicache/net.h"
#include "aicache/redis_store.h"
#include "commands.h"
#include "local_backend.h"
#include "remote.h"
#include "remote_backend.h"

namespace aicache::cli {

void Redactor::add_url(std::string_view url) {
  // The userinfo as written (percent-encoded) ...
  const std::size_t scheme = url.find("://");
  if (scheme != std::string_view::npos) {
    std::string_view rest = url.substr(scheme + 3);
    rest = rest.substr(0, rest.find_first_of("/?#"));
    const std::size_t at = rest.rfind('@');
    if (at != std::string_view::npos) {
      const std::string_view userinfo = rest.substr(0, at);
      const std::size_t colon = userinfo.find(':');
      if (colon != std::string_view::npos) add(userinfo.substr(colon + 1));
    }
  }
  // ... and decoded.
  if (auto endpoint = parse_redis_url(url)) add(endpoint->password);
}

void Redactor::add(std::string_view secret) {
  if (!secret.empty()) secrets_.emplace_back(secret);
}

std::string Redactor::operator()(std::string message) const {
  for (const auto& secret : secrets_) {
    for (std::size_t pos = message.find(secret); pos != std::string::npos;
         pos = message.find(secret, pos + 3)) {
      message.replace(pos, secret.size(), "***");
    }
  }
  return message;
}

int exit_code_for(const Error& error) {
  switch (error.code) {
    case ErrorCode::kInvalidArgument:
    case ErrorCode::kConfig:
      return kExitUsage;
    default:
      return kExitFailure;
  }
}

int Session::fail(std::string_view context, const Error& error) const {
  return report(fmt::format("{}: {}", context, error.message), exit_code_for(error));
}

int Session::fail(const Error& error) const { return report(error.message, exit_code_for(error)); }

int Session::usage(std::string_view message) const { return report(message, kExitUsage); }

int Session::report(std::string_view message, int exit_code) const {
  err_ << "aicache: " << redact_(std::string(message)) << '\n';
  return exit_code;
}

int Session::configure(const Request& request) {
  ConfigSources sources;
  if (request.has_url) {
    sources.overrides.insert_or_assign("REDIS_URL", request.url);
    redact_.add_url(request.url);
  }
  if (request.has_prefix) sources.overrides.insert_or_assign("AICACHE_KEY_PREFIX", request.prefix);
  if (request.has_config) sources.config_file = request.config_file;

  auto config = load_config(sources);
  if (!config) return fail("configuration", config.error());
  sources_ = std::move(sources);
  config_ = std::move(*config);
  redact_secrets(config_);

  // --server, else AICACHE_SERVER (not for serve: it is the service).
  std::optional<std::string> server;
  if (request.has_server) {
    server = request.server;
  } else if (request.command != Command::kServe) {
    server = config_.server;
  }
  if (server) {
    redact_.add_url(*server);
    auto client = RemoteClient::create(*server, config_.api_token.value_or(""));
    if (!client) return usage(client.error().message);
    backend_ = std::make_unique<RemoteBackend>(std::move(*client), config_.api_token.has_value());
    remote_ = true;
    warn_if_token_in_clear(*server);
    // The service's key prefix applies; the local one is not checked.
    return kExitOk;
  }

  auto local = LocalBackend::create(config_);
  if (!local) return fail(local.error());
  backend_ = std::move(*local);
  return kExitOk;
}

// The API token goes in a header of every request: over http:// to another
// machine anyone on the path can read it and then use the service. Warned
// about, not refused (a trusted private network, a TLS-terminating sidecar),
// on every run.
void Session::warn_if_token_in_clear(std::string_view server) const {
  if (!config_.api_token || !server.starts_with("http://")) return;
  const auto host = url_host(server);
  if (host && is_loopback_host(*host)) return;
  err_ << "aicache: warning: --server/AICACHE_SERVER is http:// to a host that is not "
          "loopback: the API token (AICACHE_API_TOKEN) travels in clear text; use https://\n";
}

void Session::redact_secrets(const Config& config) {
  if (config.redis_url) redact_.add_url(*config.redis_url);
  if (auto it = config.environment.find("REDIS_PASSWORD"); it != config.environment.end()) {
    redact_.add(it->second);
  }
  for (const AppCredentials& app : config.apps) redact_.add(app.secret);
  if (config.api_token) redact_.add(*config.api_token);
}

Result<Config> Session::load_again() {
  auto config = load_config(sources_);
  if (config) redact_secrets(*config);
  return config;
}

void Session::log_config_warnings() const {
  for (const std::string& warning : config_.warnings) {
    log_message(LogLevel::kWarning, redact_(warning));
  }
}

}  // namespace aicache::cli
