// The completion token of every awaited operation here: errors come back as
// values (a tuple with the error_code first), never as exceptions, so nothing
// throws across a coroutine boundary (STYLE.md, "Errors").
#pragma once

#include <asio/experimental/as_tuple.hpp>
#include <asio/use_awaitable.hpp>

namespace imapscope::transport {

inline constexpr auto kNoThrow = asio::experimental::as_tuple(asio::use_awaitable);

}  // namespace imapscope::transport
