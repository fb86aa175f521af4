// The ipc transport (transport.h, make_ipc_transport): one-sided copies into the
// receiver's memory between the processes of one node, MPI for control only.
//
// Per directed channel (sender S -> receiver R), R owns `slots` mailbox buffers of
// `slot_floats` floats each, exported once at construction (IpcMemory, ipc_memory.h) and
// opened by S. Each slot has two fences: `filled`, recorded by S after its copy into the
// slot, and `drained`, recorded by R after its copy out of it.
//   send:  the copy stream waits for the producer (BufferRef::ready); the message is cut
//          into pieces of at most slot_floats (one piece if empty) queued on the channel;
//          a queued piece takes a free slot when there is one: the stream waits for the
//          slot's `drained`, copies into it, records `filled`, and a control message
//          {slot, floats, message floats, tag} goes to R (MPI_Isend). send never waits.
//   recv:  per piece, waits (deadline, mpi_wait.h) for the channel's next control message,
//          makes the stream wait for `filled`, copies the slot into the destination,
//          records `drained` and hands the slot back to S (a credit message). Returns an
//          event marking the copies (device destination) or, for a host destination,
//          synchronizes first and returns nullptr.
//   Every wait (recv, wait_sends) keeps progressing this rank's queued sends: it takes the
//   credits that arrived and fills the slots they free; so does every other deadline-bounded
//   MPI wait of the run (collectives included), through a poll hook (mpi_wait.h).
// Order: one channel's pieces use its slots in credit order, and R reads the control
// messages in MPI's non-overtaking order, so the k-th message sent is the k-th received;
// the tag travels along and a receive whose tag or size differs is a fatal error (lowering
// promises FIFO channels, pipeline/lower.h). Memory: a message never overwrites a slot
// before R's copy out of it was issued (the credit) and completed (the stream waits for
// `drained`), nor is read before S's copy completed (`filled`).
//
// Deadlock freedom (docs/transports.md): send returns at once, as an MPI_Isend does; recv
// blocks until its message's pieces are in slots. A queued piece waits only for credits,
// which R returns as it receives the earlier messages of that channel, which it must do
// before this one (FIFO); while any rank waits inside the transport it issues what its
// credits allow, as does every other MPI wait through the poll hook. So every message a
// blocking receive needs is delivered once the sender has called send and then waits on
// anything MPI (or returns to the transport: wait_sends ends every step), which is MPI's
// own progress rule for large (rendezvous) messages: the lowered schedules that are
// deadlock-free over mpi are deadlock-free here. (A wait outside MPI, e.g. an NCCL sum
// synchronized with cudaStreamSynchronize, does not progress the queue.) wait_sends returns when every queued piece
// went out and its credit came back (the receiver read it), then synchronizes the stream.
// On the GPU every wait is for work some host had already issued when the wait was issued
// (the credit or control message is sent after the record), so the waits are acyclic.
//
// Groups are ignored (sends never wait). Construction and destruction are collective over
// the pipeline group; destruction first completes the sends (wait_sends), and frees this
// rank's mailboxes only after every peer has closed its mappings (a barrier).
#include <algorithm>
#include <deque>
#include <map>
#include <vector>

#include "common/check.h"
#include "pipeline/ipc_memory.h"
#include "pipeline/mpi_wait.h"
#include "pipeline/status_agree.h"
#include "pipeline/transport.h"

