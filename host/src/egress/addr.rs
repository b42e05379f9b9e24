//! Which IP addresses a mapper may reach.
//!
//! Checked after name resolution, on the addresses we actually connect to, so
//! a public name that resolves to `127.0.0.1` is refused like the literal.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// How an address is treated by the egress policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressClass {
    /// A globally routable address: always allowed.
    Public,
    /// Loopback, private, link-local, shared (CGNAT), unspecified, multicast,
    /// reserved or documentation space: allowed only when the connection
    /// allows private networks.
    Private,
    /// A cloud instance-metadata endpoint: never allowed, since reading it
    /// hands out the host's cloud credentials.
    Metadata,
}

/// Instance-metadata endpoints of the common clouds (AWS, GCP, Azure, OpenStack
/// use 169.254.169.254; Alibaba 100.100.100.200; AWS's IPv6 endpoint fd00:ec2::254).
const METADATA_V4: [Ipv4Addr; 2] = [
    Ipv4Addr::new(169, 254, 169, 254),
    Ipv4Addr::new(100, 100, 100, 200),
];
const METADATA_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254);

/// Classifies `ip`. IPv4 addresses embedded in IPv6 (mapped `::ffff:a.b.c.d`,
/// compatible `::a.b.c.d`, NAT64 `64:ff9b::/96`, 6to4 `2002::/16`) are judged by
/// the IPv4 address inside, so they cannot smuggle a private target.
pub fn classify(ip: IpAddr) -> AddressClass {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(ip: Ipv4Addr) -> AddressClass {
    if METADATA_V4.contains(&ip) {
        return AddressClass::Metadata;
    }
    let [a, b, c, _] = ip.octets();
    let non_public = ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0 // "this network" (RFC 791)
        || (a == 100 && (64..128).contains(&b)) // shared address space (RFC 6598)
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments (RFC 6890)
        || (a == 198 && (b == 18 || b == 19)) // benchmarking (RFC 2544)
        || a >= 240; // reserved (RFC 1112)
    if non_public {
        AddressClass::Private
    } else {
        AddressClass::Public
    }
}

fn classify_v6(ip: Ipv6Addr) -> AddressClass {
    if ip == METADATA_V6 {
        return AddressClass::Metadata;
    }
    if let Some(v4) = embedded_v4(ip) {
        return classify_v4(v4);
    }
    let first = ip.segments()[0];
    let non_public = ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || (first & 0xfe00) == 0xfc00 // unique local (RFC 4193)
        || (first & 0xffc0) == 0xfe80 // link-local (RFC 4291)
        || (first & 0xffc0) == 0xfec0 // site-local, deprecated (RFC 3879)
        || (first == 0x2001 && ip.segments()[1] == 0x0db8) // documentation (RFC 3849)
        || first == 0x0100; // discard-only (RFC 6666)
    if non_public {
        AddressClass::Private
    } else {
        AddressClass::Public
    }
}

/// The IPv4 address carried inside an IPv6 address, for the forms that route
/// to that IPv4 address.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let low = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    if let Some(v4) = ip.to_ipv4_mapped() {
        return Some(v4);
    }
    // IPv4-compatible (deprecated, RFC 4291 §2.5.5.1), but not :: or ::1.
    if s[..6].iter().all(|&x| x == 0) && !(s[6] == 0 && s[7] <= 1) {
        return Some(low);
    }
    // NAT64 well-known prefix (RFC 6052).
    if s[0] == 0x0064 && s[1] == 0xff9b && s[2..6].iter().all(|&x| x == 0) {
        return Some(low);
    }
    // 6to4 (RFC 3056): 2002:AABB:CCDD::/48 carries AA.BB.CC.DD.
    if s[0] == 0x2002 {
        return Some(Ipv4Addr::new(
            (s[1] >> 8) as u8,
            s[1] as u8,
            (s[2] >> 8) as u8,
            s[2] as u8,
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(s: &str) -> AddressClass {
        classify(s.parse().expect("test address parses"))
    }

    #[test]
    fn public_addresses_are_public() {
        for ip in ["93.184.216.34", "8.8.8.8", "2606:4700::1111", "1.1.1.1"] {
            assert_eq!(class(ip), AddressClass::Public, "{ip}");
        }
    }

    #[test]
    fn loopback_private_and_link_local_are_private() {
        for ip in [
            "127.0.0.1",
            "127.9.9.9",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.1.1",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "::",
            "fe80::1",
            "fd12:3456::1",
            "2001:db8::1",
        ] {
            assert_eq!(class(ip), AddressClass::Private, "{ip}");
        }
    }

    #[test]
    fn metadata_endpoints_are_metadata() {
        for ip in ["169.254.169.254", "100.100.100.200", "fd00:ec2::254"] {
            assert_eq!(class(ip), AddressClass::Metadata, "{ip}");
        }
    }

    #[test]
    fn ipv4_embedded_in_ipv6_is_judged_by_the_ipv4_address() {
        assert_eq!(class("::ffff:127.0.0.1"), AddressClass::Private);
        assert_eq!(class("::ffff:169.254.169.254"), AddressClass::Metadata);
        assert_eq!(class("::127.0.0.1"), AddressClass::Private);
        assert_eq!(class("64:ff9b::10.0.0.1"), AddressClass::Private);
        assert_eq!(class("2002:7f00:1::"), AddressClass::Private);
        assert_eq!(class("::ffff:8.8.8.8"), AddressClass::Public);
    }
}
