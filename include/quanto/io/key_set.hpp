// quanto/io/key_set.hpp: the set that rejects a JSON key given twice in untrusted files
// (safetensors headers, shard indexes, quanto_qmap.json): keys packed in one buffer and a table of
// SipHash values under a per-process random key, so that crafted keys can make it neither large
// nor slow (a std::set of strings costs a node allocation per key: ~8x the header's bytes).
#pragma once

#include <algorithm>
#include <array>
#include <bit>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "quanto/core/config.hpp"
#include "quanto/core/error.hpp"

QUANTO_BEGIN_NAMESPACE
namespace io::detail {

/// SipHash-2-4 (Aumasson and Bernstein, 2012) of `s` under the 128-bit key (k0, k1): a keyed hash
/// that someone who does not know the key cannot make collide.
inline std::uint64_t siphash24(std::uint64_t k0, std::uint64_t k1, std::string_view s) noexcept {
  std::uint64_t v0 = k0 ^ 0x736f6d6570736575ull, v1 = k1 ^ 0x646f72616e646f6dull;
  std::uint64_t v2 = k0 ^ 0x6c7967656e657261ull, v3 = k1 ^ 0x7465646279746573ull;
  const auto sip_round = [&] {
    v0 += v1, v1 = std::rotl(v1, 13), v1 ^= v0, v0 = std::rotl(v0, 32);
    v2 += v3, v3 = std::rotl(v3, 16), v3 ^= v2;
    v0 += v3, v3 = std::rotl(v3, 21), v3 ^= v0;
    v2 += v1, v1 = std::rotl(v1, 17), v1 ^= v2, v2 = std::rotl(v2, 32);
  };
  const auto compress = [&](std::uint64_t m) {
    v3 ^= m;
    sip_round();
    sip_round();
    v0 ^= m;
  };
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const std::size_t n = s.size();
  std::size_t i = 0;
  for (; n - i >= 8; i += 8) {
    std::uint64_t m = 0;
    for (std::size_t b = 8; b-- > 0;) m = (m << 8) | p[i + b];  // little-endian words
    compress(m);
  }
  std::uint64_t last = static_cast<std::uint64_t>(n) << 56;
  for (std::size_t b = 0; i + b < n; ++b) last |= static_cast<std::uint64_t>(p[i + b]) << (8 * b);
  compress(last);
  v2 ^= 0xff;
  for (int r = 0; r < 4; ++r) sip_round();
  return v0 ^ v1 ^ v2 ^ v3;
}

/// The process's random key for `json_key_set`.
inline const std::uint64_t* json_key_seed() {
  static const auto seed = [] {
    std::array<std::uint64_t, 2> k{};
    try {
      std::random_device rd;
      for (auto& w : k) w = (static_cast<std::uint64_t>(rd()) << 32) ^ rd();
    } catch (...) {  // no entropy source: the clock and the address space layout
    }
    k[0] ^= static_cast<std::uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
    k[1] ^= static_cast<std::uint64_t>(reinterpret_cast<std::uintptr_t>(&k));
    return k;
  }();
  return seed.data();
}

/// The keys of one JSON object of an untrusted file, to reject a key given twice. The keys sit in
/// one buffer (a 4-byte length, then the bytes), so a key costs its bytes plus 15 to 27 bytes, not
/// a node allocation per key. Up to `linear_limit` keys are compared one by one; more go in an
/// open-addressing table hashed with SipHash under a per-process random key, so that crafted keys
/// can make the set neither large nor slow. A slot holds 32 bits of the hash next to the key's
/// offset: a probe reads the buffer only when the hashes agree, and growing rehashes nothing.
/// `clear` keeps the buffer for the next object.
class json_key_set {
 public:
  /// Adds `key`; false if it is already in the set.
  bool insert(std::string_view key) {
    if (slots_.empty()) {
      for (std::size_t at = 0; at < arena_.size(); at += 4 + length_at(at))
        if (key_at(at) == key) return false;
      if (count_ < linear_limit) {
        append(key);
        return true;
      }
      grow();
    } else if ((count_ + 1) * 10 > slots_.size() * 7) {
      grow();
    }
    const auto h = static_cast<std::uint32_t>(siphash24(json_key_seed()[0], json_key_seed()[1], key));
    const std::size_t mask = slots_.size() - 1;
    for (std::size_t i = h & mask;; i = (i + 1) & mask) {
      const std::uint64_t s = slots_[i];
      if (s == 0) {
        slots_[i] = (static_cast<std::uint64_t>(h) << 32) | (std::uint64_t{append(key)} + 1);
        return true;
      }
      if (static_cast<std::uint32_t>(s >> 32) == h && key_at(static_cast<std::uint32_t>(s) - 1u) == key) return false;
    }
  }
  [[nodiscard]] std::size_t size() const noexcept { return count_; }
  void clear() noexcept {
    arena_.clear();
    count_ = 0;
    if (!slots_.empty()) std::vector<std::uint64_t>().swap(slots_);
  }

 private:
  static constexpr std::size_t linear_limit = 8;

  [[nodiscard]] std::uint32_t length_at(std::size_t at) const noexcept {
    std::uint32_t n;
    std::memcpy(&n, arena_.data() + at, 4);
    return n;
  }
  [[nodiscard]] std::string_view key_at(std::size_t at) const noexcept {
    return {arena_.data() + at + 4, length_at(at)};
  }
  std::uint32_t append(std::string_view key) {
    // Offsets are 32-bit: the files read (headers, indexes, maps of at most 100 MB) never come close.
    if (arena_.size() + 4 + key.size() >= 0xFFFFFFFFu) throw format_error("more than 4 GiB of keys in one JSON object");
    const auto at = static_cast<std::uint32_t>(arena_.size());
    const auto n = static_cast<std::uint32_t>(key.size());
    arena_.append(reinterpret_cast<const char*>(&n), 4);
    arena_.append(key);
    ++count_;
    return at;
  }
  /// A table twice as large (at least 32 slots). The first one is filled from the buffer.
  void grow() {
    std::vector<std::uint64_t> slots(std::max<std::size_t>(32, slots_.size() * 2), 0);
    const std::size_t mask = slots.size() - 1;
    const auto place = [&](std::uint64_t s) {
      std::size_t i = static_cast<std::uint32_t>(s >> 32) & mask;
      while (slots[i] != 0) i = (i + 1) & mask;
      slots[i] = s;
    };
    if (slots_.empty()) {
      for (std::size_t at = 0; at < arena_.size(); at += 4 + length_at(at)) {
        const auto h = static_cast<std::uint32_t>(siphash24(json_key_seed()[0], json_key_seed()[1], key_at(at)));
        place((static_cast<std::uint64_t>(h) << 32) | (at + 1));
      }
    } else {
      for (const std::uint64_t s : slots_)
        if (s != 0) place(s);
    }
    slots_.swap(slots);
  }

  std::string arena_;
  std::vector<std::uint64_t> slots_;  // 0: empty; else (32 bits of the hash << 32) | (1 + offset in arena_)
  std::size_t count_ = 0;
};

}  // namespace io::detail
QUANTO_END_NAMESPACE
