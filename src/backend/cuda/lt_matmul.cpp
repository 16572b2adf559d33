#include "backend/cuda/lt_matmul.h"

#include <algorithm>

#include "backend/cuda/cuda_check.h"

namespace sd::cuda {

namespace {

constexpr size_t kWorkspaceBytes = size_t(32) << 20;  // NVIDIA's advice for Hopper

cudaDataType_t cuda_type(DType t) {
  switch (t) {
    case DType::F32:
      return CUDA_R_32F;
    case DType::BF16:
      return CUDA_R_16BF;
    case DType::F16:
      return CUDA_R_16F;
  }
  return CUDA_R_32F;
}

// Largest power of two (<= 256) dividing the address.
int alignment_of(const void* p) {
  if (!p) return 256;
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  int align = 1;
  while (align < 256 && (a & uintptr_t(align * 2 - 1)) == 0) align *= 2;
  return align;
}

cublasLtEpilogue_t epilogue_for(Act act, bool bias) {
  switch (act) {
    case Act::ReLU:
      return bias ? CUBLASLT_EPILOGUE_RELU_BIAS : CUBLASLT_EPILOGUE_RELU;
    case Act::GELUTanh:
      return bias ? CUBLASLT_EPILOGUE_GELU_BIAS : CUBLASLT_EPILOGUE_GELU;
    default:
      return bias ? CUBLASLT_EPILOGUE_BIAS : CUBLASLT_EPILOGUE_DEFAULT;
  }
}

}  // namespace

struct LtMatmul::Plan {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
  cublasLtMatmulAlgo_t algo{};
  bool found = false;

  ~Plan() {
    if (c) cublasLtMatrixLayoutDestroy(c);
    if (b) cublasLtMatrixLayoutDestroy(b);
    if (a) cublasLtMatrixLayoutDestroy(a);
    if (desc) cublasLtMatmulDescDestroy(desc);
  }
};

LtMatmul::LtMatmul(cudaStream_t stream) : stream_(stream) {
  SD_CUBLAS_CHECK(cublasLtCreate(&handle_));
  SD_CUDA_CHECK(cudaMalloc(&workspace_, kWorkspaceBytes));
  workspace_bytes_ = kWorkspaceBytes;
}

LtMatmul::~LtMatmul() {
  plans_.clear();
  if (blas_) cublasDestroy(blas_);
  if (workspace_) cudaFree(workspace_);
  if (handle_) cublasLtDestroy(handle_);
}

// cuBLASLt is column-major. Row-major y[m, n] is column-major yᵀ (n × m, ld n), so we compute
// yᵀ = op(W) · xᵀ with W = w viewed column-major as k × n (ld k) and transposed, and xᵀ = x
// viewed column-major as k × m (ld k). The bias vector runs along yᵀ's rows: the n features.
LtMatmul::Plan* LtMatmul::plan_for(const MatmulArgs& args) {
  const bool bias = args.bias != nullptr, residual = args.residual != nullptr;
  const int align = std::min({alignment_of(args.x), alignment_of(args.w), alignment_of(args.y),
                              alignment_of(args.bias), alignment_of(args.residual)});
  const Key key{args.m, args.n, args.k, int(args.dtype), int(args.act), bias, residual, align};
  auto it = plans_.find(key);
  if (it != plans_.end()) return it->second.get();

  auto plan = std::make_unique<Plan>();
  const cudaDataType_t type = cuda_type(args.dtype);
  // f32 stays f32 (no TF32); bf16 inputs accumulate in f32.
  SD_CUBLAS_CHECK(cublasLtMatmulDescCreate(&plan->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  const cublasOperation_t trans = CUBLAS_OP_T, no_trans = CUBLAS_OP_N;
  SD_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_TRANSA, &trans,
                                                 sizeof trans));
  SD_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_TRANSB, &no_trans,
                                                 sizeof no_trans));
  const cublasLtEpilogue_t epi = epilogue_for(args.act, bias);
  SD_CUBLAS_CHECK(
      cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi));
  if (bias) {
    const int32_t bias_type = type;
    SD_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE,
                                                   &bias_type, sizeof bias_type));
    SD_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER,
                                                   &args.bias, sizeof args.bias));
  }
  SD_CUBLAS_CHECK(
      cublasLtMatrixLayoutCreate(&plan->a, type, uint64_t(args.k), uint64_t(args.n), args.k));
  SD_CUBLAS_CHECK(
      cublasLtMatrixLayoutCreate(&plan->b, type, uint64_t(args.k), uint64_t(args.m), args.k));
  SD_CUBLAS_CHECK(
      cublasLtMatrixLayoutCreate(&plan->c, type, uint64_t(args.n), uint64_t(args.m), args.n));

  cublasLtMatmulPreference_t pref = nullptr;
  SD_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
  const uint64_t ws = workspace_bytes_;
  const uint32_t align_bytes = uint32_t(align);
  cublasStatus_t st = cublasLtMatmulPreferenceSetAttribute(
      pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws);
  for (auto attr :
       {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
        CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES}) {
    if (st == CUBLAS_STATUS_SUCCESS)
      st = cublasLtMatmulPreferenceSetAttribute(pref, attr, &align_bytes, sizeof align_bytes);
  }
  cublasLtMatmulHeuristicResult_t result{};
  int found = 0;
  if (st == CUBLAS_STATUS_SUCCESS) {
    st = cublasLtMatmulAlgoGetHeuristic(handle_, plan->desc, plan->a, plan->b, plan->c, plan->c,
                                        pref, 1, &result, &found);
  }
  cublasLtMatmulPreferenceDestroy(pref);
  // NOT_SUPPORTED means "no algorithm for this problem"; anything else is a real error.
  if (st != CUBLAS_STATUS_NOT_SUPPORTED) SD_CUBLAS_CHECK(st);
  plan->found = st == CUBLAS_STATUS_SUCCESS && found > 0 && result.state == CUBLAS_STATUS_SUCCESS;
  if (plan->found) plan->algo = result.algo;
  Plan* p = plan.get();
  plans_.emplace(key, std::move(plan));
  return p;
}

