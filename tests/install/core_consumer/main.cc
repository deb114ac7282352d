// The memory store and AssistantCache, with aicache::core alone.
#include <aicache/assistant_cache.h>
#include <aicache/memory_store.h>
#include <aicache/version.h>

#include <cstdio>
#include <string>

int main() {
  auto cache = aicache::AssistantCache::create(aicache::make_memory_store());
  if (!cache) return 1;
  if (!(*cache)->set_access_token("wechat", "wx1", "TOKEN")) return 1;
  auto token = (*cache)->get_access_token("wechat", "wx1");
  if (token != "TOKEN") return 1;
  std::printf("aicache::core %s installed and found alone\n",
              std::string(aicache::version()).c_str());
  return 0;
}
