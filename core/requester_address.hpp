// Who is asking, for a grant's allowFrom (contract §11): the connection's peer, or, behind a
// trusted load balancer, the address it names in X-Forwarded-For. Pure.
#pragma once

#include <string_view>
#include <vector>

#include "core/address_policy.hpp"

namespace membraned::core {

// `peer` itself unless it lies in `trusted`; then X-Forwarded-For is read from the right (each
// proxy appends the address it saw): the first entry that is not itself a trusted proxy is the
// requester. An entry that is not an address ends the walk there: the peer (or the last trusted
// entry) is the requester, since nothing further left can be believed. `forwarded_for`: every
// X-Forwarded-For field of the request joined with commas (empty: none).
IpAddress requester_address(const IpAddress& peer, std::string_view forwarded_for, const std::vector<Cidr>& trusted);

}  // namespace membraned::core
