// quanto/core/dtype.hpp: run-time element types, named as safetensors names them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

#include "quanto/core/config.hpp"

QUANTO_BEGIN_NAMESPACE

/// The element types a tensor in a file or a buffer can have. The names (`to_string`) are the
/// safetensors dtype strings; `f8_e4m3fnuz` has no standard safetensors name yet (see
/// `safetensors_name`).
enum class dtype : std::uint8_t {
  boolean,
  u8,
  i8,
  u16,
  i16,
  u32,
  i32,
  u64,
  i64,
  f16,
  bf16,
  f32,
  f64,
  f8_e4m3fn,
  f8_e5m2,
  f8_e4m3fnuz,
};

/// Size of one element in bytes.
constexpr std::size_t size_of(dtype t) noexcept {
  switch (t) {
    case dtype::boolean:
    case dtype::u8:
    case dtype::i8:
    case dtype::f8_e4m3fn:
    case dtype::f8_e5m2:
    case dtype::f8_e4m3fnuz:
      return 1;
    case dtype::u16:
    case dtype::i16:
    case dtype::f16:
    case dtype::bf16:
      return 2;
    case dtype::u32:
    case dtype::i32:
    case dtype::f32:
      return 4;
    case dtype::u64:
    case dtype::i64:
    case dtype::f64:
      return 8;
  }
  return 0;
}

/// The safetensors dtype string ("F32", "BF16", "F8_E4M3", ...). e4m3fnuz is written as
/// "F8_E4M3FNUZ", the name the reference added in 2026.
constexpr std::string_view to_string(dtype t) noexcept {
  switch (t) {
    case dtype::boolean:
      return "BOOL";
    case dtype::u8:
      return "U8";
    case dtype::i8:
      return "I8";
    case dtype::u16:
      return "U16";
    case dtype::i16:
      return "I16";
    case dtype::u32:
      return "U32";
    case dtype::i32:
      return "I32";
    case dtype::u64:
      return "U64";
    case dtype::i64:
      return "I64";
    case dtype::f16:
      return "F16";
    case dtype::bf16:
      return "BF16";
    case dtype::f32:
      return "F32";
    case dtype::f64:
      return "F64";
    case dtype::f8_e4m3fn:
      return "F8_E4M3";
    case dtype::f8_e5m2:
      return "F8_E5M2";
    case dtype::f8_e4m3fnuz:
      return "F8_E4M3FNUZ";
  }
  return "?";
}

/// Parses a safetensors dtype string (case-sensitive, as the reference is). Unknown: nullopt.
constexpr std::optional<dtype> dtype_from_string(std::string_view s) noexcept {
  constexpr dtype all[] = {dtype::boolean, dtype::u8,        dtype::i8,      dtype::u16,        dtype::i16,  dtype::u32,
                           dtype::i32,     dtype::u64,       dtype::i64,     dtype::f16,        dtype::bf16, dtype::f32,
                           dtype::f64,     dtype::f8_e4m3fn, dtype::f8_e5m2, dtype::f8_e4m3fnuz};
  for (dtype t : all)
    if (to_string(t) == s) return t;
  return std::nullopt;
}

QUANTO_END_NAMESPACE
