// Uses the installed quanto::io target: write and read back a safetensors file.
#include <quanto/io/safetensors.hpp>

#include <cstdio>
#include <cstring>
#include <vector>

int main(int argc, char** argv) {
  if (argc < 2) return 2;
  const std::vector<float> v{1.0f, -2.0f, 3.5f};
  const quanto::io::tensor_to_write t{"x", quanto::dtype::f32, {3}, std::as_bytes(std::span(v))};
  quanto::io::save_safetensors(argv[1], std::span(&t, 1));
  const auto f = quanto::io::safetensors_file::open(argv[1]);
  const auto back = f.read_as<float>("x", quanto::dtype::f32);
  std::printf("consumer_io: read %zu values\n", back.size());
  return back == v ? 0 : 1;
}
