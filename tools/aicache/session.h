// One run of `aicache`: the configuration, the backend the command acts on,
// and the way messages are printed (every one through the redactor).
#pragma once

#include <memory>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include "aicache/config.h"
#include "aicache/status.h"
#include "backend.h"
#include "options.h"

namespace aicache::cli {

// Replaces every known secret in a message by "***". The library promises
// not to put secrets in messages; this is the second line of defence, as a
// leaked Redis password in a terminal or CI log cannot be taken back.
class Redactor {
 public:
  // The password of a URL, as written (percent-encoded) and decoded.
  void add_url(std::string_view url);
  void add(std::string_view secret);
  std::string operator()(std::string message) const;

 private:
  std::vector<std::string> secrets_;
};

// The exit code for an error: 2 for invalid input or configuration, else 3.
int exit_code_for(const Error& error);

class Session {
 public:
  Session(std::ostream& out, std::ostream& err) : out_(out), err_(err) {}

  // Loads the configuration and chooses the backend: the service of
  // --server or AICACHE_SERVER (never for serve, which is the service), else
  // the local store, whose key prefix is checked here. Nothing is opened.
  // Prints what went wrong and returns its exit code; kExitOk otherwise.
  int configure(const Request& request);

  // Logs the configuration's warnings (a secret file others may read); for
  // the commands that use the apps' secrets or the API token.
  void log_config_warnings() const;

  // The configuration loaded again from the sources configure() read, for
  // `aicache serve`'s reload on SIGHUP: the config file and .env are read
  // anew, the command line's overrides apply as before. Its secrets join
  // those kept out of messages. config() is not changed. REQUIRES:
  // configure() succeeded.
  Result<Config> load_again();

  // Prints "aicache: {context}: {message}" and returns the exit code for it.
  int fail(std::string_view context, const Error& error) const;
  // Prints "aicache: {message}" (an error that names its context) and
  // returns the exit code for it.
  int fail(const Error& error) const;
  // Prints "aicache: {message}" and returns kExitUsage.
  int usage(std::string_view message) const;
  // Prints "aicache: {message}" and returns `exit_code`.
  int report(std::string_view message, int exit_code) const;

  const Config& config() const { return config_; }
  // REQUIRES: configure() succeeded.
  Backend& backend() const { return *backend_; }
  // Whether the backend is a running service (--server / AICACHE_SERVER).
  bool remote() const { return remote_; }
  std::ostream& out() const { return out_; }
  std::ostream& err() const { return err_; }

 private:
  void warn_if_token_in_clear(std::string_view server) const;

  std::ostream& out_;
  std::ostream& err_;
  void redact_secrets(const Config& config);

  Redactor redact_;
  ConfigSources sources_;  // what configure() read
  Config config_;
  std::unique_ptr<Backend> backend_;  // after config_: the local one reads it
  bool remote_ = false;
};

}  // namespace aicache::cli