namespace pt {
namespace {

constexpr int kControlTag = 1, kCreditTag = 2, kSetupTag = 3;

struct Control {
  int64_t slot = 0, floats = 0, total = 0, tag = 0;  // this piece; the whole message's floats and tag
};

struct Piece {
  const float* src = nullptr;
  size_t floats = 0, total = 0;
  int tag = 0;
};

struct OutChannel {  // this rank -> peer
  int peer = -1;
  std::vector<float*> slots;     // the peer's mailbox, opened
  std::vector<void*> filled;     // this rank's fences (exported)
  std::vector<void*> drained;    // the peer's fences (opened)
  std::deque<int> free;          // slots handed back
  std::deque<Piece> queue;       // pieces waiting for a slot
  int credit = -1;               // the posted receive of the next credit
  MPI_Request credit_req = MPI_REQUEST_NULL;
};

struct InChannel {  // peer -> this rank
  int peer = -1;
  std::vector<float*> slots;     // this rank's mailbox (exported)
  std::vector<void*> filled;     // the peer's fences (opened)
  std::vector<void*> drained;    // this rank's fences (exported)
  Control next;                  // the posted receive of the next control message
  MPI_Request next_req = MPI_REQUEST_NULL;
};

struct Outgoing {  // a control or credit message in flight (deque: stable address)
  Control msg;
  int credit = 0;
  MPI_Request req = MPI_REQUEST_NULL;
};

class IpcTransport final : public Transport {
 public:
  IpcTransport(MPI_Comm comm, std::unique_ptr<IpcMemory> memory, size_t slot_floats, int slots)
      : memory_(std::move(memory)), slot_floats_(slot_floats), slots_(slots) {
    PT_MPI_CHECK(MPI_Comm_dup(comm, &comm_));  // its own tags, apart from everything else
    PT_MPI_CHECK(MPI_Comm_rank(comm_, &rank_));
    PT_MPI_CHECK(MPI_Comm_size(comm_, &size_));
  }
  ~IpcTransport() override;
  Status setup(const std::vector<std::pair<int, int>>& channels);

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string name() const override { return "ipc"; }
  bool accepts(MemorySpace) const override { return true; }
  void host_wait(void* event) override {
    if (event != nullptr) memory_->synchronize();
  }

  void send(const BufferRef& buf, int peer, int tag) override;
  void* recv(const BufferRef& buf, int peer, int tag) override;
  void wait_sends() override;

 private:
  void open_out(OutChannel* ch);
  Status setup_channel(int from, int to);
  void progress();
  void issue(OutChannel& ch);
  Control next_control(InChannel& ch, size_t floats, int tag);
  void post(int peer, int tag, Outgoing&& o);
  bool sends_done();
  OutChannel& out(int peer);
  InChannel& in(int peer);
  std::string who(int peer) const {
    return "pipeline rank " + std::to_string(peer) + " (ipc transport of pipeline rank " + std::to_string(rank_) + ")";
  }

