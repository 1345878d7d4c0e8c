// examples/01_mlp_workflow/digits.hpp: reads examples/data/digits.csv (scikit-learn's 8x8
// handwritten digits: a label then 64 pixels in 0..16 per line) and splits it into a training and
// a test set, deterministically.
#pragma once

#include <algorithm>
#include <cstdint>
#include <fstream>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <quanto/core/tensor.hpp>

namespace digits {

struct split {
  quanto::tensor<float> x;      ///< [n, 64], pixels / 16
  std::vector<std::int64_t> y;  ///< labels 0..9
  std::int64_t size() const { return static_cast<std::int64_t>(y.size()); }
};

struct dataset {
  split train, test;
};

/// Loads the CSV; the same `seed` gives the same split (`test_fraction` of the rows, shuffled).
inline dataset load(const std::string& path, double test_fraction = 0.2, std::uint64_t seed = 0) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot open " + path + " (made by tools/export_digits.py)");
  std::string line;
  std::getline(in, line);  // header
  std::vector<std::vector<float>> rows;
  std::vector<std::int64_t> labels;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    std::stringstream ss(line);
    std::string cell;
    std::vector<float> px;
    std::getline(ss, cell, ',');
    const long label = std::stol(cell);
    while (std::getline(ss, cell, ',')) px.push_back(std::stof(cell) / 16.0f);
    if (px.size() != 64 || label < 0 || label > 9)
      throw std::runtime_error(path + ": line " + std::to_string(rows.size() + 2) + " is not a label and 64 pixels");
    rows.push_back(std::move(px));
    labels.push_back(label);
  }
  std::vector<std::size_t> order(rows.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::mt19937_64 rng(seed);
  std::shuffle(order.begin(), order.end(), rng);
  const auto n_test = static_cast<std::size_t>(static_cast<double>(rows.size()) * test_fraction);
  const auto fill = [&](split& s, std::size_t from, std::size_t to) {
    s.x = quanto::tensor<float>(quanto::shape{static_cast<std::int64_t>(to - from), 64});
    for (std::size_t i = from; i < to; ++i) {
      std::copy(rows[order[i]].begin(), rows[order[i]].end(), s.x.data() + (i - from) * 64);
      s.y.push_back(labels[order[i]]);
    }
  };
  dataset d;
  fill(d.test, 0, n_test);
  fill(d.train, n_test, rows.size());
  return d;
}

/// Rows [from, to) of a split.
inline quanto::tensor<float> rows(const split& s, std::int64_t from, std::int64_t to) {
  quanto::tensor<float> out(quanto::shape{to - from, 64});
  std::copy(s.x.data() + from * 64, s.x.data() + to * 64, out.data());
  return out;
}

}  // namespace digits
