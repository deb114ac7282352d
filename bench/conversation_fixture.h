// The conversation the performance targets are stated for: 20 messages,
// about 8.5 KB of JSON, mixed Chinese and ASCII text, as an assistant stores.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

namespace aicache::bench {

inline nlohmann::json make_conversation() {
  nlohmann::json messages = nlohmann::json::array();
  for (int i = 0; i < 20; ++i) {
    std::string content;
    while (content.size() < 330) {
      content += (i % 2 == 0) ? "请帮我查询一下订单 #20261125 的物流状态，谢谢。 "
                              : "Your order ships tomorrow; tracking number SF1234567890. ";
    }
    messages.push_back({{"role", i % 2 == 0 ? "user" : "assistant"},
                        {"content", content},
                        {"timestamp", 1764000000 + i * 37},
                        {"message_id", "msg_" + std::to_string(100000 + i)}});
  }
  return {{"conversation_id", "conv_20261125_0001"},
          {"channel", "wechat"},
          {"user_id", 1001},
          {"messages", messages},
          {"metadata", {{"model", "gpt-4"}, {"temperature", 0.7}, {"tokens_used", 4821}}}};
}

}  // namespace aicache::bench
