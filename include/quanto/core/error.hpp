// quanto/core/error.hpp: the typed errors every layer throws. One type per class of fault.
#pragma once

#include <stdexcept>
#include <string>

#include "quanto/core/config.hpp"

QUANTO_BEGIN_NAMESPACE

/// Base of every error quanto throws; catch this to catch them all.
class error : public std::runtime_error {
 public:
  explicit error(const std::string& what) : std::runtime_error("quanto: " + what) {}
};

/// Shapes, ranks, axes or sizes that do not fit together (a scale of the wrong shape, an axis out
/// of range, a group size that does not divide the axis, a buffer of the wrong length).
class shape_error : public error {
 public:
  using error::error;
};

/// A value the operation cannot accept: NaN or Inf in a weight, a negative or non-finite scale.
class value_error : public error {
 public:
  using error::error;
};

/// A combination the library does not support (an affine scheme with qint8, Absmax with qint4,
/// an unknown qtype or dtype name).
class unsupported_error : public error {
 public:
  using error::error;
};

/// An operation called in a state that does not allow it: `backward()` with no training forward
/// before it, training a frozen weight, loading a state dict into a module of another kind.
class state_error : public error {
 public:
  using error::error;
};

/// A malformed or unreadable file (the I/O layer refines this further).
class format_error : public error {
 public:
  using error::error;
};

QUANTO_END_NAMESPACE
