//! Which IP addresses a mapper (or the broker, for a connection) may reach.
//!
//! Checked after name resolution, on the addresses we actually connect to, so
//! a public name that resolves to `127.0.0.1` is refused like the literal.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// How an address is treated by the egress policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressClass {
    /// A globally routable address: always allowed.
    Public,
    /// Loopback, private, shared (CGNAT), unspecified, multicast, reserved
    /// or documentation space: allowed only when the connection allows
    /// private networks.
    Private,
    /// A cloud instance-metadata or host-agent endpoint: never allowed, since
    /// reading it hands out the host's cloud credentials.
    Metadata,
}

/// Cloud metadata networks, IPv4, as (network, prefix length). Refused
/// always, whatever a connection allows.
const METADATA_V4: [(Ipv4Addr, u8); 4] = [
    // All of link-local (RFC 3927): 169.254.169.254 is the metadata service
    // of AWS, GCP, Azure, OpenStack, Oracle, DigitalOcean, Hetzner, Linode
    // and others; AWS ECS task metadata is 169.254.170.2, EKS Pod Identity
    // 169.254.170.23, Tencent 169.254.0.23, Scaleway 169.254.42.42. Nothing
    // a login needs lives in link-local space.
    (Ipv4Addr::new(169, 254, 0, 0), 16),
    // Azure's WireServer (host agent: extension config, certificates).
    (Ipv4Addr::new(168, 63, 129, 16), 32),
    // Alibaba Cloud's metadata service.
    (Ipv4Addr::new(100, 100, 100, 200), 32),
    // Oracle Cloud's legacy metadata address.
    (Ipv4Addr::new(192, 0, 0, 192), 32),
];

/// Cloud metadata networks, IPv6, as (network, prefix length).
const METADATA_V6: [(Ipv6Addr, u8); 4] = [
    // AWS (Nitro): IMDS fd00:ec2::254, DNS ::253, EKS Pod Identity ::23.
    (Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0), 32),
    // GCP's metadata server for IPv6-only instances.
    (Ipv6Addr::new(0xfd20, 0x00ce, 0, 0, 0, 0, 0, 0x0254), 128),
    // Akamai (Linode) metadata service.
    (Ipv6Addr::new(0xfd00, 0xa9fe, 0xa9fe, 0, 0, 0, 0, 1), 128),
    // Scaleway's metadata service.
    (Ipv6Addr::new(0xfd00, 0x0042, 0, 0, 0, 0, 0, 0x0042), 128),
];

