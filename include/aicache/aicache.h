// Everything of aicache's public API in one include: every header of
// include/aicache/ but testing/, which is for tests. It needs every
// component, aicache::aicache; a program that links fewer includes the
// headers of those it links (docs/design.md, "Components").
#pragma once

#include "aicache/assistant_cache.h"
#include "aicache/clock.h"
#include "aicache/config.h"
#include "aicache/from_config.h"
#include "aicache/json.h"
#include "aicache/keys.h"
#include "aicache/log.h"
#include "aicache/memory_store.h"
#include "aicache/net.h"
#include "aicache/redis_store.h"
#include "aicache/server.h"
#include "aicache/status.h"
#include "aicache/store.h"
#include "aicache/token_manager.h"
#include "aicache/token_provider.h"
#include "aicache/ttl.h"
#include "aicache/version.h"