bool LtMatmul::run(const MatmulArgs& args) {
  SD_CHECK(fusable(args.act, args.dtype), "LtMatmul: activation ", act_name(args.act),
           " is not fused for ", dtype_name(args.dtype));
  if (args.m == 0 || args.n == 0) return true;
  Plan* plan = plan_for(args);
  if (!plan->found) return false;
  if (args.bias) {
    SD_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER,
                                                   &args.bias, sizeof args.bias));
  }
  const float alpha = 1.f, beta = args.residual ? 1.f : 0.f;
  const void* c = args.residual ? args.residual : args.y;
  SD_CUBLAS_CHECK(cublasLtMatmul(handle_, plan->desc, &alpha, args.w, plan->a, args.x, plan->b,
                                 &beta, c, plan->c, args.y, plan->c, &plan->algo, workspace_,
                                 workspace_bytes_, stream_));
  return true;
}

void LtMatmul::run_plain(const MatmulArgs& args) {
  MatmulArgs plain = args;
  plain.bias = nullptr;
  plain.residual = nullptr;
  plain.act = Act::None;
  if (run(plain)) return;
  if (!blas_) {
    SD_CUBLAS_CHECK(cublasCreate(&blas_));
    SD_CUBLAS_CHECK(cublasSetStream(blas_, stream_));
  }
  const cudaDataType_t type = cuda_type(args.dtype);
  const float alpha = 1.f, beta = 0.f;
  SD_CUBLAS_CHECK(cublasGemmEx(blas_, CUBLAS_OP_T, CUBLAS_OP_N, int(args.n), int(args.m),
                               int(args.k), &alpha, args.w, type, int(args.k), args.x, type,
                               int(args.k), &beta, args.y, type, int(args.n), CUBLAS_COMPUTE_32F,
                               CUBLAS_GEMM_DEFAULT));
}

}  // namespace sd::cuda
