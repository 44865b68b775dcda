// Every message payload in one list, for what must see all of them: the schema test (each
// row has exactly one payload, and the payload's row is the schema's) and the messages fuzz
// target. Only tests include it: the shared layer knows the schema, never the programs' folders
// where the payloads are declared (their api.hpp).
#pragma once

#include <tuple>

#include "common/ipc/messages.hpp"
#include "control/api.hpp"
#include "lookup/api.hpp"
#include "mda/api.hpp"
#include "mta/api.hpp"
#include "queue/api.hpp"
#include "smtp/api.hpp"
#include "smtpd/api.hpp"

namespace postern::msg {

using AllMessages = std::tuple<
    Start, Ready, PeerChannel, PeerHello, PeerFault, StatusRequest, StatusReply, SetVerbose,
    smtp::Settings, queue::Settings, ListenerAdd, ListenerRemove, ControlSocket, CtlShowStatus,
    CtlSetVerbose, CtlStop, CtlStatus, CtlResult, lookup::Settings, RcptCheck, RcptVerdict,
    MessageOpen, MessageOpened, MessageRecipients, MessageCommit, MessageResult, MessageAbort,
    smtp::TlsSettings, TableFile, AuthCheck, AuthVerdict, CtlShowQueue, CtlShowMessage, CtlText,
    mda::Settings, DeliverLocal, DeliveryReport, CtlSchedule, CtlRemove, CtlPause, ResolveLocal,
    LocalRoutes, HelperRefused, HelperDeliver, HelperResult, ClientCheck, ClientVerdict, MxQuery,
    MxAnswer, CtlShowMx, CtlUpdateTable, TableLoaded, CtlShowStats, SessionOpen, SessionClose,
    RelayCheck, RelayVerdict, mta::Settings, DeliverRemote, SenderCheck, SenderVerdict,
    CtlShowRelays, mta::CaFile, CtlReload, MetricsSocket, OfflineMessage, OfflineResult,
    PublicControlSocket, ForwardOpen, ForwardFile>;

}  // namespace postern::msg
