// The CUDA backend's public face. Plain C++: no CUDA header is included here, so factory.cpp,
// tests and benchmarks compile with the host compiler alone.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "backend/backend.h"

namespace sd {

// Creates the CUDA backend on device 0; throws sd::Error when no usable GPU is present or the
// options are invalid. dtype "auto" is bf16 on sm_80 and newer, f32 before.
std::unique_ptr<Backend> make_cuda_backend(const BackendOptions& options);

// True when the CUDA runtime finds a GPU that can run this build's kernels (the driver is new
// enough and the binary holds code for its architecture). Never throws.
bool cuda_device_present();

// "NVIDIA H100 80GB HBM3, sm_90, 132 SMs, 79.1 GiB, driver 13.0, cuBLASLt 130100"; empty when
// no GPU is present.
std::string cuda_device_info();

// Times the device work that `fn` enqueues on `backend`'s stream (a CUDA backend) with CUDA
// events: `warmup` untimed calls, then `runs` timed ones; returns the median in milliseconds.
double cuda_time_ms(Backend& backend, const std::function<void()>& fn, int runs = 20,
                    int warmup = 3);

}  // namespace sd
