#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <map>
#include <string>
#include <string_view>

#include "aicache/config.h"

namespace aicache {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using Env = std::map<std::string, std::string, std::less<>>;

struct GoodCase {
  std::string_view name;
  std::string_view text;
  Env expected;
};

class DotenvGood : public ::testing::TestWithParam<GoodCase> {};

TEST_P(DotenvGood, Parses) {
  auto parsed = parse_dotenv(GetParam().text, ".env");
  ASSERT_TRUE(parsed) << parsed.error().to_string();
  EXPECT_EQ(*parsed, GetParam().expected);
}

INSTANTIATE_TEST_SUITE_P(
    Syntax, DotenvGood,
    ::testing::Values(
        GoodCase{"Empty", "", {}}, GoodCase{"Simple", "A=1\nB=two\n", {{"A", "1"}, {"B", "two"}}},
        GoodCase{"NoFinalNewline", "A=1", {{"A", "1"}}},
        GoodCase{"BlankAndCommentLines", "\n# comment\n   \n  # indented\nA=1\n", {{"A", "1"}}},
        GoodCase{"ExportPrefix", "export A=1\nexport\tB=2\n", {{"A", "1"}, {"B", "2"}}},
        GoodCase{"KeyNamedExport", "export=1\n", {{"export", "1"}}},
        GoodCase{
            "WhitespaceTrimmed", "  A  =  value with  spaces  \n", {{"A", "value with  spaces"}}},
        GoodCase{"TrailingComment", "A=value # comment\nB=v\t#c\n", {{"A", "value"}, {"B", "v"}}},
        GoodCase{"HashInsideValue", "A=a#b\nB=#c\n", {{"A", "a#b"}, {"B", "#c"}}},
        GoodCase{"EmptyValue", "A=\nB=  \n", {{"A", ""}, {"B", ""}}},
        GoodCase{"EqualsInValue", "A=x=y==\n", {{"A", "x=y=="}}},
        GoodCase{"SingleQuotedLiteral", R"(A='a \n "b" # c  ')", {{"A", R"(a \n "b" # c  )"}}},
        GoodCase{"DoubleQuotedEscapes",
                 R"(A="l1\nl2\tt\rr\"q\\b\$d\x")",
                 {{"A", "l1\nl2\tt\rr\"q\\b$d\\x"}}},
        GoodCase{"QuotedThenComment", "A='x' # c\nB=\"y\"   \n", {{"A", "x"}, {"B", "y"}}},
        GoodCase{"QuotedKeepsSpaces", "A=\"  padded  \"\n", {{"A", "  padded  "}}},
        GoodCase{"PasswordWithSpecials",
                 "REDIS_PASSWORD='p@ss:w/rd%'\n",
                 {{"REDIS_PASSWORD", "p@ss:w/rd%"}}},
        GoodCase{"CrlfLineEndings", "A=1\r\nB='2'\r\n# c\r\n", {{"A", "1"}, {"B", "2"}}},
        GoodCase{"ByteOrderMark",
                 "\xEF\xBB\xBF"
                 "A=1\n",
                 {{"A", "1"}}},
        GoodCase{"LaterWins", "A=1\nA=2\n", {{"A", "2"}}},
        GoodCase{"UnderscoreAndDigits", "_A1_b2=x\n", {{"_A1_b2", "x"}}}),
    [](const auto& param_info) { return std::string(param_info.param.name); });

struct BadCase {
  std::string_view name;
  std::string_view text;
  std::string_view location;  // "FILE:LINE"
  std::string_view what;
};

class DotenvBad : public ::testing::TestWithParam<BadCase> {};

TEST_P(DotenvBad, NamesFileAndLine) {
  auto parsed = parse_dotenv(GetParam().text, "conf/.env");
  ASSERT_FALSE(parsed);
  EXPECT_EQ(parsed.error().code, ErrorCode::kConfig);
  EXPECT_THAT(parsed.error().message,
              ::testing::StartsWith(std::string(GetParam().location) + ": "));
  EXPECT_THAT(parsed.error().message, HasSubstr(GetParam().what));
}

INSTANTIATE_TEST_SUITE_P(
    Malformed, DotenvBad,
    ::testing::Values(
        BadCase{"NoEquals", "A=1\nJUSTTEXT\n", "conf/.env:2", "expected KEY=VALUE"},
        BadCase{"EmptyKey", "=1\n", "conf/.env:1", "missing key"},
        BadCase{"KeyStartsWithDigit", "# c\n\n1A=1\n", "conf/.env:3", "invalid key '1A'"},
        BadCase{"KeyWithDash", "MY-KEY=1\n", "conf/.env:1", "invalid key 'MY-KEY'"},
        BadCase{"KeyWithSpace", "MY KEY=1\n", "conf/.env:1", "invalid key"},
        BadCase{"UnterminatedSingle", "A=1\nB='abc\n", "conf/.env:2", "unterminated single"},
        BadCase{"UnterminatedDouble", "A=\"abc\\\"\n", "conf/.env:1", "unterminated double"},
        BadCase{"TextAfterSingleQuote", "A='x'y\n", "conf/.env:1", "after the closing quote"},
        BadCase{"TextAfterDoubleQuote", "A=\"x\" y\n", "conf/.env:1", "after the closing quote"},
        BadCase{"CrlfCountsLines", "A=1\r\nB=2\r\nbad\r\n", "conf/.env:3", "expected KEY=VALUE"},
        BadCase{"BomDoesNotShiftLines",
                "\xEF\xBB\xBF"
                "bad\n",
                "conf/.env:1", "KEY=VALUE"}),
    [](const auto& param_info) { return std::string(param_info.param.name); });

TEST(Dotenv, MalformedLineNeverEchoesItsText) {
  // A line without '=' may be a bare secret pasted by mistake.
  auto parsed = parse_dotenv("A=1\nhunter2-secret\n", ".env");
  ASSERT_FALSE(parsed);
  EXPECT_THAT(parsed.error().message, Not(HasSubstr("hunter2")));
}

TEST(Dotenv, UnterminatedQuoteNeverEchoesTheValue) {
  auto parsed = parse_dotenv("REDIS_PASSWORD=\"hunter2\n", ".env");
  ASSERT_FALSE(parsed);
  EXPECT_THAT(parsed.error().message, HasSubstr("REDIS_PASSWORD"));
  EXPECT_THAT(parsed.error().message, Not(HasSubstr("hunter2")));
}

}  // namespace
}  // namespace aicache
