// How the scheduler hands a message's recipients to mda and mta: in frames that fit the IPC
// bound, a remote message's frames as one job; see scheduler.hpp.
#include <fcntl.h>

#include <algorithm>
#include <span>

#include "mda/api.hpp"
#include "mta/api.hpp"
#include "queue/scheduler.hpp"

namespace postern::queue {
namespace {

// A job's size on the wire: the frame's fixed part and each recipient's (lengths, index,
// flags), counted generously; a job stays within kLocalJobBytes, well inside a frame.
constexpr size_t kRemoteJobOverhead = 256;
constexpr size_t kRemoteRecipientOverhead = 32;
// Frames of one remote job at most (DeliverRemote::more): enough for every recipient of all but
// the biggest messages (some 15,000 short addresses), well within what a channel queues (they
// go all together or not at all). A message with more goes as several jobs.
constexpr size_t kFramesPerRemoteJob = 16;

}  // namespace

// Up to kLocalRecipientsPerJob recipients a frame, as long as they fit: a thousand long
// addresses do not, and a frame the channel refuses for its size would never go. send(first,
// end) sends todo[first, end) and says whether it went; the rest stay pending.
namespace {
template <typename Size, typename Send>
bool in_batches(const std::vector<uint32_t>& todo, size_t fixed, Size size_of, Send send) {
  for (size_t i = 0, end = 0; i < todo.size(); i = end) {
    size_t bytes = fixed;
    for (end = i; end < todo.size() && end - i < msg::kLocalRecipientsPerJob; ++end) {
      const size_t more = size_of(todo[end]);
      if (end > i && bytes + more > msg::kLocalJobBytes) break;
      bytes += more;
    }
    if (!send(i, end)) return false;
  }
  return true;
}
}  // namespace

// A batch is in the peer's hands: counted as tried (recorded in the spool when it settles),
// and the only recipients whose results the flight accepts.
void Scheduler::handed_out(Envelope& e, Flight& flight, std::span<const uint32_t> batch) {
  ++flight.batches;
  for (uint32_t index : batch) {
    flight.out.insert(index);
    uint32_t& attempts = e.recipients[index].attempts;
    if (attempts < UINT32_MAX) ++attempts;
  }
}

bool Scheduler::send_local(Envelope& e, const std::vector<uint32_t>& todo, int data, Flight& flight,
                           ipc::Channel& mda) {
  auto size_of = [&](uint32_t index) {
    return msg::kLocalRecipientOverhead + e.recipients[index].address.size();
  };
  return in_batches(
      todo, msg::kLocalJobOverhead + e.sender.size(), size_of, [&](size_t i, size_t end) {
        msg::DeliverLocal job{.id = e.id, .size = e.size, .sender = e.sender, .recipients = {}};
        for (size_t k = i; k < end; ++k)
          job.recipients.push_back({todo[k], e.recipients[todo[k]].address});
        if (!msg::send(mda, job, flight.serial, UniqueFd(fcntl(data, F_DUPFD_CLOEXEC, 0))))
          return false;
        handed_out(e, flight, std::span(todo).subspan(i, end - i));
        return true;
      });
}

// The same for mta, with what its MAIL and RCPT commands need: the message's facts for MAIL
// (sender, SIZE, BODY, SMTPUTF8, RET, ENVID) and nothing of how it arrived. A job's frames
// (DeliverRemote::more) go all together or not at all, and count as one batch.
bool Scheduler::send_remote(Envelope& e, const std::vector<uint32_t>& todo, int data,
                            Flight& flight, ipc::Channel& mta) {
  Envelope facts;
  facts.id = e.id;
  facts.arrival = e.arrival;
  facts.sender = e.sender;
  facts.smtputf8 = e.smtputf8;
  facts.body_8bit = e.body_8bit;
  facts.ret = e.ret;
  facts.envid = e.envid;
  facts.size = e.size;
  auto size_of = [&](uint32_t index) {
    const Recipient& r = e.recipients[index];
    return kRemoteRecipientOverhead + r.address.size() + r.orcpt_type.size() + r.orcpt.size();
  };
  const size_t fixed = kRemoteJobOverhead + e.sender.size() + e.envid.size();
  // The frames, cut into jobs of at most kFramesPerRemoteJob.
  struct Frame {
    std::vector<uint8_t> payload;
    size_t first = 0;  // its recipients: todo[first, end)
    size_t end = 0;
  };
  std::vector<Frame> frames;
  in_batches(todo, fixed, size_of, [&](size_t i, size_t end) {
    frames.push_back({{}, i, end});
    return true;
  });
  for (size_t job_start = 0; job_start < frames.size(); job_start += kFramesPerRemoteJob) {
    const size_t job_end = std::min(frames.size(), job_start + kFramesPerRemoteJob);
    std::vector<size_t> sizes;
    for (size_t f = job_start; f < job_end; ++f) {
      msg::DeliverRemote job{.envelope = facts, .recipients = {}, .more = f + 1 < job_end};
      for (size_t k = frames[f].first; k < frames[f].end; ++k) {
        const Recipient& r = e.recipients[todo[k]];
        job.recipients.push_back({.index = todo[k],
                                  .address = r.address,
                                  .orcpt_type = r.orcpt_type,
                                  .orcpt = r.orcpt,
                                  .notify = r.notify});
      }
      frames[f].payload = msg::encode_payload(job);
      sizes.push_back(frames[f].payload.size());
    }
    if (!mta.room_for(sizes)) return false;
    for (size_t f = job_start; f < job_end; ++f)
      if (!mta.send(static_cast<uint16_t>(msg::DeliverRemote::kInfo.type), flight.serial,
                    frames[f].payload, UniqueFd(fcntl(data, F_DUPFD_CLOEXEC, 0))))
        return false;  // (only when the channel closed: mta's successor is handed it again)
    const size_t first = frames[job_start].first;
    handed_out(e, flight, std::span(todo).subspan(first, frames[job_end - 1].end - first));
  }
  return true;
}

}  // namespace postern::queue
