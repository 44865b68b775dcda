// smtpd-lookup, the only window onto DNS and user data (tables, aliases, credentials).
// Runs as _smtpd; answers the other processes' questions asynchronously.
#include "common/child.hpp"

int main(int argc, char** argv) {
  postern::ChildRuntime runtime(postern::Role::lookup, argc, argv);
  return runtime.run();
}
