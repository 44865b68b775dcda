// Mail header dates; see date.hpp.
#include "common/mail/date.hpp"

namespace postern {

std::string rfc5322_date(time_t when) {
  tm local{};
  localtime_r(&when, &local);
  char buf[64];
  strftime(buf, sizeof buf, "%a, %d %b %Y %H:%M:%S %z", &local);
  return buf;
}

}  // namespace postern
