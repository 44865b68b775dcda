// The parent's delivery helpers; see helpers.hpp.
#include "smtpd/helpers.hpp"

#include <fcntl.h>
#include <pwd.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "common/ipc/privsep.hpp"
#include "common/util/ascii.hpp"
#include "common/util/log.hpp"
#include "lookup/api.hpp"
#include "mda/api.hpp"
#include "queue/api.hpp"
#include "smtpd/api.hpp"
#include "smtpd/spawn.hpp"

namespace postern::smtpd {
namespace {

constexpr int kMessageSeals = F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE;

// A memfd sealed against every change, of exactly size bytes: the message and nothing else.
// Another file (the spool file with its commit record, a file of mda's choosing) has no
// seals, or not these.
bool is_sealed_message(int fd, uint64_t size) {
  const int seals = fcntl(fd, F_GET_SEALS);
  struct stat st {};
  return seals >= 0 && (seals & kMessageSeals) == kMessageSeals && fstat(fd, &st) == 0 &&
         S_ISREG(st.st_mode) && static_cast<uint64_t>(st.st_size) == size;
}

std::string describe(const msg::Destination& d) {
  const char* method = d.method == msg::DeliveryMethod::command   ? "command"
                       : d.method == msg::DeliveryMethod::mbox    ? "mbox"
                       : d.method == msg::DeliveryMethod::maildir ? "maildir"
                                                                  : "other";
  return std::string(method) + " " + d.target;
}

}  // namespace

DeliveryHelpers::DeliveryHelpers(event_base* base, Options options, Identities ids,
                                 std::function<ipc::Channel*(Role)> channel_of)
    : base_(base), options_(std::move(options)), ids_(ids), channel_of_(std::move(channel_of)) {}

void DeliveryHelpers::configure(const Config& config, accounts::Policy daemon_accounts) {
  domains_ = config.lookup.domains;
  daemon_accounts_ = std::move(daemon_accounts);
}

std::string DeliveryHelpers::account_name(const Request& r) const {
  return r.message.destination.user.empty() ? "-" : r.message.destination.user;
}

void DeliveryHelpers::refuse(const Request& r, const std::string& why) {
  log::warn("delivery helper for %s refused: %s (recipient %s, %s)", account_name(r).c_str(),
            why.c_str(), r.message.recipient.c_str(), describe(r.message.destination).c_str());
  if (r.mda_generation != mda_generation_) return;
  ipc::Channel* mda = channel_of_(Role::mda);
  if (mda == nullptr ||
      !msg::send(*mda, msg::HelperRefused{.user = account_name(r), .error = why}, r.mda_request))
    log::warn("cannot answer mda");
}

void DeliveryHelpers::request(uint32_t mda_request, msg::HelperDeliver&& m, UniqueFd fd) {
  Request r{.mda_request = mda_request,
            .mda_generation = mda_generation_,
            .message = std::move(m),
            .fd = std::move(fd),
            .uid = 0,
            .gid = 0};
  if (!is_sealed_message(r.fd.get(), r.message.size))
    return refuse(r, "the message is not a sealed memfd of its size");
  if (confirming_.size() + waiting_.size() >= msg::kMaxHelperBacklog)
    return refuse(r, "too many deliveries waiting for a helper");
  ipc::Channel* lookup = channel_of_(Role::lookup);
  const uint32_t id = next_request_++;
  if (lookup == nullptr ||
      !msg::send(*lookup, msg::ResolveLocal{.addresses = {r.message.recipient}}, id))
    return refuse(r, "lookup is unavailable");
  confirming_.emplace(id, std::move(r));
}

void DeliveryHelpers::on_routes(uint32_t request, msg::LocalRoutes&& m) {
  auto it = confirming_.find(request);
  if (it == confirming_.end()) return;
  Request r = std::move(it->second);
  confirming_.erase(it);
  if (m.routes.size() != 1) return refuse(r, "lookup did not answer for the recipient");
  confirmed(std::move(r), m.routes.front());
}

// mda's destination must be one lookup gives for the recipient now, of a kind only a helper
// delivers, and its account must pass the rule.
void DeliveryHelpers::confirmed(Request r, const msg::LocalRoute& route) {
  const msg::Destination& d = r.message.destination;
  if (route.status != msg::RouteStatus::ok)
    return refuse(r, "lookup does not route the recipient: " + route.error);
  if (std::find(route.destinations.begin(), route.destinations.end(), d) ==
      route.destinations.end())
    return refuse(r, "lookup does not route the recipient to this destination");
  const bool file =
      d.method == msg::DeliveryMethod::maildir || d.method == msg::DeliveryMethod::mbox;
  if (!(d.method == msg::DeliveryMethod::command || (file && !d.user.empty())))
    return refuse(r, "not a delivery for a helper");
  if (d.user.empty()) {
    // A command of a virtual domain or an alias: as mda's own user, outside its sandbox.
    r.uid = ids_.virtual_uid;
    r.gid = ids_.virtual_gid;
  } else {
    const size_t at = d.mailbox.rfind('@');
    const std::string domain =
        ascii::lower(at == std::string::npos ? std::string() : d.mailbox.substr(at + 1));
    auto entry = std::find_if(domains_.begin(), domains_.end(),
                              [&](const lookup::Domain& c) { return c.name == domain; });
    if (entry == domains_.end() || !entry->system_users)
      return refuse(r, "the mailbox is not in a domain of system users");
    const passwd* pw = getpwnam(d.user.c_str());
    if (pw == nullptr) return refuse(r, "no such system user");
    accounts::Policy policy = daemon_accounts_;
    policy.min_uid = entry->min_uid;
    if (auto why =
            accounts::refusal({.name = d.user, .uid = pw->pw_uid, .gid = pw->pw_gid}, policy))
      return refuse(r, *why);
    r.uid = pw->pw_uid;
    r.gid = pw->pw_gid;
    if (!ids_.privileged && r.uid != getuid())
      return refuse(r, "smtpd is not running as root, so it cannot deliver as another user");
  }
  waiting_.push_back(std::move(r));
  start_waiting();
}

void DeliveryHelpers::start_waiting() {
  while (!waiting_.empty() && running_.size() < msg::kMaxHelpers) {
    Request r = std::move(waiting_.front());
    waiting_.pop_front();
    start(std::move(r));
  }
}

// The helper gets a channel to the parent on kParentChannelFd, /dev/null on 0 and 1 (and on 2
// unless -d: then it logs to the parent's stderr as every child does), and nothing else.
void DeliveryHelpers::start(Request r) {
  UniqueFd ours;
  UniqueFd theirs;
  UniqueFd dev_null(open("/dev/null", O_RDWR | O_CLOEXEC));
  if (!dev_null || !ipc::make_socketpair(ours, theirs))
    return refuse(r, std::string("cannot prepare a helper: ") + std::strerror(errno));
  const std::string path = options_.exec_dir + "/" + std::string(kHelperExecutable);
  std::vector<std::string> arguments = program_arguments(kHelperExecutable, options_.foreground);
  std::vector<char*> argv = argv_of(arguments);
  const pid_t pid = fork();
  if (pid < 0) return refuse(r, std::string("fork: ") + std::strerror(errno));
  if (pid == 0) {
    // The parent is single-threaded: the user switch may run here, before exec.
    if (dup2(dev_null.get(), STDIN_FILENO) < 0 || dup2(dev_null.get(), STDOUT_FILENO) < 0 ||
        (!options_.foreground && dup2(dev_null.get(), STDERR_FILENO) < 0))
      _exit(126);
    keep_only_channel(theirs.get());
    // Real gid: the overflow gid, which owns nothing and which no recipient has (the account
    // rule refuses it), so the helper starts non-dumpable and the window before it resets
    // its real gid holds no group worth having.
    const Status dropped = ids_.privileged
                               ? privsep::become_helper_user(r.uid, r.gid, accounts::kOverflowId)
                               : privsep::restrict_unprivileged();
    if (!dropped.ok()) {
      log::error("delivery helper: %s", dropped.error().message.c_str());
      _exit(126);
    }
    execv(path.c_str(), argv.data());
    log::error("cannot exec %s: %s", path.c_str(), std::strerror(errno));
    _exit(127);
  }
  theirs.reset();
  log::debug("delivery helper for %s (%s): pid %d", account_name(r).c_str(),
             r.message.recipient.c_str(), static_cast<int>(pid));
  Running& run = running_[pid];
  run.channel = std::make_unique<ipc::Channel>(
      base_, std::move(ours), "delivery helper " + std::to_string(pid),
      ipc::Channel::Handlers{
          .on_frame = [this, pid](ipc::Frame&& f) { on_helper_frame(pid, std::move(f)); },
          .on_close =
              [this, pid](ipc::CloseReason, std::string_view) {
                auto it = running_.find(pid);
                if (it == running_.end()) return;
                it->second.channel_done = true;
                finish_if_over(pid);
              },
          .on_drain = nullptr,
      });
  run.watchdog = std::make_unique<Timer>(base_, [pid] { kill(pid, SIGKILL); });
  run.watchdog->arm(std::chrono::seconds(r.message.timeout_seconds + kHelperGraceSeconds));
  if (!msg::send(*run.channel, r.message, 0, std::move(r.fd))) kill(pid, SIGKILL);
  run.request = std::move(r);
}

// One HelperResult and nothing else; anything else and the helper is killed (the recipient
// is deferred when it is reaped).
void DeliveryHelpers::on_helper_frame(pid_t pid, ipc::Frame&& frame) {
  auto it = running_.find(pid);
  if (it == running_.end()) return;
  Running& run = it->second;
  std::optional<msg::HelperResult> result;
  if (!run.answered && frame.type == static_cast<uint16_t>(msg::Type::helper_result) &&
      !frame.fd.valid())
    result = msg::decode_payload<msg::HelperResult>(frame.payload);
  if (!result) {
    log::warn("delivery helper %d sent a bad message; killing it", static_cast<int>(pid));
    kill(pid, SIGKILL);
    return;
  }
  run.answered = true;
  answer(run.request, *result);
  run.channel.reset();
  run.channel_done = true;
  finish_if_over(pid);
}

void DeliveryHelpers::answer(const Request& r, const msg::HelperResult& result) {
  if (r.mda_generation != mda_generation_) return;
  ipc::Channel* mda = channel_of_(Role::mda);
  if (mda == nullptr || !msg::send(*mda, result, r.mda_request))
    log::warn("cannot hand mda a delivery helper's result");
}

bool DeliveryHelpers::reaped(pid_t pid, int wait_status) {
  auto it = running_.find(pid);
  if (it == running_.end()) return false;
  it->second.wait_status = wait_status;
  finish_if_over(pid);
  return true;
}

// A helper that exited without answering defers its recipient.
void DeliveryHelpers::finish_if_over(pid_t pid) {
  auto it = running_.find(pid);
  if (it == running_.end() || !it->second.wait_status || !it->second.channel_done) return;
  Running run = std::move(it->second);
  running_.erase(it);
  if (!run.answered) {
    const std::string why = "delivery helper " + describe_wait_status(*run.wait_status);
    log::warn("%s (recipient %s)", why.c_str(), run.request.message.recipient.c_str());
    answer(run.request,
           {.outcome = msg::DeliveryOutcome::temporary_failure, .dsn = "4.3.0", .detail = why});
  }
  start_waiting();
}

void DeliveryHelpers::peer_lost(Role role) {
  if (role == Role::lookup) {
    auto waiting = std::move(confirming_);
    confirming_.clear();
    for (auto& [id, r] : waiting) refuse(r, "lookup went away");
  } else if (role == Role::mda) {
    ++mda_generation_;
    confirming_.clear();
    waiting_.clear();
  }
}

}  // namespace postern::smtpd
