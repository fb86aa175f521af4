// See stage_model_factory.h. The CUDA part is compiled only when the build has
// CUDA (PIPETRAIN_WITH_CUDA, set by model/CMakeLists.txt on pt_model together with
// the link to pt_model_cuda), so CPU-only builds never reference the CUDA runtime.
#include "model/stage_model_factory.h"

#include <cstdio>
#include <cstdlib>
#include <mutex>

#include "model/backend_stage_model.h"
#include "model/bf16_storage_backend.h"

#ifdef PIPETRAIN_WITH_CUDA
#include "model/cuda/cuda_backend.h"
#endif

namespace pt {

// PIPETRAIN_TEST_DEVICE_SPACE (test only, tests/app/device_step_test.sh): with "1" or
// "nccl", cpu stage models run on make_cpu_backend_emulating_device(), whose
// host_memory() is false, so every caller treats params()/grads() as device memory,
// exactly as on the CUDA backend: explicit transfers, and collectives that cannot take
// device memory staged through host buffers. "nccl" also makes the trainer's
// collectives report that data-parallel sums take device memory, as the NCCL ones do
// (app/backend_staging.h). It exists so that CPU-only CI runs the device paths of the
// step; it must not and does not change numerics. Announced once per process on stderr
// ("test switch: device space") so a test can check that it took effect.
std::string test_device_space() {
  const char* e = std::getenv("PIPETRAIN_TEST_DEVICE_SPACE");
  const std::string v = e == nullptr ? "" : e;
  if (v != "1" && v != "nccl") return "";
  static std::once_flag announced;
  std::call_once(announced, [] { std::fprintf(stderr, "test switch: device space\n"); });
  return v;
}

// PIPETRAIN_TEST_BF16_STORAGE (test only, tests/app/bf16_storage_train_test.sh): with
// "1", cpu stage models run on make_bf16_storage_backend(cpu backend): bf16 tensors
// really stored as bf16 behind handles, every op staged, as on cuda in bf16. It pins
// the stage model's dtype declarations on CPU-only CI and must not change numerics.
// Announced once per process on stderr ("test switch: bf16 storage").
bool test_bf16_storage() {
  const char* e = std::getenv("PIPETRAIN_TEST_BF16_STORAGE");
  if (e == nullptr || std::string(e) != "1") return false;
  static std::once_flag announced;
  std::call_once(announced, [] { std::fprintf(stderr, "test switch: bf16 storage\n"); });
  return true;
}

bool cuda_backend_built() {
#ifdef PIPETRAIN_WITH_CUDA
  return true;
#else
  return false;
#endif
}

int usable_gpu_count(std::string* why) {
#ifdef PIPETRAIN_WITH_CUDA
  return cuda_device_count(why);
#else
  if (why != nullptr) *why = "this binary was built without the CUDA backend (configure with -DPIPETRAIN_CUDA=ON)";
  return 0;
#endif
}

std::string gpu_device_name(int device) {
#ifdef PIPETRAIN_WITH_CUDA
  const int gpus = usable_gpu_count(nullptr);
  if (gpus <= 0) return "";
  return cuda_device_name(device < 0 ? 0 : device % gpus);
#else
  (void)device;
  return "";
#endif
}

Status resolve_backend(const std::string& requested, std::string* resolved) {
  if (requested == "cpu") {
    *resolved = "cpu";
    return Status::ok();
  }
  if (requested != "auto" && requested != "cuda")
    return Status::error("key 'runtime.backend': '" + requested + "' is not one of: auto, cpu, cuda");
  std::string why;
  const int gpus = usable_gpu_count(&why);
  if (gpus > 0) {
    *resolved = "cuda";
    return Status::ok();
  }
  if (requested == "auto") {
    *resolved = "cpu";
    return Status::ok();
  }
  return Status::error("key 'runtime.backend': cuda cannot run here: " + why + "; use cpu or auto");
}

Status make_stage_model(const std::string& backend, int device, const ModelConfig& config, const StageSpec& spec,
                        int B, int T, std::unique_ptr<StageModel>* out, Precision precision,
                        const StageNeeds& needs, const BackendOptions& options) {
  std::string kind;
  PT_RETURN_IF_ERROR(resolve_backend(backend, &kind));
  if (kind == "cpu") {
    (void)options;  // no TF32 on the CPU (BackendOptions)
    std::unique_ptr<Backend> cpu =
        test_device_space().empty() ? make_cpu_backend() : make_cpu_backend_emulating_device();
    if (precision == Precision::kBf16 && test_bf16_storage()) cpu = make_bf16_storage_backend(std::move(cpu));
    *out = make_backend_stage_model(std::move(cpu), config, spec, B, T, precision, needs);
    return Status::ok();
  }
#ifdef PIPETRAIN_WITH_CUDA
  if (config.n_head > 0 && config.n_embd % config.n_head == 0 &&
      config.n_embd / config.n_head > cuda_attention_max_head_size())
    return Status::error("key 'model.n_head': the cuda attention kernels support head sizes (n_embd / n_head) up to " +
                         std::to_string(cuda_attention_max_head_size()) + ", got " +
                         std::to_string(config.n_embd / config.n_head) + "; use more heads or runtime.backend: cpu");
  const int gpus = usable_gpu_count(nullptr);  // > 0: resolve_backend chose cuda
  const int d = device < 0 ? 0 : device % gpus;
  BackendOptions cuda_options = options;
  cuda_options.precision = precision;  // the one source: make_stage_model's argument
  std::unique_ptr<Backend> cuda = make_cuda_backend(d, cuda_options);
  if (precision == Precision::kBf16) cuda = make_bf16_storage_backend(std::move(cuda));  // real bf16 activations
  *out = make_backend_stage_model(std::move(cuda), config, spec, B, T, precision, needs);
  return Status::ok();
#else
  return Status::error("key 'runtime.backend': internal: cuda resolved in a binary without CUDA");
#endif
}

}  // namespace pt
