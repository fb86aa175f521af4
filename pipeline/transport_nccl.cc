// NCCL transport and all-reducer (CUDA builds; transport_nccl_stub.cc otherwise).
//
// Why one two-rank communicator per directed channel, and not one communicator for
// the pipeline group with a send stream and a recv stream:
//
//   The Transport contract (transport.h) is MPI's: send() never waits for the
//   receiver, recv() blocks until its message is there. A lowered schedule is
//   deadlock-free under exactly that contract (simulate checks it), but not under
//   rendezvous sends. On the GPU an ncclSend is a kernel that finishes only once the
//   peer's matching ncclRecv runs, and NCCL orders all kernels of one communicator in
//   issue order whatever user stream they are enqueued on (every launch waits on the
//   communicator's internal device stream), so two user streams on one communicator
//   give no independence: with "A: send B, recv B" and "B: send A, recv A" each
//   rank's recv kernel queues behind its own send kernel, which waits for the other
//   rank's recv: a deadlock once messages exceed NCCL's internal buffering. Grouping
//   the sends and receives of a tick (ncclGroupStart/End, as Megatron does for 1F1B)
//   fixes that shape, but not lists where a send's matching receive lies in a later
//   tick of the peer (send-send-recv-recv, interleaved and asynchronous schedules).
//
//   Here every directed channel (from, to) the schedule uses has its own
//   communicator {from = rank 0, to = rank 1} and its own stream on each side. On one
//   rank a channel's communicator carries only sends to one peer or only receives from
//   one peer, so the only order NCCL imposes is FIFO within a channel, which is the
//   order the receiver asks for anyway (lowering keeps receives of a channel in send
//   order). Then: recv k of a channel completes as soon as the sender's host has
//   issued send k (its send k-1 already matched recv k-1, which completed before this
//   rank's host posted recv k, recv being blocking), and a pending send holds up
//   nothing on its own rank. That is the MPI contract, so the lowered schedule cannot
//   deadlock. What it assumes of the GPU: the kernels of different communicators run
//   concurrently (at most one pending send kernel per outgoing channel plus the one
//   receive kernel, a few CTAs each), and nothing on this device synchronizes the
//   whole device while a send is pending: all streams here are cudaStreamNonBlocking
//   (so legacy-default-stream work such as a synchronous cudaMemcpy does not wait for
//   them), staging memory comes from a stream-ordered pool (no cudaMalloc/cudaFree in
//   the loop), and stage models must not call cudaDeviceSynchronize between send()
//   and wait_sends().
//
//   Tags are not transmitted: NCCL matches the k-th send of a channel with its k-th
//   receive. The executor's tags only ever distinguish messages that lowering already
//   orders FIFO per channel, so ignoring them delivers the same messages MPI would.
//   Counts must match on both sides (NCCL cannot report a short message); the
//   executor's are fixed, (B, T, C) per boundary tensor.
//
//   Connections are opened at construction: NCCL connects a peer lazily at the first
//   send/recv, and that handshake blocks the host until the peer joins, which would
//   turn the first send of a run into a rendezvous. A one-float exchange per channel,
//   in one global channel order on every rank, connects them all without deadlock
//   (both members of the lowest unfinished channel always reach it).
//
// Host or device buffers: cudaPointerGetAttributes decides. Device buffers move
// device to device: a send's channel stream waits for the producer's event
// (BufferRef::ready) and a receive records the channel's event, which the consumer's
// stream waits on (the executor's BoundaryMemory::consumer_wait), so the host does not
// block on a device receive and compute overlaps communication. This keeps the
// argument above: on the device, a receive still completes only after its matching
// send was issued, and everything ordered after a receive (on the compute stream)
// waits for it exactly as the host did when recv blocked; the send kernels issued
// later by the host depend on that compute through their ready events, so the graph of
// waits is the one the simulator checks with a blocking receive. Host buffers are staged:
// send copies host -> device on a copy-only stream (the host buffer is free when the
// call returns, pageable copies having been staged by the driver) and the channel
// stream waits on it before ncclSend; recv runs ncclRecv into a device buffer and
// copies back before returning. Groups (ncclGroupStart/End, pipeline/comm_groups.h)
// launch the sends and receives of one group together; docs/transports.md argues why
// the groups comm_groups forms cannot deadlock. Staging buffers come from the transport's own
// memory pool (cudaMallocFromPoolAsync; freed in stream order at wait_sends).
#include <cuda_runtime.h>
#include <mpi.h>
#include <nccl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <map>
#include <vector>

#include "common/check.h"
#include "pipeline/cuda_rt_check.h"
#include "pipeline/status_agree.h"
#include "pipeline/transport.h"

