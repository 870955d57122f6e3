//! Network: the sandbox has its own loopback and nothing else.

#[allow(unused_imports)]
use super::probe::*;

/// A TCP listener on the host's 127.0.0.1 is unreachable: 127.0.0.1 inside is the
/// sandbox's own loopback, where nothing listens (ECONNREFUSED), and the host listener
/// never sees a connection.
#[test]
fn host_loopback_tcp_is_unreachable() {
    let env = Env::new();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let body = r#"
        port = int(sys.argv[1])
        t('connect_v4', lambda: socket.create_connection(('127.0.0.1', port), timeout=5).close())
        t('connect_v4_other', lambda: socket.create_connection(('127.0.0.2', port), timeout=5).close())
        t('connect_v6', lambda: socket.create_connection(('::1', port), timeout=5).close())
    "#;
    let v = py(&env, &[], body, &[&port]);
    expect(
        &v,
        &[
            ("connect_v4", "ECONNREFUSED"),
            ("connect_v4_other", "ECONNREFUSED"),
            ("connect_v6", "ECONNREFUSED"),
        ],
    );
    let err = listener.accept().map(|_| ()).unwrap_err();
    assert_eq!(
        err.kind(),
        ErrorKind::WouldBlock,
        "the host listener got a connection"
    );
}

/// A UDP socket on the host's 127.0.0.1 receives nothing from the sandbox; inside, the
/// datagram goes to the sandbox's own loopback where no one listens, and the port
/// unreachable that comes back surfaces as ECONNREFUSED.
#[test]
fn host_loopback_udp_is_unreachable() {
    let env = Env::new();
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_nonblocking(true).unwrap();
    let port = sock.local_addr().unwrap().port().to_string();
    let body = r#"
        port = int(sys.argv[1])
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(5)
        s.connect(('127.0.0.1', port))
        t('send', lambda: s.send(b'escape'))
        t('recv', lambda: s.recv(100))
    "#;
    let v = py(&env, &[], body, &[&port]);
    expect(&v, &[("send", "6"), ("recv", "ECONNREFUSED")]);
    let mut buf = [0u8; 64];
    let err = sock.recv_from(&mut buf).map(|_| ()).unwrap_err();
    assert_eq!(
        err.kind(),
        ErrorKind::WouldBlock,
        "the host UDP socket got a datagram"
    );
}

/// An abstract unix socket bound on the host is not found from the sandbox (abstract
/// names belong to the network namespace): ECONNREFUSED for stream and datagram.
#[test]
fn host_abstract_unix_socket_is_unreachable() {
    let env = Env::new();
    let name = marker("abstract");
    let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let listener = UnixListener::bind_addr(&addr).unwrap();
    listener.set_nonblocking(true).unwrap();
    let body = r#"
        name = '\0' + sys.argv[1]
        t('stream', lambda: socket.socket(socket.AF_UNIX, socket.SOCK_STREAM).connect(name))
        t('seqpacket', lambda: socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET).connect(name))
        t('dgram', lambda: socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).sendto(b'x', name))
    "#;
    for opts in [&[][..], ROOT] {
        let v = py(&env, opts, body, &[&name]);
        expect(
            &v,
            &[
                ("stream", "ECONNREFUSED"),
                ("seqpacket", "ECONNREFUSED"),
                ("dgram", "ECONNREFUSED"),
            ],
        );
    }
    let err = listener.accept().map(|_| ()).unwrap_err();
    assert_eq!(
        err.kind(),
        ErrorKind::WouldBlock,
        "the host socket got a connection"
    );
}

/// The only interface is lo; any other address has no route (ENETUNREACH, so no packet
/// leaves); raw and packet sockets need CAP_NET_RAW (EPERM); AF_VSOCK, a way to the
/// hypervisor host, is refused by the seccomp filter (EPERM).
#[test]
fn network_has_only_loopback() {
    let env = Env::new();
    let body = r#"
        devs = [l.split(':')[0].strip() for l in open('/proc/net/dev').read().splitlines()[2:]]
        print('interfaces', devs)
        t('connect_testnet_v4', lambda: socket.create_connection(('192.0.2.1', 80), timeout=5))
        t('connect_testnet_v6', lambda: socket.create_connection(('2001:db8::1', 80), timeout=5))
        t('udp_testnet', lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'x', ('192.0.2.1', 53)))
        t('raw', lambda: socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP))
        t('packet', lambda: socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0))
        t('vsock', lambda: socket.socket(40, socket.SOCK_STREAM, 0))
    "#;
    let v = py(&env, &[], body, &[]);
    expect(
        &v,
        &[
            ("interfaces", "['lo']"),
            ("connect_testnet_v4", "ENETUNREACH"),
            ("connect_testnet_v6", "ENETUNREACH"),
            ("udp_testnet", "ENETUNREACH"),
            ("raw", "EPERM"),
            ("packet", "EPERM"),
            ("vsock", "EPERM"),
        ],
    );
}

/// Root inside has no CAP_NET_ADMIN/CAP_NET_RAW over the network namespace (it belongs
/// to the host's user namespace): it cannot reconfigure lo, add an address or a route,
/// or open raw/packet sockets (EPERM each).
#[test]
fn network_cannot_be_reconfigured_as_root() {
    let env = Env::new();
    let body = r#"
        import fcntl
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        SIOCSIFMTU, SIOCSIFADDR, SIOCSIFFLAGS, SIOCADDRT = 0x8922, 0x8916, 0x8914, 0x890B
        t('set_mtu', lambda: fcntl.ioctl(s, SIOCSIFMTU, struct.pack('16si20x', b'lo', 1400)))
        addr = struct.pack('HH4s8x', socket.AF_INET, 0, socket.inet_aton('10.99.0.1'))
        t('set_addr', lambda: fcntl.ioctl(s, SIOCSIFADDR, struct.pack('16s', b'lo') + addr))
        t('set_flags', lambda: fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack('16sh22x', b'lo', 0)))
        t('add_route', lambda: fcntl.ioctl(s, SIOCADDRT, b'\0' * 120))
        t('raw', lambda: socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP))
        t('packet', lambda: socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0))
    "#;
    let v = py(&env, ROOT, body, &[]);
    expect(
        &v,
        &[
            ("set_mtu", "EPERM"),
            ("set_addr", "EPERM"),
            ("set_flags", "EPERM"),
            ("add_route", "EPERM"),
            ("raw", "EPERM"),
            ("packet", "EPERM"),
        ],
    );
}
