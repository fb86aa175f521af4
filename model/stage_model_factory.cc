// See stage_model_factory.h. The CUDA part is compiled only when the build has
// CUDA (PIPETRAIN_WITH_CUDA, set by model/CMakeLists.txt on pt_model together with
// the link to pt_model_cuda), so CPU-only builds never reference the CUDA runtime.
#include "model/stage_model_factory.h"

#include <cstdio>
#include <cstdlib>
#include <mutex>

#include "model/backend_stage_model.h"

#ifdef PIPETRAIN_WITH_CUDA
#include "model/cuda/cuda_backend.h"
#endif

namespace pt {
namespace {

// PIPETRAIN_TEST_SEPARATE_HOST_MIRRORS=1 (test only, tests/app/host_mirror_test.sh):
// cpu stage models run on make_cpu_backend_separate_host_mirrors(), whose
// host_memory() is false, so params()/grads() are separate host mirrors and every
// sync_params_to_device()/sync_grads_to_host() really copies, exactly as on the
// CUDA backend. It exists only so that CPU-only CI can check that every caller
// calls the host/device hooks (a missing call changes the results); it must not
// and does not change numerics. Announced once per process on stderr ("test
// switch: separate host mirrors") so a test can check that it took effect.
bool test_separate_host_mirrors() {
  const char* e = std::getenv("PIPETRAIN_TEST_SEPARATE_HOST_MIRRORS");
  const bool on = e != nullptr && std::string(e) == "1";
  static std::once_flag announced;
  if (on) std::call_once(announced, [] { std::fprintf(stderr, "test switch: separate host mirrors\n"); });
  return on;
}

}  // namespace

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
    if (test_separate_host_mirrors()) {
      *out = make_backend_stage_model(make_cpu_backend_separate_host_mirrors(), config, spec, B, T, precision,
                                      needs);
      return Status::ok();
    }
    *out = make_backend_stage_model(make_cpu_backend(), config, spec, B, T, precision, needs);
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
  *out = make_backend_stage_model(make_cuda_backend(d, options), config, spec, B, T, precision, needs);
  return Status::ok();
#else
  return Status::error("key 'runtime.backend': internal: cuda resolved in a binary without CUDA");
#endif
}

}  // namespace pt
