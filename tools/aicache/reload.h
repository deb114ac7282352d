// `aicache serve`'s reload of its configuration on SIGHUP.
//
// What a reload changes, and what needs a restart (docs/operations.md,
// "Reloading the configuration", says why):
//   applied    the token apps (TokenManager::reconfigure), the default TTLs
//              ([ttl], AssistantCache::set_default_ttls), and the service's
//              API token, allowed hosts, access log, body size limit and
//              request timeout (Server::reconfigure);
//   kept       everything bound to the store, sockets or threads made at
//              start: the store ([store], REDIS_*), the key prefix and
//              version, the listen address, the connection limit, [tokens]
//              (the manager's timing), the warm-up. A change to one is
//              logged as a warning naming it; the running value stays.
// A configuration that does not load (a syntax error, an invalid value), or
// that the running service refuses (the API token turned off), changes
// nothing: the error is logged and counted (Server::count_reload), and the
// running configuration keeps serving. Connections stay open throughout.
//
// Thread safety: reload() is called from one thread (serve's signal loop).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "aicache/assistant_cache.h"
#include "aicache/config.h"
#include "aicache/server.h"
#include "aicache/token_manager.h"
#include "options.h"
#include "session.h"

namespace aicache::cli {

// The service's options from the configuration and the command line.
ServerOptions server_options(const Config& config, const Request& request);

// The settings `next` changes that a reload cannot apply (the store, [tokens]
// and so on), by their configuration names; never a value (they may hold a
// password). The server's own (listen, max_connections) are left to
// Server::reconfigure.
std::vector<std::string> settings_needing_restart(const Config& running, const Config& next);

class Reloader {
 public:
  // `running`: the configuration the service was started with.
  Reloader(Session& session, const Request& request, Config running,
           std::shared_ptr<AssistantCache> cache, std::shared_ptr<TokenManager> tokens,
           std::shared_ptr<Server> server);

  // Loads the configuration again and applies it, or keeps the running one
  // and says why. Logs the outcome; counts it in the server's figures.
  void reload();

 private:
  Status apply(const Config& next);

  Session& session_;
  const Request& request_;
  const Config started_;          // the store and the rest kept until a restart
  ServerOptions server_options_;  // as last applied: a failed reload goes back to them
  std::shared_ptr<AssistantCache> cache_;
  std::shared_ptr<TokenManager> tokens_;
  std::shared_ptr<Server> server_;
};

}  // namespace aicache::cli
