// Redis Cluster's pure parts: key slots (CRC16/XMODEM, hash tags), node
// addresses, MOVED/ASK parsing and the CLUSTER SLOTS reader (hostile input,
// replies made with hiredis's own reader from RESP bytes).
#include "redis/cluster_slot.h"

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <hiredis/hiredis.h>

#include <memory>
#include <string>
#include <string_view>

#include "redis/cluster_topology.h"
#include "redis/redis_errors.h"

namespace aicache::redis {
namespace {

TEST(ClusterSlot, Crc16KnownVectors) {
  // The check value of CRC-16/XMODEM, as the Redis Cluster specification
  // gives it.
  EXPECT_EQ(crc16("123456789"), 0x31C3);
  EXPECT_EQ(crc16(""), 0);
  EXPECT_EQ(crc16("A"), 0x58E5);
}

TEST(ClusterSlot, SlotsMatchRedis) {
  // CLUSTER KEYSLOT of a Redis 7 server.
  EXPECT_EQ(key_slot("foo"), 12182);
  EXPECT_EQ(key_slot("bar"), 5061);
  EXPECT_EQ(key_slot("hello"), 866);
  EXPECT_EQ(key_slot(""), 0);
  EXPECT_LT(key_slot(std::string(1000, '\xff')), kClusterSlots);
}

TEST(ClusterSlot, HashTagsShareASlot) {
  EXPECT_EQ(key_slot("{user1000}.following"), key_slot("{user1000}.followers"));
  EXPECT_EQ(key_slot("{user1000}.following"), key_slot("user1000"));
  EXPECT_EQ(hash_tag("{user1000}.following"), "user1000");
  // Only the first '{' and the first '}' after it count.
  EXPECT_EQ(hash_tag("foo{bar}{zap}"), "bar");
  EXPECT_EQ(hash_tag("foo{{bar}}zap"), "{bar");
}

TEST(ClusterSlot, EmptyOrUnclosedTagsHashTheWholeKey) {
  EXPECT_EQ(hash_tag("foo{}{bar}"), "foo{}{bar}");  // an empty first tag: no tag
  EXPECT_EQ(hash_tag("{}"), "{}");
  EXPECT_EQ(hash_tag("foo{bar"), "foo{bar");
  EXPECT_EQ(hash_tag("foo}bar{"), "foo}bar{");
  EXPECT_EQ(key_slot("foo{}{bar}"), crc16("foo{}{bar}") % kClusterSlots);
}

TEST(ClusterSlot, HostPort) {
  auto a = parse_host_port("127.0.0.1:7000");
  ASSERT_TRUE(a);
  EXPECT_EQ(a->host, "127.0.0.1");
  EXPECT_EQ(a->port, 7000);
  auto v6 = parse_host_port("[::1]:7001");
  ASSERT_TRUE(v6);
  EXPECT_EQ(v6->host, "::1");
  EXPECT_EQ(host_port_key(v6->host, v6->port), "[::1]:7001");
  auto bare_v6 = parse_host_port("::1:7002");
  ASSERT_TRUE(bare_v6);
  EXPECT_EQ(bare_v6->host, "::1");
  auto empty_host = parse_host_port(":7003");
  ASSERT_TRUE(empty_host);
  EXPECT_EQ(empty_host->host, "");
  for (std::string_view bad : {"", "host", "host:", "host:0", "host:65536", "host:12x", "host:-1",
                               "ho st:1", "a/b:1", "a,b:1", "user@h:1"}) {
    EXPECT_FALSE(parse_host_port(bad)) << bad;
  }
}

RedisFailure ReplyError(std::string text) {
  RedisFailure f;
  f.kind = RedisFailure::Kind::kReply;
  f.text = std::move(text);
  return f;
}

TEST(ClusterRedirect, MovedAndAsk) {
  auto moved = parse_redirect(ReplyError("MOVED 3999 127.0.0.1:6381"));
  ASSERT_TRUE(moved);
  EXPECT_EQ(moved->kind, Redirect::Kind::kMoved);
  EXPECT_EQ(moved->slot, 3999);
  EXPECT_EQ(moved->host, "127.0.0.1");
  EXPECT_EQ(moved->port, 6381);
  auto ask = parse_redirect(ReplyError("ASK 0 :7000"));
  ASSERT_TRUE(ask);
  EXPECT_EQ(ask->kind, Redirect::Kind::kAsk);
  EXPECT_EQ(ask->host, "");
  for (const char* bad : {"MOVED 16384 h:1", "MOVED -1 h:1", "MOVED 1", "MOVED x h:1",
                          "MOVED 1 h:0", "ASK 1 h:99999", "MOVEDX 1 h:1", "ERR MOVED 1 h:1"}) {
    EXPECT_FALSE(parse_redirect(ReplyError(bad))) << bad;
  }
  RedisFailure io;
  io.kind = RedisFailure::Kind::kIo;
  io.text = "MOVED 1 h:1";
  EXPECT_FALSE(parse_redirect(io));
  EXPECT_TRUE(is_cluster_unsettled(ReplyError("CLUSTERDOWN The cluster is down")));
  EXPECT_TRUE(is_cluster_unsettled(ReplyError("TRYAGAIN Multiple keys request during rehashing")));
  EXPECT_FALSE(is_cluster_unsettled(ReplyError("ERR other")));
}

// A reply parsed by hiredis from RESP bytes, as a server would send them.
struct ParsedReply {
  std::unique_ptr<redisReply, void (*)(void*)> reply{nullptr, freeReplyObject};
};

ParsedReply Parse(std::string_view resp) {
  redisReader* reader = redisReaderCreate();
  redisReaderFeed(reader, resp.data(), resp.size());
  void* out = nullptr;
  const int rc = redisReaderGetReply(reader, &out);
  redisReaderFree(reader);
  EXPECT_EQ(rc, REDIS_OK);
  EXPECT_NE(out, nullptr) << resp;
  ParsedReply parsed;
  parsed.reply.reset(static_cast<redisReply*>(out));
  return parsed;
}

TEST(ClusterSlots, ReadsRangesAndMasters) {
  // Redis 7: [first, last, [ip, port, id, {metadata}], replicas...]
  const ParsedReply r = Parse(
      "*2\r\n"
      "*4\r\n:0\r\n:5460\r\n*4\r\n$9\r\n127.0.0.1\r\n:7000\r\n$2\r\nid\r\n*0\r\n"
      "*4\r\n$9\r\n127.0.0.1\r\n:7003\r\n$3\r\nid2\r\n*0\r\n"
      "*3\r\n:5461\r\n:16383\r\n*2\r\n$0\r\n\r\n:7001\r\n");
  auto ranges = parse_cluster_slots(*r.reply, "10.0.0.1");
  ASSERT_TRUE(ranges) << ranges.error().text;
  ASSERT_EQ(ranges->size(), 2u);
  EXPECT_EQ((*ranges)[0].first, 0);
  EXPECT_EQ((*ranges)[0].last, 5460);
  EXPECT_EQ((*ranges)[0].master.host, "127.0.0.1");
  EXPECT_EQ((*ranges)[0].master.port, 7000);
  EXPECT_EQ((*ranges)[1].master.host, "10.0.0.1");  // empty: the node asked
  EXPECT_EQ((*ranges)[1].master.port, 7001);
  ASSERT_EQ((*ranges)[0].replicas.size(), 1u);
  EXPECT_EQ((*ranges)[0].replicas[0].host, "127.0.0.1");
  EXPECT_EQ((*ranges)[0].replicas[0].port, 7003);
  EXPECT_TRUE((*ranges)[1].replicas.empty());
}

TEST(ClusterSlots, AtMostEightReplicasOfARangeAreKept) {
  std::string resp = fmt::format("*1\r\n*{}\r\n:0\r\n:10\r\n*2\r\n$1\r\nm\r\n:7000\r\n",
                                 3 + 20);
  for (int i = 0; i < 20; ++i) resp += fmt::format("*2\r\n$1\r\nr\r\n:{}\r\n", 7001 + i);
  const ParsedReply r = Parse(resp);
  auto ranges = parse_cluster_slots(*r.reply, "h");
  ASSERT_TRUE(ranges) << ranges.error().text;
  ASSERT_EQ((*ranges)[0].replicas.size(), kMaxReplicasPerRange);
  EXPECT_EQ((*ranges)[0].replicas.back().port, 7000 + kMaxReplicasPerRange);
  // Those beyond the bound are still checked: a malformed one fails the reply.
  const ParsedReply bad = Parse(resp.replace(resp.rfind(":7020"), 5, ":0"));
  EXPECT_FALSE(parse_cluster_slots(*bad.reply, "h"));
}

TEST(ClusterSlots, ReplicasWithoutAnAddressAreNotReadFrom) {
  // A replica's empty host is not the asked node's (that one answered as
  // itself, a master or another replica): unknown, like "?".
  const ParsedReply r = Parse(
      "*1\r\n*5\r\n:0\r\n:10\r\n*2\r\n$1\r\nm\r\n:7000\r\n"
      "*2\r\n$0\r\n\r\n:7001\r\n*2\r\n$1\r\n?\r\n:7002\r\n");
  auto ranges = parse_cluster_slots(*r.reply, "h");
  ASSERT_TRUE(ranges) << ranges.error().text;
  ASSERT_EQ(ranges->size(), 1u);
  EXPECT_EQ((*ranges)[0].master.host, "m");
  EXPECT_TRUE((*ranges)[0].replicas.empty());
}

TEST(ClusterSlots, UnknownAddressesAreSkipped) {
  const ParsedReply r = Parse("*1\r\n*3\r\n:0\r\n:10\r\n*2\r\n$1\r\n?\r\n:7000\r\n");
  auto ranges = parse_cluster_slots(*r.reply, "h");
  ASSERT_TRUE(ranges);
  EXPECT_TRUE(ranges->empty());
}

TEST(ClusterSlots, HostileRepliesAreRefused) {
  const char* bad[] = {
      ":1\r\n",                                                 // not an array
      "*1\r\n:1\r\n",                                           // a range not an array
      "*1\r\n*2\r\n:0\r\n:1\r\n",                               // no master
      "*1\r\n*3\r\n:10\r\n:5\r\n*2\r\n$1\r\nh\r\n:1\r\n",       // first > last
      "*1\r\n*3\r\n:0\r\n:16384\r\n*2\r\n$1\r\nh\r\n:1\r\n",    // slot out of range
      "*1\r\n*3\r\n:-1\r\n:5\r\n*2\r\n$1\r\nh\r\n:1\r\n",       // negative slot
      "*1\r\n*3\r\n$1\r\n0\r\n:5\r\n*2\r\n$1\r\nh\r\n:1\r\n",   // slot as a string
      "*1\r\n*3\r\n:0\r\n:5\r\n*2\r\n$1\r\nh\r\n:0\r\n",        // port 0
      "*1\r\n*3\r\n:0\r\n:5\r\n*2\r\n$1\r\nh\r\n:65536\r\n",    // port too big
      "*1\r\n*3\r\n:0\r\n:5\r\n*2\r\n:1\r\n:7000\r\n",          // host not a string
      "*1\r\n*3\r\n:0\r\n:5\r\n*1\r\n$1\r\nh\r\n",              // no port
      "*1\r\n*3\r\n:0\r\n:5\r\n*2\r\n$3\r\na b\r\n:7000\r\n",   // a space in the host
      "*1\r\n*3\r\n:0\r\n:5\r\n*2\r\n$3\r\na\nb\r\n:7000\r\n",  // a newline in the host
      "*1\r\n*3\r\n:0\r\n:5\r\n$1\r\nh\r\n",                    // master not an array
      // A replica not [host, port]: a string, a port 0, a host with a space.
      "*1\r\n*4\r\n:0\r\n:5\r\n*2\r\n$1\r\nh\r\n:1\r\n$1\r\nr\r\n",
      "*1\r\n*4\r\n:0\r\n:5\r\n*2\r\n$1\r\nh\r\n:1\r\n*2\r\n$1\r\nr\r\n:0\r\n",
      "*1\r\n*4\r\n:0\r\n:5\r\n*2\r\n$1\r\nh\r\n:1\r\n*2\r\n$3\r\nr s\r\n:1\r\n",
  };
  for (const char* resp : bad) {
    const ParsedReply r = Parse(resp);
    EXPECT_FALSE(parse_cluster_slots(*r.reply, "h")) << resp;
  }
}

}  // namespace
}  // namespace aicache::redis
