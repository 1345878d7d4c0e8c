// quanto/core/log.hpp: the library's one logging hook. quanto writes warnings (an activation
// scale still at its uncalibrated default, a fallback path) through a user-replaceable sink;
// the default sink writes one line to stderr.
#pragma once

#include <cstdio>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>

#include "quanto/core/config.hpp"

QUANTO_BEGIN_NAMESPACE

enum class log_level : unsigned char { info, warning };

/// Receives every message quanto logs. Called from the thread that logs, under a lock.
using log_sink = std::function<void(log_level, std::string_view)>;

namespace detail {
struct log_state {
  std::mutex mutex;
  log_sink sink;
};
inline log_state& log_globals() {
  static log_state s;
  return s;
}
inline void default_sink(log_level level, std::string_view message) {
  std::fprintf(stderr, "quanto: %s: %.*s\n", level == log_level::warning ? "warning" : "info",
               static_cast<int>(message.size()), message.data());
}
}  // namespace detail

/// Replaces the sink and returns the previous one; an empty function restores the default.
inline log_sink set_log_sink(log_sink sink) {
  auto& g = detail::log_globals();
  std::lock_guard lock(g.mutex);
  return std::exchange(g.sink, std::move(sink));
}

/// Sends `message` to the sink.
inline void log(log_level level, std::string_view message) {
  auto& g = detail::log_globals();
  std::lock_guard lock(g.mutex);
  if (g.sink)
    g.sink(level, message);
  else
    detail::default_sink(level, message);
}

/// Installs a sink for the lifetime of a scope (tests, tools that collect warnings).
class scoped_log_sink {
 public:
  explicit scoped_log_sink(log_sink sink) : previous_(set_log_sink(std::move(sink))) {}
  ~scoped_log_sink() { set_log_sink(std::move(previous_)); }
  scoped_log_sink(const scoped_log_sink&) = delete;
  scoped_log_sink& operator=(const scoped_log_sink&) = delete;

 private:
  log_sink previous_;
};

QUANTO_END_NAMESPACE
