// src/cuda/context.cu: errors, the context, device memory, scratch, argument checks and the split-k
// reduction shared by the fused kernels.
#include "common.cuh"

#include <limits>
#include <utility>

QUANTO_BEGIN_NAMESPACE
namespace cuda {
namespace detail {

void throw_cuda(cudaError_t e, const char* what) {
  throw cuda_error(std::string(what) + ": " + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ")",
                   static_cast<int>(e));
}

void throw_cublas(cublasStatus_t s, const char* what) {
  throw cuda_error(std::string(what) + ": cuBLAS status " + std::to_string(static_cast<int>(s)), static_cast<int>(s));
}

scratch::scratch(workspace ws, std::size_t need, cudaStream_t stream, const char* who) : stream_(stream) {
  if (need == 0) return;
  if (ws.ptr) {
    if (ws.bytes < need)
      throw shape_error(std::string(who) + ": the workspace has " + std::to_string(ws.bytes) + " bytes, " +
                        std::to_string(need) + " are needed");
    if (!aligned16(ws.ptr)) throw unsupported_error(std::string(who) + ": the workspace is not 16-byte aligned");
    ptr_ = static_cast<unsigned char*>(ws.ptr);
    return;
  }
  void* p = nullptr;
  check(cudaMallocAsync(&p, need, stream), "cudaMallocAsync (workspace)");
  ptr_ = static_cast<unsigned char*>(p);
  owned_ = true;
}

scratch::~scratch() {
  if (owned_) (void)cudaFreeAsync(ptr_, stream_);
}

void check_matmul_args(const char* who, std::int64_t m, std::int64_t n, std::int64_t k, const void* x, std::int64_t ldx,
                       const void* y, std::int64_t ldy, bool need_alignment) {
  const std::string w(who);
  if (m < 0) throw shape_error(w + ": negative m = " + std::to_string(m));
  if (m > std::numeric_limits<int>::max()) throw shape_error(w + ": m = " + std::to_string(m) + " is too large");
  if (n <= 0 || k <= 0) throw shape_error(w + ": empty weight [" + std::to_string(n) + ", " + std::to_string(k) + "]");
  if (ldx < k) throw shape_error(w + ": ldx = " + std::to_string(ldx) + " is smaller than k = " + std::to_string(k));
  if (ldy < n) throw shape_error(w + ": ldy = " + std::to_string(ldy) + " is smaller than n = " + std::to_string(n));
  if (m > 0 && (x == nullptr || y == nullptr)) throw shape_error(w + ": null x or y");
  if (need_alignment && (!aligned16(x) || !aligned16(y) || ldx % 8 != 0 || ldy % 8 != 0))
    throw unsupported_error(w +
                            ": x and y must be 16-byte aligned with leading dimensions that are multiples of 8 "
                            "elements; use dequantize_matmul_fallback");
}

// ---- the split-k reduction ----------------------------------------------------------------------------

template <class T>
__global__ void splitk_reduce_kernel(const float* __restrict__ partial, int splits, int m, int n,
                                     const T* __restrict__ bias, T* __restrict__ y, std::int64_t ldy) {
  using E = dev::elem<T>;
  const std::int64_t pairs = static_cast<std::int64_t>(m) * (n / 2);
  const std::int64_t plane = static_cast<std::int64_t>(m) * n;
  for (std::int64_t p = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; p < pairs;
       p += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t row = p / (n / 2), col = 2 * (p % (n / 2));
    float2 acc = make_float2(0.0f, 0.0f);
    for (int s = 0; s < splits; ++s) {  // a fixed order: the same bits for any timing
      const float2 v = *reinterpret_cast<const float2*>(partial + s * plane + row * n + col);
      acc.x += v.x;
      acc.y += v.y;
    }
    if (bias) {
      acc.x += E::to_float(bias[col]);
      acc.y += E::to_float(bias[col + 1]);
    }
    *reinterpret_cast<std::uint32_t*>(y + row * ldy + col) = E::pack2(acc.x, acc.y);
  }
}

void launch_splitk_reduce(dtype type, const float* partial, int splits, std::int64_t m, std::int64_t n,
                          const void* bias, void* y, std::int64_t ldy, cudaStream_t stream) {
  const std::int64_t pairs = m * (n / 2);
  const int threads = 256;
  const auto blocks = static_cast<unsigned>(std::min<std::int64_t>((pairs + threads - 1) / threads, 65535));
  if (type == dtype::float16)
    splitk_reduce_kernel<__half><<<blocks, threads, 0, stream>>>(partial, splits, static_cast<int>(m),
                                                                 static_cast<int>(n), static_cast<const __half*>(bias),
                                                                 static_cast<__half*>(y), ldy);
  else
    splitk_reduce_kernel<__nv_bfloat16>
        <<<blocks, threads, 0, stream>>>(partial, splits, static_cast<int>(m), static_cast<int>(n),
                                         static_cast<const __nv_bfloat16*>(bias), static_cast<__nv_bfloat16*>(y), ldy);
  check_launch("split-k reduction");
}

}  // namespace detail

// ---- the context --------------------------------------------------------------------------------------

int context::impl::blocks_per_sm(const void* kernel, int threads, std::size_t smem) {
  const std::lock_guard<std::mutex> lock(mu);
  const auto key = std::make_pair(kernel, smem);
  if (const auto it = occupancy.find(key); it != occupancy.end()) return it->second;
  detail::check(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)),
                "cudaFuncSetAttribute (shared memory)");
  int blocks = 0;
  detail::check(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&blocks, kernel, threads, smem),
                "cudaOccupancyMaxActiveBlocksPerMultiprocessor");
  if (blocks < 1)
    throw unsupported_error("a quanto::cuda kernel does not fit on this GPU (" + std::to_string(smem) +
                            " bytes of shared memory, " + std::to_string(threads) + " threads)");
  occupancy.emplace(key, blocks);
  return blocks;
}

