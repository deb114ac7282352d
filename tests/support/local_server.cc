#include "support/local_server.h"

namespace aicache::testing {

Result<std::shared_ptr<Server>> start_local_server(std::shared_ptr<AssistantCache> cache,
                                                   std::shared_ptr<TokenManager> tokens,
                                                   ServerOptions options) {
  options.listen = "127.0.0.1:0";
  auto server = Server::create(std::move(cache), std::move(tokens), std::move(options));
  if (!server) return server;
  if (auto started = (*server)->start(); !started) return std::unexpected(started.error());
  return server;
}

}  // namespace aicache::testing
