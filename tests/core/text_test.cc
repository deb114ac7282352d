// The printable filter (aicache/log.h), the percent-encoder (core/text.h) and
// the loopback test (aicache/net.h): the shared helpers behind several
// threat-model fixes.
#include <gtest/gtest.h>

#include <string>

#include "aicache/log.h"
#include "aicache/net.h"
#include "core/text.h"

namespace aicache {
namespace {

TEST(PrintableTest, ReplacesWhatATerminalOrLogWouldTakeForMoreThanText) {
  EXPECT_EQ(printable("plain text", 100), "plain text");
  EXPECT_EQ(printable("a\nb\rc\td", 100), "a?b?c?d");
  EXPECT_EQ(printable("\x1b[31mred\x1b]0;title\x07", 100), "?[31mred?]0;title?");
  EXPECT_EQ(printable("del\x7f", 100), "del?");
  // C1 controls (U+009B is CSI in some terminals), line separators, bidi
  // overrides; and bytes that are not UTF-8.
  EXPECT_EQ(printable("\xc2\x9b" "2J", 100), "?2J");
  EXPECT_EQ(printable("a\xe2\x80\xa8" "b", 100), "a?b");
  EXPECT_EQ(printable("\xe2\x80\xae" "txt.exe", 100), "?txt.exe");
  EXPECT_EQ(printable("\xff\xfe", 100), "??");
  // Characters that show nothing: a byte order mark, a zero-width space and
  // joiner, a word joiner (found by fuzz_dotenv in a .env key name).
  EXPECT_EQ(printable("A\xef\xbb\xbf" "B\xe2\x80\x8b" "C\xe2\x80\x8d" "D\xe2\x81\xa0", 100),
            "A?B?C?D?");
  // Well-formed text beyond ASCII is kept: DingTalk's messages are Chinese.
  EXPECT_EQ(printable("不合法的access_token", 100), "不合法的access_token");
}

TEST(PrintableTest, BoundsTheLengthWithoutSplittingACharacter) {
  EXPECT_EQ(printable(std::string(1000, 'x'), 10), std::string(10, 'x') + "...");
  EXPECT_EQ(printable("abcdef", 6), "abcdef");
  // "不" is 3 bytes: 4 bytes fit one of them and a cut.
  EXPECT_EQ(printable("不不", 4), "不...");
  EXPECT_EQ(printable("anything", 0), "...");
  EXPECT_EQ(printable("", 0), "");
  EXPECT_EQ(printable(std::string(5000, 'y'), std::string_view::npos).size(), 5000u);
}

TEST(PercentEncodeTest, KeepsOnlyTheUnreservedCharacters) {
  using internal::percent_encode;
  EXPECT_EQ(percent_encode(""), "");
  EXPECT_EQ(percent_encode("AZaz09-._~"), "AZaz09-._~");
  // Every other printable ASCII character: gen-delims, sub-delims, the rest.
  EXPECT_EQ(percent_encode(":/?#[]@"), "%3A%2F%3F%23%5B%5D%40");
  EXPECT_EQ(percent_encode("!$&'()*+,;="), "%21%24%26%27%28%29%2A%2B%2C%3B%3D");
  EXPECT_EQ(percent_encode(" \"%<>\\^`{|}"), "%20%22%25%3C%3E%5C%5E%60%7B%7C%7D");
  // Controls, NUL and bytes beyond ASCII (UTF-8 text as its bytes), upper-case hex.
  EXPECT_EQ(percent_encode(std::string("\0\n\x7f", 3)), "%00%0A%7F");
  EXPECT_EQ(percent_encode("\xff\x80"), "%FF%80");
  EXPECT_EQ(percent_encode("不"), "%E4%B8%8D");
  // What the callers need: a secret with '&' and '=' stays one query value,
  // a password with ':' '@' '/' stays one user-info part.
  EXPECT_EQ(percent_encode("s3cr&t=1"), "s3cr%26t%3D1");
  EXPECT_EQ(percent_encode("p:w@d/x"), "p%3Aw%40d%2Fx");
}

TEST(PercentEncodeTest, EncodesEveryByteThatIsNotUnreserved) {
  for (int b = 0; b < 256; ++b) {
    const char c = static_cast<char>(b);
    const bool unreserved = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                            (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' || c == '~';
    const std::string encoded = internal::percent_encode(std::string(1, c));
    if (unreserved) {
      EXPECT_EQ(encoded, std::string(1, c)) << b;
    } else {
      ASSERT_EQ(encoded.size(), 3u) << b;
      EXPECT_EQ(encoded[0], '%') << b;
      EXPECT_EQ(std::stoi(encoded.substr(1), nullptr, 16), b) << b;
      EXPECT_EQ(encoded.find_first_not_of("0123456789ABCDEF", 1), std::string::npos) << b;
    }
  }
}

TEST(NetTest, UrlHost) {
  EXPECT_EQ(url_host("http://127.0.0.1:8080/x"), "127.0.0.1");
  EXPECT_EQ(url_host("https://user:pw@example.com"), "example.com");
  EXPECT_EQ(url_host("http://[::1]:9/p?q#f"), "::1");
  EXPECT_EQ(url_host("http://host"), "host");
  EXPECT_EQ(url_host("http://a@b@evil.example:1/"), "evil.example");
  EXPECT_EQ(url_host("no scheme"), std::nullopt);
  EXPECT_EQ(url_host("http://"), std::nullopt);
  EXPECT_EQ(url_host("http://[::1"), std::nullopt);
}

TEST(NetTest, LoopbackHosts) {
  for (const char* host : {"127.0.0.1", "127.255.0.9", "::1", "0:0:0:0:0:0:0:1", "localhost",
                           "LocalHost"}) {
    EXPECT_TRUE(is_loopback_host(host)) << host;
  }
  for (const char* host : {"0.0.0.0", "10.0.0.1", "128.0.0.1", "127.1", "127.0.0.1.nip.io",
                           "localhost.example.com", "::", "::2", "::ffff:8.8.8.8", "", "[::1]"}) {
    EXPECT_FALSE(is_loopback_host(host)) << host;
  }
}

}  // namespace
}  // namespace aicache
