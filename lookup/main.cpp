// smtpd-lookup, the only window onto DNS and user data (tables, aliases, credentials). Runs as
// _smtpd; answers the other processes' questions asynchronously, by request id. Passwords it
// checks are wiped once checked and never logged.
#include "common/ipc/child.hpp"
#include "lookup/lookup_process.hpp"

int main(int argc, char** argv) {
  postern::ChildRuntime runtime(postern::Role::lookup, argc, argv);
  postern::lookup::LookupProcess lookup(runtime);
  return runtime.run();
}
