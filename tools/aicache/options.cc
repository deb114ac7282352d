#include "options.h"

#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "aicache/version.h"
#include "commands.h"

namespace aicache::cli {

namespace {

// The first word that is neither an option, an option's value nor a known
// command, if it comes before any command: what the user meant as one.
std::optional<std::string> unknown_command(int argc, char** argv, const CLI::App& app) {
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg == "--") return std::nullopt;
    if (arg == "--config" || arg == "--url" || arg == "--prefix" || arg == "--server") {
      ++i;  // its value
      continue;
    }
    if (arg.starts_with('-')) continue;
    for (const CLI::App* sub : app.get_subcommands({})) {
      if (sub->check_name(std::string(arg))) return std::nullopt;
    }
    return std::string(arg.substr(0, 64));
  }
  return std::nullopt;
}

}  // namespace

std::variant<Request, int> parse_command_line(int argc, char** argv, std::ostream& out,
                                              std::ostream& err) {
  Request request;
  CLI::App app{"Inspect and change an aicache store (memory or Redis).", "aicache"};
  app.set_version_flag("--version", fmt::format("aicache {}", kVersion),
                       "Print the version and exit");
  app.require_subcommand(1);
  app.footer(
      "Configuration: --config FILE, else $AICACHE_CONFIG, else ./aicache.toml; .env and the\n"
      "environment (REDIS_URL, REDIS_HOST, AICACHE_KEY_PREFIX, ...) override it.\n"
      "With --server URL (or AICACHE_SERVER) get, set, del, ttl, stats and token act through\n"
      "a running 'aicache serve' over HTTP: its store, prefix and token apps are used, and\n"
      "--url, --prefix and the REDIS_* settings are ignored. AICACHE_API_TOKEN, if set, is\n"
      "sent as 'Authorization: Bearer <token>'.\n"
      "Exit codes: 0 ok, 1 not found, 2 usage or configuration error, 3 store, platform or\n"
      "service failure.");
  CLI::Option* config_opt =
      app.add_option("--config", request.config_file, "Config file (TOML)")->type_name("FILE");
  CLI::Option* url_opt = app.add_option("--url", request.url, "Redis URL (overrides REDIS_URL)")
                             ->type_name("REDIS_URL");
  CLI::Option* prefix_opt =
      app.add_option("--prefix", request.prefix, "Key prefix (overrides AICACHE_KEY_PREFIX)")
          ->type_name("PREFIX");
  CLI::Option* server_opt =
      app.add_option("--server", request.server,
                     "Act through the 'aicache serve' at URL (overrides AICACHE_SERVER)")
          ->type_name("URL");

  auto add_command = [&](const char* name, const char* description) {
    CLI::App* sub = app.add_subcommand(name, description);
    // Global options are accepted after the command too.
    sub->fallthrough();
    return sub;
  };
  auto add_key = [&](CLI::App* sub) {
    sub->add_option("KEY", request.key, "The logical key (prefix and version are added)")
        ->required();
  };

  CLI::App* get = add_command("get", "Print the value of KEY (exit 1 if missing)");
  add_key(get);
  get->add_flag("--raw", request.raw, "Print the stored bytes instead of decoding JSON");

  CLI::App* set = add_command("set", "Store VALUE under KEY");
  add_key(set);
  set->add_option("VALUE", request.value, "The value, stored as a JSON string unless --json")
      ->required();
  CLI::Option* ttl_opt =
      set->add_option("--ttl", request.ttl, "Seconds to live (0 removes; default: configured)")
          ->type_name("SECONDS");
  set->add_flag("--json", request.json, "VALUE is a JSON document, stored as such");

  CLI::App* del = add_command("del", "Delete KEY (exit 1 if it did not exist)");
  add_key(del);

  CLI::App* ttl = add_command("ttl", "Print KEY's remaining seconds, or 'never'");
  add_key(ttl);

  CLI::App* stats = add_command("stats", "Print the store's figures");
  stats->add_flag("--json", request.json, "Print one JSON object");

  CLI::App* warm = add_command(
      "warm", "Load cache entries from a JSON Lines file (see docs/operations.md)");
  warm->add_option("FILE", request.file, "The file, or - for standard input")->required();
  warm->footer(
      "\nOne object a line: {\"family\": \"conversation\" | \"ai_config\" | \"kv\", \"id\": \"...\",\n"
      "\"value\": <JSON>, \"ttl\": <seconds, optional>}. Tokens are never imported.\n"
      "Exit codes: 0 every line loaded, 1 some lines refused (each reported with its line\n"
      "number; the others loaded), 2 usage, 3 the store or service failed (the load stops).");

  CLI::App* export_ = add_command(
      "export", "Write a family's entries as JSON Lines to standard output (see 'warm')");
  export_->add_option("--family", request.family, "conversation, ai_config or kv")
      ->required()
      ->type_name("FAMILY");
  export_->footer(
      "\nEach line: {\"family\": ..., \"id\": ..., \"value\": ..., \"ttl\": SECONDS_LEFT}, so\n"
      "'aicache export --family F --server URL | aicache warm -' copies a family between stores.\n"
      "Tokens are never exported.");

  CLI::App* hotkeys = add_command(
      "hotkeys", "Print the keys read most lately, hottest first (use with --server)");
  hotkeys->add_flag("--json", request.json, "Print one JSON array");

  CLI::App* serve = add_command(
      "serve", "Run the HTTP service: tokens, cached data, /metrics and a dashboard");
  CLI::Option* listen_opt =
      serve->add_option("--listen", request.listen,
                        "Address to listen on (default 127.0.0.1:8080; or AICACHE_LISTEN)")
          ->type_name("HOST:PORT");
  serve->add_flag("--no-access-log", request.no_access_log,
                  "Do not log one line per request (or AICACHE_ACCESS_LOG=off)");
  serve->footer(
      "\nEnvironment: AICACHE_API_TOKEN (required beyond loopback: /v1 routes then need\n"
      "'Authorization: Bearer <token>'), AICACHE_LISTEN, AICACHE_MAX_BODY_BYTES (1 MiB),\n"
      "AICACHE_MAX_CONNECTIONS (10000), AICACHE_REQUEST_TIMEOUT (seconds, 10),\n"
      "AICACHE_ACCESS_LOG (on/off), AICACHE_ALLOWED_HOSTS (names besides loopback a\n"
      "service without an API token answers to).\n"
      "Stops gracefully on SIGTERM or SIGINT.");

  // token CHANNEL APP_KEY is the shorthand of token get CHANNEL APP_KEY; the
  // words "get" and "invalidate" are therefore not usable as a CHANNEL (no
  // channel is named so).
  CLI::App* token = add_command(
      "token",
      "Print a configured app's access token, or invalidate it (see 'token --help')");
  token->require_subcommand(0, 1);
  token->footer(
      "Forms:\n"
      "  aicache token CHANNEL APP_KEY [--json] [--force-refresh]   (same as 'token get')\n"
      "  aicache token get CHANNEL APP_KEY [--json] [--force-refresh]\n"
      "  aicache token invalidate CHANNEL APP_KEY TOKEN\n"
      "CHANNEL: wechat, wecom or dingtalk. APP_KEY: the app id; WeCom: CORP_ID.AGENT_ID.\n"
      "Apps are configured in [[apps]] of aicache.toml. --force-refresh on WeChat's stable API\n"
      "revokes the current token at once (the platform allows 20 forced fetches a day).\n"
      "Exit codes: 0 ok, 1 'not current' (invalidate), 2 unknown channel or app, missing\n"
      "secret or a configuration error reported by the platform, 3 upstream or store failure.");
  auto add_app_arguments = [&](CLI::App* sub, bool required) {
    CLI::Option* channel =
        sub->add_option("CHANNEL", request.channel, "wechat, wecom or dingtalk");
    CLI::Option* app_key = sub->add_option(
        "APP_KEY", request.app_key, "The app id as configured; WeCom: CORP_ID.AGENT_ID");
    if (required) {
      channel->required();
      app_key->required();
    }
    return std::pair{channel, app_key};
  };
  const auto [token_channel, token_app_key] = add_app_arguments(token, false);
  CLI::Option* json_opt =
      token->add_flag("--json", request.json,
                      "Print {\"access_token\": ..., \"expires_in\": SECONDS_LEFT}");
  CLI::Option* force_opt = token->add_flag(
      "--force-refresh", request.force_refresh,
      "Fetch a new token even if the stored one is valid (WeChat stable: revokes the old one)");

  CLI::App* token_get = token->add_subcommand("get", "Print the token (the default form)");
  token_get->fallthrough();
  add_app_arguments(token_get, true);

  CLI::App* token_invalidate = token->add_subcommand(
      "invalidate",
      "Drop the stored token if it is still TOKEN: 'invalidated' (0) or 'not current' (1)");
  token_invalidate->fallthrough();
  add_app_arguments(token_invalidate, true);
  token_invalidate->add_option("TOKEN", request.token, "The token the platform rejected")
      ->required();

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e, out, err);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e, out, err);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e, out, err);
  } catch (const CLI::ParseError& e) {
    // CLI11 reports "aicache frobnicate" as a missing subcommand; name the
    // word it did not know instead.
    if (auto unknown = unknown_command(argc, argv, app); unknown && app.get_subcommands().empty()) {
      err << "aicache: unknown command '" << *unknown << "'\nRun 'aicache --help' for usage.\n";
      return kExitUsage;
    }
    err << "aicache: " << e.what() << "\nRun 'aicache --help' for usage.\n";
    return kExitUsage;
  }
  request.has_config = config_opt->count() > 0;
  request.has_url = url_opt->count() > 0;
  request.has_prefix = prefix_opt->count() > 0;
  request.has_server = server_opt->count() > 0;
  request.has_ttl = ttl_opt->count() > 0;

  if (get->parsed()) {
    request.command = Command::kGet;
  } else if (set->parsed()) {
    request.command = Command::kSet;
  } else if (del->parsed()) {
    request.command = Command::kDel;
  } else if (ttl->parsed()) {
    request.command = Command::kTtl;
  } else if (stats->parsed()) {
    request.command = Command::kStats;
  } else if (hotkeys->parsed()) {
    request.command = Command::kHotKeys;
  } else if (export_->parsed()) {
    request.command = Command::kExport;
  } else if (warm->parsed()) {
    request.command = Command::kWarm;
  } else if (serve->parsed()) {
    if (request.has_server) {
      err << "aicache: serve does not take --server (it is the service)\n"
             "Run 'aicache serve --help' for usage.\n";
      return kExitUsage;
    }
    request.command = Command::kServe;
    request.has_listen = listen_opt->count() > 0;
  } else if (token_invalidate->parsed()) {
    if (json_opt->count() > 0 || force_opt->count() > 0) {
      err << "aicache: token invalidate takes neither --json nor --force-refresh\n"
             "Run 'aicache token --help' for usage.\n";
      return kExitUsage;
    }
    request.command = Command::kTokenInvalidate;
  } else if (token->parsed()) {
    // The shorthand's arguments are optional to CLI11 (so that "get" and
    // "invalidate" can follow "token"), but both are needed.
    if (!token_get->parsed() && (token_channel->count() == 0 || token_app_key->count() == 0)) {
      err << "aicache: token needs CHANNEL and APP_KEY\n"
             "Run 'aicache token --help' for usage.\n";
      return kExitUsage;
    }
    request.command = Command::kToken;
  } else {
    err << "aicache: no command given\nRun 'aicache --help' for usage.\n";
    return kExitUsage;
  }
  return request;
}

}  // namespace aicache::cli