/// Classifies `ip`. IPv4 addresses embedded in IPv6 (mapped `::ffff:a.b.c.d`,
/// translated `::ffff:0:a.b.c.d`, compatible `::a.b.c.d`, NAT64
/// `64:ff9b::/96` and `64:ff9b:1::/48`, 6to4 `2002::/16`, Teredo
/// `2001::/32`) are judged by the IPv4 address inside, so they cannot
/// smuggle a private or metadata target.
pub fn classify(ip: IpAddr) -> AddressClass {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn in_v4(ip: Ipv4Addr, (net, len): (Ipv4Addr, u8)) -> bool {
    let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
    u32::from(ip) & mask == u32::from(net) & mask
}

fn in_v6(ip: Ipv6Addr, (net, len): (Ipv6Addr, u8)) -> bool {
    let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
    u128::from(ip) & mask == u128::from(net) & mask
}

fn classify_v4(ip: Ipv4Addr) -> AddressClass {
    if METADATA_V4.iter().any(|net| in_v4(ip, *net)) {
        return AddressClass::Metadata;
    }
    let [a, b, c, _] = ip.octets();
    let non_public = ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0 // "this network" (RFC 791)
        || (a == 100 && (64..128).contains(&b)) // shared address space (RFC 6598)
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments (RFC 6890)
        || (a == 192 && b == 88 && c == 99) // 6to4 relay anycast, deprecated (RFC 7526)
        || (a == 198 && (b == 18 || b == 19)) // benchmarking (RFC 2544)
        || a >= 240; // reserved (RFC 1112)
    if non_public {
        AddressClass::Private
    } else {
        AddressClass::Public
    }
}

fn classify_v6(ip: Ipv6Addr) -> AddressClass {
    if METADATA_V6.iter().any(|net| in_v6(ip, *net)) {
        return AddressClass::Metadata;
    }
    if let Some(v4) = embedded_v4(ip) {
        return classify_v4(v4);
    }
    let s = ip.segments();
    // Teredo (RFC 4380): the client's IPv4 address, inverted, in the low 32
    // bits. Nothing a login needs is behind a Teredo relay, so it is never
    // public; a metadata address inside stays metadata.
    if s[0] == 0x2001 && s[1] == 0 {
        return match classify_v4(!low_v4(ip)) {
            AddressClass::Metadata => AddressClass::Metadata,
            _ => AddressClass::Private,
        };
    }
    // NAT64 local-use prefix (RFC 8215): operators embed the IPv4 address at
    // a prefix length of their choosing, so it is never public; the common
    // /96 form of a metadata address stays metadata.
    if s[0] == 0x0064 && s[1] == 0xff9b && s[2] == 0x0001 {
        return match classify_v4(low_v4(ip)) {
            AddressClass::Metadata => AddressClass::Metadata,
            _ => AddressClass::Private,
        };
    }
    let first = s[0];
    let non_public = ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || (first & 0xfe00) == 0xfc00 // unique local (RFC 4193)
        || (first & 0xffc0) == 0xfe80 // link-local (RFC 4291)
        || (first & 0xffc0) == 0xfec0 // site-local, deprecated (RFC 3879)
        || (first == 0x2001 && s[1] == 0x0db8) // documentation (RFC 3849)
        || first == 0x0100; // discard-only (RFC 6666)
    if non_public {
        AddressClass::Private
    } else {
        AddressClass::Public
    }
}

/// The low 32 bits of `ip` as an IPv4 address.
fn low_v4(ip: Ipv6Addr) -> Ipv4Addr {
    Ipv4Addr::from(u128::from(ip) as u32)
}

/// The IPv4 address carried inside an IPv6 address, for the forms that route
/// to that IPv4 address.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let low = low_v4(ip);
    if let Some(v4) = ip.to_ipv4_mapped() {
        return Some(v4);
    }
    // IPv4-translated (SIIT, RFC 2765 §2.1): ::ffff:0:a.b.c.d.
    if s[..4].iter().all(|&x| x == 0) && s[4] == 0xffff && s[5] == 0 {
        return Some(low);
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
            "100.64.0.1",
            "192.88.99.1",
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
        for ip in [
            "169.254.169.254",
            "100.100.100.200",
            "fd00:ec2::254",
            "168.63.129.16",
            "192.0.0.192",
            "fd20:ce::254",
            "fd00:a9fe:a9fe::1",
            "fd00:42::42",
        ] {
            assert_eq!(class(ip), AddressClass::Metadata, "{ip}");
        }
    }

    #[test]
    fn all_of_ipv4_link_local_and_awss_ipv6_range_are_metadata() {
        for ip in [
            "169.254.0.0",
            "169.254.1.1",
            "169.254.170.2",
            "169.254.255.255",
            "fd00:ec2::1",
            "fd00:ec2::23",
            "fd00:ec2:ffff::1",
        ] {
            assert_eq!(class(ip), AddressClass::Metadata, "{ip}");
        }
        // The neighbours are not.
        assert_eq!(class("169.253.255.255"), AddressClass::Public);
        assert_eq!(class("169.255.0.0"), AddressClass::Public);
        assert_eq!(class("168.63.129.17"), AddressClass::Public);
        assert_eq!(class("fd00:ec3::1"), AddressClass::Private);
    }

    #[test]
    fn metadata_addresses_inside_ipv6_forms_stay_metadata() {
        for ip in [
            "::ffff:169.254.169.254",
            "::ffff:168.63.129.16",
            "::ffff:0:169.254.169.254",
            "::169.254.1.1",
            "64:ff9b::169.254.169.254",
            "64:ff9b::100.100.100.200",
            "64:ff9b:1::169.254.169.254",
            "2002:a9fe:a9fe::",
            "2002:a83f:8110::1",
            // Teredo: the client address 169.254.169.254, inverted.
            "2001:0:4136:e378:8000:63bf:5601:5601",
        ] {
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
        assert_eq!(class("::ffff:0:10.0.0.1"), AddressClass::Private);
        assert_eq!(class("64:ff9b:1::8.8.8.8"), AddressClass::Private);
        assert_eq!(
            class("2001:0:4136:e378:8000:63bf:f7f7:f7f7"),
            AddressClass::Private,
            "Teredo is never public"
        );
    }
}