  MPI_Comm comm_ = MPI_COMM_NULL;
  std::unique_ptr<IpcMemory> memory_;
  size_t slot_floats_ = 0;
  int slots_ = 0, rank_ = 0, size_ = 1;
  std::map<int, OutChannel> out_;
  std::map<int, InChannel> in_;
  std::deque<Outgoing> outgoing_;
  int hook_ = -1;  // progress() as a poll hook of every MPI wait (mpi_wait.h), once set up
};

// Sends `mine` to `peer` and receives `theirs` from it (deadline-bounded).
void swap_handles(MPI_Comm comm, int peer, const std::vector<IpcHandle>& mine, std::vector<IpcHandle>* theirs) {
  MPI_Request r[2];
  PT_MPI_CHECK(MPI_Irecv(theirs->data(), int(theirs->size() * sizeof(IpcHandle)), MPI_BYTE, peer, kSetupTag, comm, &r[1]));
  PT_MPI_CHECK(MPI_Isend(mine.data(), int(mine.size() * sizeof(IpcHandle)), MPI_BYTE, peer, kSetupTag, comm, &r[0]));
  for (MPI_Request& q : r)
    wait_request(&q, nullptr, [&] { return "the ipc transport's setup exchange with pipeline rank " + std::to_string(peer); });
}

// Every slot starts free; the first credit's receive is posted.
void IpcTransport::open_out(OutChannel* ch) {
  for (int k = 0; k < slots_; ++k) ch->free.push_back(k);
  PT_MPI_CHECK(MPI_Irecv(&ch->credit, 1, MPI_INT, ch->peer, kCreditTag, comm_, &ch->credit_req));
}

// One channel, on its two members: the receiver exports slots and `drained` fences, the
// sender `filled` fences; each opens the other's. Handles: [slots | drained] one way,
// [filled] the other.
Status IpcTransport::setup_channel(int from, int to) {
  const bool sending = from == rank_;
  const int peer = sending ? to : from;
  const size_t k = size_t(slots_);
  std::vector<IpcHandle> mine(sending ? k : 2 * k), theirs(sending ? 2 * k : k);
  Status st;
  if (sending) {
    OutChannel& ch = out_[peer];
    ch.peer = peer;
    for (size_t i = 0; i < k; ++i) ch.filled.push_back(memory_->export_fence(&mine[i]));
    swap_handles(comm_, peer, mine, &theirs);
    ch.slots.assign(k, nullptr);
    ch.drained.assign(k, nullptr);
    for (size_t i = 0; i < k && st.is_ok(); ++i) st = memory_->open_buffer(theirs[i], slot_floats_, &ch.slots[i]);
    for (size_t i = 0; i < k && st.is_ok(); ++i) st = memory_->open_fence(theirs[k + i], &ch.drained[i]);
    if (st.is_ok()) open_out(&ch);
    return st;
  }
  InChannel& ch = in_[peer];
  ch.peer = peer;
  for (size_t i = 0; i < k; ++i) ch.slots.push_back(memory_->export_buffer(slot_floats_, &mine[i]));
  for (size_t i = 0; i < k; ++i) ch.drained.push_back(memory_->export_fence(&mine[k + i]));
  swap_handles(comm_, peer, mine, &theirs);
  ch.filled.assign(k, nullptr);
  for (size_t i = 0; i < k && st.is_ok(); ++i) st = memory_->open_fence(theirs[i], &ch.filled[i]);
  PT_MPI_CHECK(MPI_Irecv(&ch.next, sizeof(Control), MPI_BYTE, peer, kControlTag, comm_, &ch.next_req));
  return st;
}

// Collective: every rank checks it got rank 0's channel list (else the exchanges would not
// pair up), then sets up its channels in that one global order, which cannot deadlock
// (both members of the lowest unfinished channel reach it), and all agree on the result.
Status IpcTransport::setup(const std::vector<std::pair<int, int>>& channels) {
  std::vector<int> flat;
  for (const auto& [a, b] : channels) flat.insert(flat.end(), {a, b});
  int n = int(flat.size());
  PT_MPI_CHECK(MPI_Bcast(&n, 1, MPI_INT, 0, comm_));
  std::vector<int> root(size_t(n), 0);
  if (rank_ == 0) root = flat;
  if (n > 0) PT_MPI_CHECK(MPI_Bcast(root.data(), n, MPI_INT, 0, comm_));
  Status mine = root == flat ? Status::ok() : Status::error("the ranks passed different ipc channel lists");
  std::vector<std::pair<int, int>> sorted = channels;
  std::sort(sorted.begin(), sorted.end());
  if (mine.is_ok() && std::adjacent_find(sorted.begin(), sorted.end()) != sorted.end())
    mine = Status::error("the ipc channel list names a channel twice");
  for (const auto& [a, b] : channels)
    if (mine.is_ok() && (a < 0 || b < 0 || a >= size_ || b >= size_ || a == b))
      mine = Status::error("bad ipc channel (" + std::to_string(a) + ", " + std::to_string(b) + ") for " +
                           std::to_string(size_) + " pipeline ranks");
  PT_RETURN_IF_ERROR(agree_status(comm_, mine, "ipc transport", "were given a different channel list"));
  Status st;
  for (const auto& [a, b] : channels)
    if (a == rank_ || b == rank_) {
      Status c = setup_channel(a, b);
      if (st.is_ok() && !c.is_ok())
        st = Status::error("pipeline rank " + std::to_string(rank_) + " could not open what pipeline rank " +
                           std::to_string(a == rank_ ? b : a) + " shares over " + memory_->name() + " IPC: " +
                           c.message() + ". CUDA IPC may be unavailable here (e.g. in this MPS setup); use "
                           "runtime.transport=mpi (host staging)");
    }
  PT_RETURN_IF_ERROR(agree_status(comm_, st, "ipc transport", "could not open a peer's shared memory"));
  memory_->sealed();
  hook_ = add_poll_hook([this] { progress(); });
  return Status::ok();
}

OutChannel& IpcTransport::out(int peer) {
  auto it = out_.find(peer);
  PT_CHECK_MSG(it != out_.end() && !it->second.slots.empty(),
               "the ipc transport of pipeline rank " + std::to_string(rank_) + " has no channel to pipeline rank " +
                   std::to_string(peer) + " (channels come from the schedule's placement)");
  return it->second;
}

InChannel& IpcTransport::in(int peer) {
  auto it = in_.find(peer);
  PT_CHECK_MSG(it != in_.end(), "the ipc transport of pipeline rank " + std::to_string(rank_) +
                                    " has no channel from pipeline rank " + std::to_string(peer) +
                                    " (channels come from the schedule's placement)");
  return it->second;
}

void IpcTransport::post(int peer, int tag, Outgoing&& o) {
  outgoing_.push_back(o);
  Outgoing& m = outgoing_.back();
  if (tag == kControlTag)
    PT_MPI_CHECK(MPI_Isend(&m.msg, sizeof(Control), MPI_BYTE, peer, tag, comm_, &m.req));
  else
    PT_MPI_CHECK(MPI_Isend(&m.credit, 1, MPI_INT, peer, tag, comm_, &m.req));
}

// The first queued piece of `ch` into its first free slot (ipc_memory.h: stream order).
void IpcTransport::issue(OutChannel& ch) {
  const Piece p = ch.queue.front();
  const int slot = ch.free.front();
  ch.queue.pop_front();
  ch.free.pop_front();
  memory_->wait(ch.drained[size_t(slot)]);  // the receiver's copy out of the slot is done
  memory_->copy(ch.slots[size_t(slot)], p.src, p.floats);
  memory_->record(ch.filled[size_t(slot)]);
  Outgoing o;
  o.msg = Control{slot, int64_t(p.floats), int64_t(p.total), p.tag};
  post(ch.peer, kControlTag, std::move(o));
}

// Takes the credits that arrived, fills the slots they free, forgets completed messages.
void IpcTransport::progress() {
  for (auto& [peer, ch] : out_) {
    int done = 1;
    while (ch.credit_req != MPI_REQUEST_NULL && done) {
      PT_MPI_CHECK(MPI_Test(&ch.credit_req, &done, MPI_STATUS_IGNORE));
      if (!done) break;
      PT_CHECK_MSG(ch.credit >= 0 && ch.credit < slots_, "bad ipc credit from " + who(peer));
      ch.free.push_back(ch.credit);
      PT_MPI_CHECK(MPI_Irecv(&ch.credit, 1, MPI_INT, peer, kCreditTag, comm_, &ch.credit_req));
    }
    while (!ch.queue.empty() && !ch.free.empty()) issue(ch);
  }
  int done = 1;
  while (!outgoing_.empty() && done) {
    PT_MPI_CHECK(MPI_Test(&outgoing_.front().req, &done, MPI_STATUS_IGNORE));
    if (done) outgoing_.pop_front();
  }
}

void IpcTransport::send(const BufferRef& buf, int peer, int tag) {
  OutChannel& ch = out(peer);
  memory_->wait(buf.ready);  // the producer's work, before any copy of the message
  size_t at = 0;
  do {
    const size_t n = std::min(slot_floats_, buf.count - at);
    ch.queue.push_back(Piece{buf.data + at, n, buf.count, tag});
    at += n;
  } while (at < buf.count);
  progress();
}

// The channel's next control message (waiting with the deadline), checked against the
// receive's size and tag; the next one's receive is posted.
Control IpcTransport::next_control(InChannel& ch, size_t floats, int tag) {
  wait_until(
      [&] {
        int done = 0;
        PT_MPI_CHECK(MPI_Test(&ch.next_req, &done, MPI_STATUS_IGNORE));
        if (!done) progress();
        return done != 0;
      },
      [&] {
        return "a stage-boundary tensor (" + std::to_string(floats) + " floats, tag " + std::to_string(tag) +
               ") from " + who(ch.peer);
      });
  const Control c = ch.next;
  PT_MPI_CHECK(MPI_Irecv(&ch.next, sizeof(Control), MPI_BYTE, ch.peer, kControlTag, comm_, &ch.next_req));
  PT_CHECK_MSG(c.total == int64_t(floats) && c.tag == tag,
               "the ipc transport received a message of " + std::to_string(c.total) + " floats with tag " +
                   std::to_string(c.tag) + " from " + who(ch.peer) + " where it expected " + std::to_string(floats) +
                   " floats with tag " + std::to_string(tag) + ": messages of a channel must be received in the "
                   "order they were sent (pipeline/lower.h, FIFO channels)");
  PT_CHECK_MSG(c.slot >= 0 && c.slot < slots_ && c.floats >= 0 && size_t(c.floats) <= slot_floats_,
               "bad ipc control message from " + who(ch.peer));
  return c;
}

void* IpcTransport::recv(const BufferRef& buf, int peer, int tag) {
  InChannel& ch = in(peer);
  memory_->wait(buf.ready);  // the destination's previous reader is done
  size_t at = 0;
  do {
    const Control c = next_control(ch, buf.count, tag);
    memory_->wait(ch.filled[size_t(c.slot)]);  // the sender's copy into the slot is done
    memory_->copy(buf.data + at, ch.slots[size_t(c.slot)], size_t(c.floats));
    memory_->record(ch.drained[size_t(c.slot)]);
    Outgoing o;
    o.credit = int(c.slot);
    post(peer, kCreditTag, std::move(o));
    at += size_t(c.floats);
  } while (at < buf.count);
  if (!memory_->is_host(buf.data)) return memory_->mark();
  memory_->synchronize();
  return nullptr;
}

// Every queued piece went out, every slot came back, every message left.
bool IpcTransport::sends_done() {
  progress();
  for (const auto& [peer, ch] : out_)
    if (!ch.queue.empty() || int(ch.free.size()) != slots_) return false;
  return outgoing_.empty();
}

void IpcTransport::wait_sends() {
  wait_until([&] { return sends_done(); }, [&] {
    std::string busy;
    for (const auto& [peer, ch] : out_)
      if (!ch.queue.empty() || int(ch.free.size()) != slots_) busy += (busy.empty() ? "" : ", ") + who(peer);
    return "the ipc transport's sends to " + (busy.empty() ? std::string("its peers") : busy) +
           " (slots handed back as the receiver reads them)";
  });
  memory_->synchronize();
}

IpcTransport::~IpcTransport() {
  bool opened = true;  // setup finished: the sends can be completed
  for (auto& [peer, ch] : out_) opened = opened && ch.credit_req != MPI_REQUEST_NULL;
  if (opened) wait_sends();
  if (hook_ >= 0) remove_poll_hook(hook_);
  memory_->synchronize();
  auto cancel = [](MPI_Request* r) {
    if (*r == MPI_REQUEST_NULL) return;
    MPI_Cancel(r);
    MPI_Wait(r, MPI_STATUS_IGNORE);
  };
  // What this rank imported goes first; what it exported only once every peer has
  // dropped its imports (a barrier): an import must not outlive its export.
  for (auto& [peer, ch] : out_) {
    cancel(&ch.credit_req);
    for (float* p : ch.slots)
      if (p != nullptr) memory_->close_buffer(p, slot_floats_);
    for (void* f : ch.drained) memory_->destroy_fence(f);
  }
  for (auto& [peer, ch] : in_) {
    cancel(&ch.next_req);
    for (void* f : ch.filled) memory_->destroy_fence(f);
  }
  MPI_Request barrier;
  PT_MPI_CHECK(MPI_Ibarrier(comm_, &barrier));
  wait_request(&barrier, nullptr, [&] { return "the other pipeline ranks closing the ipc transport"; });
  for (auto& [peer, ch] : out_)
    for (void* f : ch.filled) memory_->destroy_fence(f);
  for (auto& [peer, ch] : in_) {
    for (float* p : ch.slots) memory_->free_buffer(p, slot_floats_);
    for (void* f : ch.drained) memory_->destroy_fence(f);
  }
  for (Outgoing& o : outgoing_) MPI_Wait(&o.req, MPI_STATUS_IGNORE);
  MPI_Comm_free(&comm_);
}

}  // namespace

std::unique_ptr<Transport> make_ipc_transport(MPI_Comm comm, const std::string& memory, int device,
                                              const std::vector<std::pair<int, int>>& channels, size_t slot_floats,
                                              int slots, Status* status) {
  Status mine;
  std::unique_ptr<IpcMemory> mem = memory == "cuda" ? make_cuda_ipc_memory(device, &mine) : make_shm_ipc_memory();
  *status = agree_status(comm, mine, "ipc transport", "could not use their GPU");
  if (!status->is_ok()) return nullptr;
  return make_ipc_transport_over(comm, std::move(mem), channels, slot_floats, slots, status);
}

std::unique_ptr<Transport> make_ipc_transport_over(MPI_Comm comm, std::unique_ptr<IpcMemory> memory,
                                                   const std::vector<std::pair<int, int>>& channels,
                                                   size_t slot_floats, int slots, Status* status) {
  PT_CHECK(slot_floats > 0 && slots > 0 && memory != nullptr);
  int size = 1;
  PT_MPI_CHECK(MPI_Comm_size(comm, &size));
  auto t = std::make_unique<IpcTransport>(comm, std::move(memory), slot_floats, slots);
  *status = t->setup(channels_or_all(channels, size));
  return status->is_ok() ? std::move(t) : nullptr;
}

}  // namespace pt