context::context(int device) : p_(std::make_unique<impl>()) {
  if (device < 0) detail::check(cudaGetDevice(&device), "cudaGetDevice");
  const detail::device_guard guard(device);
  cudaDeviceProp prop{};
  detail::check(cudaGetDeviceProperties(&prop, device), "cudaGetDeviceProperties");
  p_->device = device;
  p_->sm_count = prop.multiProcessorCount;
  p_->cc = prop.major * 10 + prop.minor;
  p_->l2 = static_cast<std::size_t>(prop.l2CacheSize);
  p_->smem_optin = prop.sharedMemPerBlockOptin;
  p_->name = prop.name;
  if (p_->cc < 80)
    throw unsupported_error("quanto::cuda needs compute capability 8.0 or newer; " + p_->name + " has " +
                            std::to_string(prop.major) + "." + std::to_string(prop.minor));
  detail::check(cublasLtCreate(&p_->lt), "cublasLtCreate");
}

context::~context() {
  if (p_ && p_->lt) (void)cublasLtDestroy(p_->lt);
}
context::context(context&&) noexcept = default;
context& context::operator=(context&& o) noexcept {
  if (this != &o) {
    if (p_ && p_->lt) (void)cublasLtDestroy(p_->lt);
    p_ = std::move(o.p_);
  }
  return *this;
}

int context::device() const noexcept { return p_->device; }
int context::sm_count() const noexcept { return p_->sm_count; }
int context::compute_capability() const noexcept { return p_->cc; }
std::size_t context::l2_bytes() const noexcept { return p_->l2; }
std::string context::name() const { return p_->name; }

int device_count() noexcept {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    (void)cudaGetLastError();  // clear the sticky "no device" / "no driver" error
    return 0;
  }
  return n;
}

void synchronize(stream_t stream) {
  detail::check(cudaStreamSynchronize(detail::as_stream(stream)), "cudaStreamSynchronize");
}

// ---- device memory ------------------------------------------------------------------------------------

device_buffer::device_buffer(std::size_t bytes) : bytes_(bytes) {
  if (bytes) detail::check(cudaMalloc(&ptr_, bytes), "cudaMalloc");
}
device_buffer::~device_buffer() {
  if (ptr_) (void)cudaFree(ptr_);
}
device_buffer& device_buffer::operator=(device_buffer&& o) noexcept {
  if (this != &o) {
    if (ptr_) (void)cudaFree(ptr_);
    ptr_ = std::exchange(o.ptr_, nullptr);
    bytes_ = std::exchange(o.bytes_, 0);
  }
  return *this;
}
void device_buffer::upload(const void* host, std::size_t bytes, stream_t stream) {
  if (bytes > bytes_)
    throw shape_error("device_buffer::upload: " + std::to_string(bytes) + " bytes into " + std::to_string(bytes_));
  if (bytes)
    detail::check(cudaMemcpyAsync(ptr_, host, bytes, cudaMemcpyHostToDevice, detail::as_stream(stream)),
                  "cudaMemcpyAsync");
}
void device_buffer::download(void* host, std::size_t bytes, stream_t stream) const {
  if (bytes > bytes_)
    throw shape_error("device_buffer::download: " + std::to_string(bytes) + " bytes from " + std::to_string(bytes_));
  if (bytes) {
    detail::check(cudaMemcpyAsync(host, ptr_, bytes, cudaMemcpyDeviceToHost, detail::as_stream(stream)),
                  "cudaMemcpyAsync");
    detail::check(cudaStreamSynchronize(detail::as_stream(stream)), "cudaStreamSynchronize");
  }
}
void device_buffer::fill(unsigned char value, stream_t stream) {
  if (bytes_) detail::check(cudaMemsetAsync(ptr_, value, bytes_, detail::as_stream(stream)), "cudaMemsetAsync");
}

}  // namespace cuda
QUANTO_END_NAMESPACE