namespace pt {
namespace {

std::string nccl_error_detail(ncclResult_t rc) {
  std::string last = ncclGetLastError(nullptr);
  return std::string("NCCL ") + ncclGetErrorString(rc) + (last.empty() ? "" : " (" + last + ")") + ", " +
         where_am_i();
}

}  // namespace
}  // namespace pt

// Any NCCL result other than ncclSuccess is fatal; the message names the rank and host.
#define PT_NCCL_CHECK(call)                                                                      \
  do {                                                                                           \
    ncclResult_t pt_nccl_rc_ = (call);                                                           \
    if (pt_nccl_rc_ != ncclSuccess)                                                              \
      ::pt::fatal_error(#call, __FILE__, __LINE__, ::pt::nccl_error_detail(pt_nccl_rc_));        \
  } while (0)

namespace pt {
namespace {

// A pool of device memory owned by one transport: stream-ordered allocation without
// cudaMalloc/cudaFree (which may synchronize the device) once it is warm.
cudaMemPool_t make_pool(int device) {
  cudaMemPoolProps props = {};
  props.allocType = cudaMemAllocationTypePinned;
  props.handleTypes = cudaMemHandleTypeNone;
  props.location.type = cudaMemLocationTypeDevice;
  props.location.id = device;
  cudaMemPool_t pool = nullptr;
  PT_CUDA_RT_CHECK(cudaMemPoolCreate(&pool, &props));
  uint64_t keep = UINT64_MAX;  // never hand memory back to the OS between steps
  PT_CUDA_RT_CHECK(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep));
  return pool;
}

float* pool_alloc(cudaMemPool_t pool, size_t count, cudaStream_t stream) {
  void* p = nullptr;
  PT_CUDA_RT_CHECK(cudaMallocFromPoolAsync(&p, std::max<size_t>(count, 1) * sizeof(float), pool, stream));
  return static_cast<float*>(p);
}

// True for memory NCCL can use directly (device memory of `device`, managed memory).
bool is_device_pointer(const void* p, int device) {
  cudaPointerAttributes attr = {};
  const cudaError_t rc = cudaPointerGetAttributes(&attr, p);
  if (rc != cudaSuccess) {
    (void)cudaGetLastError();
    return false;
  }
  if (attr.type == cudaMemoryTypeManaged) return true;
  if (attr.type != cudaMemoryTypeDevice) return false;
  PT_CHECK_MSG(attr.device == device, "a device buffer of CUDA device " + std::to_string(attr.device) +
                                          " was handed to the NCCL transport of device " + std::to_string(device));
  return true;
}

uint64_t fnv1a(const std::vector<std::pair<int, int>>& v) {
  uint64_t h = 1469598103934665603ull;
  for (const auto& [a, b] : v)
    for (int x : {a, b}) {
      h ^= uint64_t(uint32_t(x));
      h *= 1099511628211ull;
    }
  return h;
}

// ncclUniqueIds made on rank 0 of `comm` and broadcast with MPI.
std::vector<ncclUniqueId> shared_ids(MPI_Comm comm, size_t count) {
  int rank = 0;
  PT_MPI_CHECK(MPI_Comm_rank(comm, &rank));
  std::vector<ncclUniqueId> ids(count);
  if (rank == 0)
    for (auto& id : ids) PT_NCCL_CHECK(ncclGetUniqueId(&id));
  if (count > 0)
    PT_MPI_CHECK(MPI_Bcast(ids.data(), int(count * sizeof(ncclUniqueId)), MPI_BYTE, 0, comm));
  return ids;
}

class NcclTransport final : public Transport {
 public:
  // Called only after use_cuda_device(device) succeeded on every rank of `comm`.
  NcclTransport(MPI_Comm comm, int device, std::vector<std::pair<int, int>> channels) : device_(device) {
    PT_MPI_CHECK(MPI_Comm_rank(comm, &rank_));
    PT_MPI_CHECK(MPI_Comm_size(comm, &size_));
    // The same channel list on every rank, or the communicators would not pair up.
    uint64_t mine[2] = {fnv1a(channels), uint64_t(channels.size())}, lo[2], hi[2];
    PT_MPI_CHECK(MPI_Allreduce(mine, lo, 2, MPI_UINT64_T, MPI_MIN, comm));
    PT_MPI_CHECK(MPI_Allreduce(mine, hi, 2, MPI_UINT64_T, MPI_MAX, comm));
    PT_CHECK_MSG(lo[0] == hi[0] && lo[1] == hi[1], "the ranks passed different NCCL channel lists");

    pool_ = make_pool(device_);
    PT_CUDA_RT_CHECK(cudaStreamCreateWithFlags(&copy_stream_, cudaStreamNonBlocking));
    PT_CUDA_RT_CHECK(cudaEventCreateWithFlags(&copy_done_, cudaEventDisableTiming));

    const std::vector<ncclUniqueId> ids = shared_ids(comm, channels.size());
    for (size_t k = 0; k < channels.size(); ++k) {
      const auto [from, to] = channels[k];
      if (from != rank_ && to != rank_) continue;
      Channel ch;
      ch.sending = from == rank_;
      ch.peer = ch.sending ? to : from;
      PT_NCCL_CHECK(ncclCommInitRank(&ch.comm, 2, ids[k], ch.sending ? 0 : 1));
      PT_CUDA_RT_CHECK(cudaStreamCreateWithFlags(&ch.stream, cudaStreamNonBlocking));
      PT_CUDA_RT_CHECK(cudaEventCreateWithFlags(&ch.done, cudaEventDisableTiming));
      // Connect now (see the top of the file): one float each way, in global order.
      float* one = pool_alloc(pool_, 1, ch.stream);
      PT_CUDA_RT_CHECK(cudaMemsetAsync(one, 0, sizeof(float), ch.stream));
      if (ch.sending)
        PT_NCCL_CHECK(ncclSend(one, 1, ncclFloat, 1, ch.comm, ch.stream));
      else
        PT_NCCL_CHECK(ncclRecv(one, 1, ncclFloat, 0, ch.comm, ch.stream));
      PT_CUDA_RT_CHECK(cudaFreeAsync(one, ch.stream));
      PT_CUDA_RT_CHECK(cudaStreamSynchronize(ch.stream));
      (ch.sending ? send_to_ : recv_from_)[ch.peer] = channels_.size();
      channels_.push_back(ch);
    }
  }

  ~NcclTransport() override {
    wait_sends();
    for (Channel& ch : channels_) {
      ncclCommDestroy(ch.comm);
      cudaEventDestroy(ch.done);
      cudaStreamDestroy(ch.stream);
    }
    cudaEventDestroy(copy_done_);
    cudaStreamDestroy(copy_stream_);
    cudaMemPoolDestroy(pool_);
  }

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string name() const override { return "nccl"; }

  bool accepts(MemorySpace) const override { return true; }

  void send(const BufferRef& buf, int peer, int tag) override {
    (void)tag;
    Channel& ch = channel(send_to_, peer, "to");
    const float* src = buf.data;
    const size_t count = buf.count;
    if (!is_device_pointer(src, device_)) {
      float* staged = pool_alloc(pool_, count, copy_stream_);
      PT_CUDA_RT_CHECK(cudaMemcpyAsync(staged, src, count * sizeof(float), cudaMemcpyHostToDevice, copy_stream_));
      PT_CUDA_RT_CHECK(cudaEventRecord(copy_done_, copy_stream_));
      PT_CUDA_RT_CHECK(cudaStreamWaitEvent(ch.stream, copy_done_, 0));
      staged_.push_back(staged);
      src = staged;
    } else if (buf.ready != nullptr) {
      // The producer's kernels (another stream) finish before the send reads.
      PT_CUDA_RT_CHECK(cudaStreamWaitEvent(ch.stream, static_cast<cudaEvent_t>(buf.ready), 0));
    }
    PT_NCCL_CHECK(ncclSend(src, count, ncclFloat, 1, ch.comm, ch.stream));
    ch.pending = true;
  }

  // Device buffer: received on the channel's stream; returns the channel's event, which the
  // consumer's stream waits on. Host buffer: staged, complete on return (or at group_end).
  void* recv(const BufferRef& buf, int peer, int tag) override {
    (void)tag;
    Channel& ch = channel(recv_from_, peer, "from");
    float* dst = buf.data;
    const size_t count = buf.count;
    const bool device = is_device_pointer(dst, device_);
    // The previous reader of a reused device buffer (ready: its stream's event) is done first.
    if (device && buf.ready != nullptr)
      PT_CUDA_RT_CHECK(cudaStreamWaitEvent(ch.stream, static_cast<cudaEvent_t>(buf.ready), 0));
    float* target = device ? dst : pool_alloc(pool_, count, ch.stream);
    PT_NCCL_CHECK(ncclRecv(target, count, ncclFloat, 0, ch.comm, ch.stream));
    // Stream work after the receive waits for group_end inside a group: the NCCL kernels
    // are enqueued only then, and this work must follow them on the stream.
    Channel* c = &ch;
    auto finish = [c, dst, target, count, device] {
      if (device) {
        PT_CUDA_RT_CHECK(cudaEventRecord(c->done, c->stream));
        return;
      }
      PT_CUDA_RT_CHECK(cudaMemcpyAsync(dst, target, count * sizeof(float), cudaMemcpyDeviceToHost, c->stream));
      PT_CUDA_RT_CHECK(cudaFreeAsync(target, c->stream));
      PT_CUDA_RT_CHECK(cudaStreamSynchronize(c->stream));
    };
    if (in_group_) deferred_.push_back(finish);
    else finish();
    return device ? static_cast<void*>(ch.done) : nullptr;
  }

  void host_wait(void* event) override {
    if (event != nullptr) PT_CUDA_RT_CHECK(cudaEventSynchronize(static_cast<cudaEvent_t>(event)));
  }

  // One ncclGroupStart/End around the comm actions of a group (pipeline/comm_groups.h).
  void group_begin() override {
    PT_CHECK_MSG(!in_group_, "nested NCCL transport groups");
    PT_NCCL_CHECK(ncclGroupStart());
    in_group_ = true;
  }
  void group_end() override {
    PT_CHECK_MSG(in_group_, "group_end without group_begin");
    PT_NCCL_CHECK(ncclGroupEnd());
    in_group_ = false;
    for (auto& f : deferred_) f();
    deferred_.clear();
  }

  void wait_sends() override {
    for (Channel& ch : channels_)
      if (ch.pending) {
        PT_CUDA_RT_CHECK(cudaStreamSynchronize(ch.stream));
        ch.pending = false;
      }
    // Every send that read a staging buffer has completed: hand them back in order.
    for (float* p : staged_) PT_CUDA_RT_CHECK(cudaFreeAsync(p, copy_stream_));
    staged_.clear();
  }

 private:
  struct Channel {
    int peer = -1;
    bool sending = false;
    bool pending = false;  // sends enqueued since the last wait_sends
    ncclComm_t comm = nullptr;
    cudaStream_t stream = nullptr;
    cudaEvent_t done = nullptr;  // receiving channels: recorded after each device receive
  };

  Channel& channel(const std::map<int, size_t>& index, int peer, const char* dir) {
    auto it = index.find(peer);
    PT_CHECK_MSG(it != index.end(), "the NCCL transport of pipeline rank " + std::to_string(rank_) +
                                        " has no channel " + dir + " pipeline rank " + std::to_string(peer) +
                                        " (channels come from the schedule's placement)");
    return channels_[it->second];
  }

  int device_ = 0, rank_ = 0, size_ = 1;
  cudaMemPool_t pool_ = nullptr;
  cudaStream_t copy_stream_ = nullptr;
  cudaEvent_t copy_done_ = nullptr;
  std::vector<Channel> channels_;
  std::map<int, size_t> send_to_, recv_from_;  // peer -> index in channels_
  std::vector<float*> staged_;                 // staging buffers of pending host sends
  bool in_group_ = false;
  std::vector<std::function<void()>> deferred_;  // receive completions issued at group_end
};

class NcclAllReducer final : public AllReducer {
 public:
  NcclAllReducer(MPI_Comm comm, int device) : device_(device) {
    int rank = 0, size = 1;
    PT_MPI_CHECK(MPI_Comm_rank(comm, &rank));
    PT_MPI_CHECK(MPI_Comm_size(comm, &size));
    pool_ = make_pool(device_);
    PT_CUDA_RT_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    const std::vector<ncclUniqueId> id = shared_ids(comm, 1);
    PT_NCCL_CHECK(ncclCommInitRank(&comm_, size, id[0], rank));
  }
  ~NcclAllReducer() override {
    cudaStreamSynchronize(stream_);
    for (auto& [h, e] : started_) cudaEventDestroy(e);
    for (cudaEvent_t e : free_events_) cudaEventDestroy(e);
    ncclCommDestroy(comm_);
    cudaStreamDestroy(stream_);
    cudaMemPoolDestroy(pool_);
  }
  std::string name() const override { return "nccl"; }

  void all_reduce_sum(float* data, size_t count) override {
    enqueue_sum(data, count);
    PT_CUDA_RT_CHECK(cudaStreamSynchronize(stream_));
  }

  // In stream order on stream_: [wait for ready,] [stage in,] all-reduce, [copy back]; an
  // event per handle marks the end. The host buffer must stay untouched until wait().
  int64_t start_all_reduce_sum(float* data, size_t count, void* ready) override {
    if (ready != nullptr) PT_CUDA_RT_CHECK(cudaStreamWaitEvent(stream_, static_cast<cudaEvent_t>(ready), 0));
    enqueue_sum(data, count);
    cudaEvent_t done = nullptr;
    if (!free_events_.empty()) {
      done = free_events_.back();
      free_events_.pop_back();
    } else {
      PT_CUDA_RT_CHECK(cudaEventCreateWithFlags(&done, cudaEventDisableTiming));
    }
    PT_CUDA_RT_CHECK(cudaEventRecord(done, stream_));
    started_[next_handle_] = done;
    return next_handle_++;
  }
  void wait(int64_t handle) override {
    auto it = started_.find(handle);
    if (it == started_.end()) return;
    PT_CUDA_RT_CHECK(cudaEventSynchronize(it->second));
    free_events_.push_back(it->second);
    started_.erase(it);
  }

 private:
  // In stream order on stream_: the in-place sum of a device buffer, or of a host buffer
  // staged in and back out through pool memory.
  void enqueue_sum(float* data, size_t count) {
    if (is_device_pointer(data, device_)) {
      PT_NCCL_CHECK(ncclAllReduce(data, data, count, ncclFloat, ncclSum, comm_, stream_));
    } else {
      float* staged = pool_alloc(pool_, count, stream_);
      PT_CUDA_RT_CHECK(cudaMemcpyAsync(staged, data, count * sizeof(float), cudaMemcpyHostToDevice, stream_));
      PT_NCCL_CHECK(ncclAllReduce(staged, staged, count, ncclFloat, ncclSum, comm_, stream_));
      PT_CUDA_RT_CHECK(cudaMemcpyAsync(data, staged, count * sizeof(float), cudaMemcpyDeviceToHost, stream_));
      PT_CUDA_RT_CHECK(cudaFreeAsync(staged, stream_));
    }
  }

  int device_ = 0;
  ncclComm_t comm_ = nullptr;
  cudaStream_t stream_ = nullptr;
  cudaMemPool_t pool_ = nullptr;
  std::map<int64_t, cudaEvent_t> started_;  // handle -> completion event
  std::vector<cudaEvent_t> free_events_;
  int64_t next_handle_ = 0;
};

}  // namespace

bool nccl_transport_built() { return true; }

std::unique_ptr<Transport> make_nccl_transport(MPI_Comm comm, int device,
                                               const std::vector<std::pair<int, int>>& channels, Status* status) {
  int rank = 0, size = 1;
  PT_MPI_CHECK(MPI_Comm_rank(comm, &rank));
  PT_MPI_CHECK(MPI_Comm_size(comm, &size));
  std::vector<std::pair<int, int>> list = channels_or_all(channels, size);
  Status mine = use_cuda_device(device);
  for (const auto& [a, b] : list)
    if (mine.is_ok() && (a < 0 || b < 0 || a >= size || b >= size || a == b))
      mine = Status::error("bad NCCL channel (" + std::to_string(a) + ", " + std::to_string(b) + ") for " +
                           std::to_string(size) + " pipeline ranks");
  *status = agree_status(comm, mine, "nccl transport", "could not use their GPU");
  if (!status->is_ok()) return nullptr;
  return std::make_unique<NcclTransport>(comm, device, std::move(list));
}

std::unique_ptr<AllReducer> make_nccl_all_reducer(MPI_Comm comm, int device, Status* status) {
  *status = agree_status(comm, use_cuda_device(device), "nccl all-reduce", "could not use their GPU");
  if (!status->is_ok()) return nullptr;
  return std::make_unique<NcclAllReducer>(comm, device);
}

Status local_cuda_device(int node_rank, int* device, std::string* uuid) {
  int count = 0;
  const cudaError_t rc = cudaGetDeviceCount(&count);
  if (rc != cudaSuccess || count == 0) {
    (void)cudaGetLastError();
    return Status::error("no usable GPU: " + (rc != cudaSuccess ? std::string("cudaGetDeviceCount failed with ") +
                                                                       cudaGetErrorName(rc)
                                                                 : std::string("no CUDA device is visible")) +
                         " (" + where_am_i() + ")");
  }
  *device = node_rank % count;
  cudaDeviceProp prop = {};
  PT_CUDA_RT_CHECK(cudaGetDeviceProperties(&prop, *device));
  char text[64];
  const auto* u = reinterpret_cast<const unsigned char*>(prop.uuid.bytes);
  std::snprintf(text, sizeof(text), "GPU-%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", u[0],
                u[1], u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12], u[13], u[14], u[15]);
  *uuid = text;
  return Status::ok();
}

}  // namespace pt
