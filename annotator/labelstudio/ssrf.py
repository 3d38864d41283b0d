"""What our Label Studio may connect to (webhooks, ML backends, export downloads): not private, link-local,
reserved or loopback addresses, except 127.0.0.1, where our ML backend listens.

Label Studio 1.23 has no allow-list: ``validate_ip`` refuses an address in its default banned subnets
(``USE_DEFAULT_BANNED_SUBNETS``) or in ``USER_ADDITIONAL_BANNED_SUBNETS``. We turn the default list off and
pass the same list with 127.0.0.0/8 split around 127.0.0.1. ``localhost`` resolves to ::1 too, which
stays banned: connect the backend as ``http://127.0.0.1:PORT``.
"""

from __future__ import annotations

import ipaddress

ALLOWED_LOCAL_ADDRESS = "127.0.0.1"
# Label Studio 1.23's default banned subnets, copied from label_studio/core/utils/io.py (validate_ip)
LS_DEFAULT_BANNED = (
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12", "192.0.0.0/24",
    "192.0.2.0/24", "192.88.99.0/24", "192.168.0.0/16", "198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24",
    "224.0.0.0/4", "233.252.0.0/24", "240.0.0.0/4", "255.255.255.255/32", "::/128", "::1/128", "::ffff:0:0/96",
    "::ffff:0:0:0/96", "64:ff9b::/96", "64:ff9b:1::/48", "100::/64", "2001:0000::/32", "2001:20::/28",
    "2001:db8::/32", "2002::/16", "fc00::/7", "fe80::/10", "ff00::/8",
)


def banned_subnets(allowed: str = ALLOWED_LOCAL_ADDRESS) -> list[str]:
    """Label Studio's default banned subnets with only ``allowed`` (one address) let through."""
    let_through = ipaddress.ip_network(allowed)
    out: list[str] = []
    for subnet in map(ipaddress.ip_network, LS_DEFAULT_BANNED):
        if subnet.version == let_through.version and subnet.supernet_of(let_through):
            out.extend(str(n) for n in sorted(subnet.address_exclude(let_through)))
        else:
            out.append(str(subnet))
    return out
