// smtpd-mda, local delivery: takes a message and its local recipients from the queue and
// delivers each into its Maildir, answering with one result per recipient. Never runs as
// root; deliveries as a system user will go through a helper the parent spawns.
#include <sys/time.h>
#include <unistd.h>

#include <ctime>

#include <map>
#include <optional>
#include <string>

#include "common/child.hpp"
#include "common/log.hpp"
#include "mda/lmtp.hpp"
#include "mda/maildir.hpp"
#include "mda/mbox.hpp"

namespace postern::mda {
namespace {

class MdaProcess {
 public:
  explicit MdaProcess(ChildRuntime& runtime) : runtime_(runtime) {
    auto& d = runtime_.dispatcher();
    d.on<msg::MdaConfig>([this](msg::Incoming&, msg::MdaConfig&& m) {
      hostname_ = m.hostname;
      domains_.clear();
      for (auto& domain : m.domains) domains_[domain.name] = domain;
      first_domain_ = m.domains.empty() ? "" : m.domains.front().name;
    });
    d.on<msg::DeliverLocal>([this](msg::Incoming& in, msg::DeliverLocal&& m) { deliver(in, m); });
    runtime_.counters()["delivered"] = 0;
    runtime_.counters()["failed"] = 0;
  }

 private:
  void deliver(msg::Incoming& in, const msg::DeliverLocal& job) {
    msg::DeliveryReport report{.id = job.id, .results = {}};
    // Recipients of an LMTP domain go in one transaction; Maildir deliveries share their
    // flushes (publish_maildirs); mbox deliveries go one by one.
    std::map<std::string, std::vector<msg::LocalRecipient>> by_lmtp;
    std::vector<StagedMaildir> staged;
    std::vector<msg::DeliveryResult> staged_results;
    for (const msg::LocalRecipient& rcpt : job.recipients) {
      auto it = domains_.find(domain_of(rcpt.address));
      if (it != domains_.end() && !it->second.lmtp.empty()) {
        by_lmtp[it->second.lmtp].push_back(rcpt);
        continue;
      }
      std::optional<StagedMaildir> maildir;
      msg::DeliveryResult result = start_one(job, rcpt, in.fd.get(), maildir);
      if (maildir) {
        staged.push_back(std::move(*maildir));
        staged_results.push_back(std::move(result));
      } else {
        report.results.push_back(std::move(result));
      }
    }
    const std::vector<Status> published = publish_maildirs(staged);
    for (size_t i = 0; i < staged_results.size(); ++i) {
      msg::DeliveryResult& r = staged_results[i];
      if (published[i].ok()) {
        r.outcome = msg::DeliveryOutcome::delivered;
        r.dsn = "2.0.0";
        r.detail = "delivered to maildir";
      } else {
        r.detail = published[i].error().message;
      }
      report.results.push_back(std::move(r));
    }
    for (const auto& [target, rcpts] : by_lmtp) {
      for (auto& r : deliver_lmtp(target, hostname_, job.sender, rcpts, in.fd.get()))
        report.results.push_back(std::move(r));
    }
    for (const auto& r : report.results)
      ++runtime_.counters()[r.outcome == msg::DeliveryOutcome::delivered ? "delivered" : "failed"];
    ipc::Channel* queue = runtime_.peer(Role::queue);
    if (queue == nullptr || !msg::send(*queue, report, in.request_id))
      log::warn("%s: cannot report deliveries to the queue", job.id.c_str());
  }

  // Delivers to an mbox at once, or stages a Maildir delivery (then `staged` is set and the
  // result is only provisional), or says why neither is possible.
  msg::DeliveryResult start_one(const msg::DeliverLocal& job, const msg::LocalRecipient& rcpt,
                                int message_fd, std::optional<StagedMaildir>& staged) {
    msg::DeliveryResult result{.index = rcpt.index,
                               .outcome = msg::DeliveryOutcome::temporary_failure,
                               .dsn = "4.3.0",
                               .detail = ""};
    const size_t at = rcpt.address.rfind('@');
    const std::string local = rcpt.address.substr(0, at);
    const std::string domain = domain_of(rcpt.address);
    auto it = domains_.find(domain);
    const bool to_mbox = it != domains_.end() && !it->second.mbox.empty();
    if (it == domains_.end() || (it->second.maildir.empty() && !to_mbox)) {
      result.detail = "no mailbox configured for domain " + domain;
      return result;
    }
    Result<std::string> mailbox =
        maildir_for(to_mbox ? it->second.mbox : it->second.maildir, local);
    if (!mailbox.ok()) {
      result.outcome = msg::DeliveryOutcome::permanent_failure;
      result.dsn = "5.1.3";
      result.detail = mailbox.error().message;
      return result;
    }
    const std::string header =
        "Return-Path: <" + job.sender + ">\r\nDelivered-To: " + rcpt.address + "\r\n";
    if (!to_mbox) {
      Result<StagedMaildir> s = stage_maildir(mailbox.value(), header, message_fd, unique_name());
      if (!s.ok()) {
        result.detail = s.error().message;
        return result;
      }
      staged = std::move(s).value();
      return result;
    }
    const Status delivered =
        deliver_to_mbox(mailbox.value(), job.sender, header, message_fd, time(nullptr));
    if (!delivered.ok()) {
      result.detail = delivered.error().message;
      return result;
    }
    result.outcome = msg::DeliveryOutcome::delivered;
    result.dsn = "2.0.0";
    result.detail = "delivered to mbox";
    return result;
  }

  // <postmaster> without a domain belongs to the first local domain.
  std::string domain_of(const std::string& address) const {
    const size_t at = address.rfind('@');
    return at == std::string::npos ? first_domain_ : address.substr(at + 1);
  }

  // time.M<usec>P<pid>Q<n>.host (the Maildir spec's modern unique name).
  std::string unique_name() {
    timeval tv{};
    gettimeofday(&tv, nullptr);
    return std::to_string(tv.tv_sec) + ".M" + std::to_string(tv.tv_usec) + "P" +
           std::to_string(getpid()) + "Q" + std::to_string(++deliveries_) + "." + hostname_;
  }

  ChildRuntime& runtime_;
  std::string hostname_ = "localhost";
  std::map<std::string, msg::MdaDomain> domains_;
  std::string first_domain_;
  uint64_t deliveries_ = 0;
};

}  // namespace
}  // namespace postern::mda

int main(int argc, char** argv) {
  postern::ChildRuntime runtime(postern::Role::mda, argc, argv);
  postern::mda::MdaProcess mda(runtime);
  return runtime.run();
}
