//! Conformance against an independent decoder: Wireshark's `soupbintcp` and `ouch`
//! dissectors, run through Debian's `tshark`.
//!
//! The test scripts a trading session with the codec's encoders (login, orders that rest,
//! cross, get replaced, modified, canceled and rejected, a cancel reject, self-match
//! prevention, heartbeats and debug text both ways, end of day, logout, end of session, and
//! two refused logins), writes the bytes of both directions into a pcap (Ethernet, IPv4 and
//! TCP framing written here, with a proper handshake, sequence/ack numbers and checksums;
//! one TCP segment carries several packets and one packet is split across two segments),
//! and runs
//!
//! ```text
//! tshark -r session.pcap -d tcp.port==9000,soupbintcp -T json --no-duplicate-keys
//! ```
//!
//! `-d` makes TCP port 9000 SoupBinTCP; the OUCH dissector is a heuristic sub-dissector of
//! SoupBinTCP (enabled by default) that claims a payload when its type byte and exact length
//! match an OUCH message. The test asserts that every SoupBinTCP packet and every OUCH
//! message is decoded, in order, with the expected field values, and that tshark reports no
//! malformed packet and no expert warning or error.
//!
//! Without `tshark` on the PATH the test prints why and passes (CI installs it). Set
//! `KEEL_TSHARK_KEEP=/some/dir` to keep the capture for inspection in Wireshark.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;

use keel_protocol::ouch::{
    AiqCanceled, BboWeightIndicator, BrokenTrade, BrokenTradeReason, BuySellIndicator, CancelOrder,
    CancelPending, CancelReason, CancelReject, Capacity, CrossType, CustomerType, DisplayType,
    EnterOrder, EventCode, InboundMessage, IntermarketSweepEligibility, LiquidityFlag, ModifyOrder,
    OrderAccepted, OrderCanceled, OrderExecuted, OrderModified, OrderPriorityUpdate, OrderRejected,
    OrderReplaced, OrderState, OutboundMessage, Price, RejectReason, ReplaceOrder, SystemEvent,
    TimeInForce,
};
use keel_protocol::soupbin::{
    ClientPacket, LoginAccepted, LoginRejectReason, LoginRequest, Password, ServerPacket, SessionId,
};
use keel_protocol::{Firm, OrderToken, Stock, Username};
use serde_json::Value;

const SERVER_PORT: u16 = 9000;

// ------------------------------------------------------------------ pcap writing

/// One direction of a TCP connection.
#[derive(Clone, Copy)]
struct Endpoint {
    mac: [u8; 6],
    ip: [u8; 4],
    port: u16,
    next_seq: u32,
}

const FIN: u8 = 0x01;
const SYN: u8 = 0x02;
const PSH: u8 = 0x08;
const ACK: u8 = 0x10;

/// A classic libpcap file (microsecond timestamps, Ethernet link type).
struct Pcap {
    bytes: Vec<u8>,
    micros: u64,
}

impl Pcap {
    fn new() -> Pcap {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes()); // magic
        bytes.extend_from_slice(&2u16.to_le_bytes()); // version major
        bytes.extend_from_slice(&4u16.to_le_bytes()); // version minor
        bytes.extend_from_slice(&0i32.to_le_bytes()); // thiszone
        bytes.extend_from_slice(&0u32.to_le_bytes()); // sigfigs
        bytes.extend_from_slice(&65_535u32.to_le_bytes()); // snaplen
        bytes.extend_from_slice(&1u32.to_le_bytes()); // LINKTYPE_ETHERNET
        Pcap {
            bytes,
            micros: 1_700_000_000_000_000,
        }
    }

    fn record(&mut self, frame: &[u8]) {
        self.micros += 1_000;
        let secs = u32::try_from(self.micros / 1_000_000).unwrap();
        let usecs = u32::try_from(self.micros % 1_000_000).unwrap();
        let len = u32::try_from(frame.len()).unwrap();
        self.bytes.extend_from_slice(&secs.to_le_bytes());
        self.bytes.extend_from_slice(&usecs.to_le_bytes());
        self.bytes.extend_from_slice(&len.to_le_bytes());
        self.bytes.extend_from_slice(&len.to_le_bytes());
        self.bytes.extend_from_slice(frame);
    }
}

fn checksum(chunks: &[&[u8]]) -> u16 {
    let mut sum: u32 = 0;
    let mut odd: Option<u8> = None;
    for chunk in chunks {
        for &b in *chunk {
            match odd.take() {
                Some(hi) => sum += u32::from(u16::from_be_bytes([hi, b])),
                None => odd = Some(b),
            }
        }
    }
    if let Some(hi) = odd {
        sum += u32::from(u16::from_be_bytes([hi, 0]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Ethernet + IPv4 + TCP around `payload`.
fn tcp_frame(src: &Endpoint, dst: &Endpoint, ack: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut tcp = Vec::with_capacity(20 + payload.len());
    tcp.extend_from_slice(&src.port.to_be_bytes());
    tcp.extend_from_slice(&dst.port.to_be_bytes());
    tcp.extend_from_slice(&src.next_seq.to_be_bytes());
    tcp.extend_from_slice(&(if flags & ACK != 0 { ack } else { 0 }).to_be_bytes());
    tcp.push(5 << 4); // data offset: 5 words, no options
    tcp.push(flags);
    tcp.extend_from_slice(&65_535u16.to_be_bytes()); // window
    tcp.extend_from_slice(&[0, 0]); // checksum, filled below
    tcp.extend_from_slice(&[0, 0]); // urgent pointer
    tcp.extend_from_slice(payload);
    let tcp_len = u16::try_from(tcp.len()).unwrap();
    let pseudo = [
        &src.ip[..],
        &dst.ip[..],
        &[0, 6],
        &tcp_len.to_be_bytes()[..],
    ]
    .concat();
    let sum = checksum(&[&pseudo, &tcp]);
    tcp[16..18].copy_from_slice(&sum.to_be_bytes());

    let mut ip = Vec::with_capacity(20);
    ip.push(0x45); // IPv4, 5-word header
    ip.push(0);
    ip.extend_from_slice(&(20 + tcp_len).to_be_bytes());
    ip.extend_from_slice(&[0x12, 0x34]); // identification
    ip.extend_from_slice(&[0x40, 0x00]); // don't fragment
    ip.push(64); // TTL
    ip.push(6); // TCP
    ip.extend_from_slice(&[0, 0]);
    ip.extend_from_slice(&src.ip);
    ip.extend_from_slice(&dst.ip);
    let sum = checksum(&[&ip]);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());

    [&dst.mac[..], &src.mac[..], &[0x08, 0x00], &ip, &tcp].concat()
}

/// A TCP connection between a client and the server, recorded into a pcap.
struct Connection {
    client: Endpoint,
    server: Endpoint,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Dir {
    ToServer,
    ToClient,
}

impl Connection {
    fn open(pcap: &mut Pcap, client_port: u16) -> Connection {
        let mut c = Connection {
            client: Endpoint {
                mac: [0x02, 0, 0, 0, 0, 0x01],
                ip: [10, 0, 0, 1],
                port: client_port,
                next_seq: 1_000 * u32::from(client_port),
            },
            server: Endpoint {
                mac: [0x02, 0, 0, 0, 0, 0x02],
                ip: [10, 0, 0, 2],
                port: SERVER_PORT,
                next_seq: 7_000_000,
            },
        };
        pcap.record(&tcp_frame(&c.client, &c.server, 0, SYN, &[]));
        c.client.next_seq += 1;
        pcap.record(&tcp_frame(
            &c.server,
            &c.client,
            c.client.next_seq,
            SYN | ACK,
            &[],
        ));
        c.server.next_seq += 1;
        pcap.record(&tcp_frame(
            &c.client,
            &c.server,
            c.server.next_seq,
            ACK,
            &[],
        ));
        c
    }

    fn send(&mut self, pcap: &mut Pcap, dir: Dir, payload: &[u8]) {
        let (src, dst) = match dir {
            Dir::ToServer => (&mut self.client, &self.server),
            Dir::ToClient => (&mut self.server, &self.client),
        };
        pcap.record(&tcp_frame(src, dst, dst.next_seq, PSH | ACK, payload));
        src.next_seq += u32::try_from(payload.len()).unwrap();
        // The peer acknowledges at once, as a real stack would soon enough.
        let (src, dst) = match dir {
            Dir::ToServer => (&self.server, &self.client),
            Dir::ToClient => (&self.client, &self.server),
        };
        pcap.record(&tcp_frame(src, dst, dst.next_seq, ACK, &[]));
    }

    fn close(mut self, pcap: &mut Pcap) {
        pcap.record(&tcp_frame(
            &self.server,
            &self.client,
            self.client.next_seq,
            FIN | ACK,
            &[],
        ));
        self.server.next_seq += 1;
        pcap.record(&tcp_frame(
            &self.client,
            &self.server,
            self.server.next_seq,
            FIN | ACK,
            &[],
        ));
        self.client.next_seq += 1;
        pcap.record(&tcp_frame(
            &self.server,
            &self.client,
            self.client.next_seq,
            ACK,
            &[],
        ));
    }
}

// ------------------------------------------------------------------ the script

fn token(s: &str) -> OrderToken {
    OrderToken::new(s).unwrap()
}

fn stock() -> Stock {
    Stock::new("BTC-PERP").unwrap()
}

fn enter(
    token_text: &str,
    side: BuySellIndicator,
    shares: u32,
    price: Price,
    tif: TimeInForce,
) -> EnterOrder {
    EnterOrder {
        order_token: token(token_text),
        side,
        shares,
        stock: stock(),
        price,
        time_in_force: tif,
        firm: Firm::new("KEEL").unwrap(),
        display: DisplayType::Anonymous,
        capacity: Capacity::Agency,
        intermarket_sweep: IntermarketSweepEligibility::NotEligible,
        minimum_quantity: 0,
        cross_type: CrossType::NoCross,
        customer_type: CustomerType::PortDefault,
    }
}

fn accepted(order: &EnterOrder, ts: u64, reference: u64, state: OrderState) -> OrderAccepted {
    OrderAccepted {
        timestamp: ts,
        order_token: order.order_token,
        side: order.side,
        shares: order.shares,
        stock: order.stock,
        price: order.price,
        time_in_force: order.time_in_force,
        firm: order.firm,
        display: order.display,
        order_reference_number: reference,
        capacity: order.capacity,
        intermarket_sweep: order.intermarket_sweep,
        minimum_quantity: order.minimum_quantity,
        cross_type: order.cross_type,
        order_state: state,
        bbo_weight_indicator: BboWeightIndicator::Unspecified,
    }
}

/// What tshark should show for one SoupBinTCP packet or OUCH message: `(field, value)`
/// pairs as `tshark -T json` prints them.
#[derive(Debug)]
struct Expect {
    dir: Dir,
    fields: Vec<(&'static str, String)>,
}

/// A one-byte code as tshark's JSON shows an `FT_CHAR` field.
fn ch(byte: u8) -> String {
    format!("'{}'", char::from(byte))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).unwrap()
}

/// Nanoseconds since midnight as tshark formats them.
fn clock(ns: u64) -> String {
    let secs = ns / 1_000_000_000;
    format!(
        "{}:{:02}:{:02}.{:09}",
        secs / 3600,
        (secs % 3600) / 60,
        secs % 60,
        ns % 1_000_000_000
    )
}

fn inbound_fields(m: &InboundMessage) -> Vec<(&'static str, String)> {
    let mut f = vec![("ouch.packet_type", ch(m.message_type()))];
    match m {
        InboundMessage::EnterOrder(o) => f.extend([
            ("ouch.order_token", text(o.order_token.wire())),
            ("ouch.buy_sell_indicator", ch(o.side.code())),
            ("ouch.shares", o.shares.to_string()),
            ("ouch.stock", text(o.stock.wire())),
            ("ouch.price", o.price.0.to_string()),
            ("ouch.tif", o.time_in_force.0.to_string()),
            ("ouch.firm", text(o.firm.wire())),
            ("ouch.display", ch(o.display.code())),
            ("ouch.capacity", ch(o.capacity.code())),
            ("ouch.iso_eligible", ch(o.intermarket_sweep.code())),
            ("ouch.min_quantity", o.minimum_quantity.to_string()),
            ("ouch.cross_type", ch(o.cross_type.code())),
            ("ouch.customer_type", ch(o.customer_type.code())),
        ]),
        InboundMessage::ReplaceOrder(o) => f.extend([
            (
                "ouch.existing_order_token",
                text(o.existing_order_token.wire()),
            ),
            (
                "ouch.replacement_order_token",
                text(o.replacement_order_token.wire()),
            ),
            ("ouch.shares", o.shares.to_string()),
            ("ouch.price", o.price.0.to_string()),
            ("ouch.tif", o.time_in_force.0.to_string()),
            ("ouch.display", ch(o.display.code())),
            ("ouch.iso_eligible", ch(o.intermarket_sweep.code())),
            ("ouch.min_quantity", o.minimum_quantity.to_string()),
        ]),
        InboundMessage::CancelOrder(o) => f.extend([
            ("ouch.order_token", text(o.order_token.wire())),
            ("ouch.shares", o.shares.to_string()),
        ]),
        InboundMessage::ModifyOrder(o) => f.extend([
            ("ouch.order_token", text(o.order_token.wire())),
            ("ouch.buy_sell_indicator", ch(o.side.code())),
            ("ouch.shares", o.shares.to_string()),
        ]),
    }
    f
}

fn accepted_like_fields(
    f: &mut Vec<(&'static str, String)>,
    a: &OrderAccepted,
    token_field: &'static str,
) {
    f.extend([
        ("ouch.timestamp", clock(a.timestamp)),
        (token_field, text(a.order_token.wire())),
        ("ouch.buy_sell_indicator", ch(a.side.code())),
        ("ouch.shares", a.shares.to_string()),
        ("ouch.stock", text(a.stock.wire())),
        ("ouch.price", a.price.0.to_string()),
        ("ouch.tif", a.time_in_force.0.to_string()),
        ("ouch.firm", text(a.firm.wire())),
        ("ouch.display", ch(a.display.code())),
        (
            "ouch.order_reference_number",
            a.order_reference_number.to_string(),
        ),
        ("ouch.capacity", ch(a.capacity.code())),
        ("ouch.iso_eligible", ch(a.intermarket_sweep.code())),
        ("ouch.min_quantity", a.minimum_quantity.to_string()),
        ("ouch.cross_type", ch(a.cross_type.code())),
        ("ouch.order_state", ch(a.order_state.code())),
        (
            "ouch.bbo_weight_indicator",
            ch(a.bbo_weight_indicator.code()),
        ),
    ]);
}

fn outbound_fields(m: &OutboundMessage) -> Vec<(&'static str, String)> {
    let mut f = vec![("ouch.packet_type", ch(m.message_type()))];
    let head = |f: &mut Vec<(&'static str, String)>, ts: u64, token: &OrderToken| {
        f.push(("ouch.timestamp", clock(ts)));
        f.push(("ouch.order_token", text(token.wire())));
    };
    match m {
        OutboundMessage::SystemEvent(e) => f.extend([
            ("ouch.timestamp", clock(e.timestamp)),
            ("ouch.event_code", ch(e.event_code.code())),
        ]),
        OutboundMessage::OrderAccepted(a) => accepted_like_fields(&mut f, a, "ouch.order_token"),
        OutboundMessage::OrderReplaced(r) => {
            let as_accepted = OrderAccepted {
                timestamp: r.timestamp,
                order_token: r.replacement_order_token,
                side: r.side,
                shares: r.shares,
                stock: r.stock,
                price: r.price,
                time_in_force: r.time_in_force,
                firm: r.firm,
                display: r.display,
                order_reference_number: r.order_reference_number,
                capacity: r.capacity,
                intermarket_sweep: r.intermarket_sweep,
                minimum_quantity: r.minimum_quantity,
                cross_type: r.cross_type,
                order_state: r.order_state,
                bbo_weight_indicator: r.bbo_weight_indicator,
            };
            accepted_like_fields(&mut f, &as_accepted, "ouch.replacement_order_token");
            f.push((
                "ouch.previous_order_token",
                text(r.previous_order_token.wire()),
            ));
        }
        OutboundMessage::OrderCanceled(c) => {
            head(&mut f, c.timestamp, &c.order_token);
            f.push(("ouch.decrement_shares", c.decrement_shares.to_string()));
            f.push(("ouch.cancel_reason", ch(c.reason.code())));
        }
        OutboundMessage::AiqCanceled(c) => {
            head(&mut f, c.timestamp, &c.order_token);
            f.push(("ouch.decrement_shares", c.decrement_shares.to_string()));
            f.push(("ouch.cancel_reason", ch(c.reason.code())));
            f.push((
                "ouch.quantity_prevented_from_trading",
                c.quantity_prevented_from_trading.to_string(),
            ));
            f.push(("ouch.execution_price", c.execution_price.0.to_string()));
            f.push(("ouch.liquidity_flag", ch(c.liquidity_flag.code())));
        }
        OutboundMessage::OrderExecuted(e) => {
            head(&mut f, e.timestamp, &e.order_token);
            f.push(("ouch.executed_shares", e.executed_shares.to_string()));
            f.push(("ouch.execution_price", e.execution_price.0.to_string()));
            f.push(("ouch.liquidity_flag", ch(e.liquidity_flag.code())));
            f.push(("ouch.match_number", e.match_number.to_string()));
        }
        OutboundMessage::BrokenTrade(b) => {
            head(&mut f, b.timestamp, &b.order_token);
            f.push(("ouch.match_number", b.match_number.to_string()));
            f.push(("ouch.broken_trade_reason", ch(b.reason.code())));
        }
        OutboundMessage::OrderRejected(r) => {
            head(&mut f, r.timestamp, &r.order_token);
            f.push(("ouch.reject_reason", ch(r.reason.code())));
        }
        OutboundMessage::CancelPending(c) => head(&mut f, c.timestamp, &c.order_token),
        OutboundMessage::CancelReject(c) => head(&mut f, c.timestamp, &c.order_token),
        OutboundMessage::OrderPriorityUpdate(p) => {
            head(&mut f, p.timestamp, &p.order_token);
            f.push(("ouch.price", p.price.0.to_string()));
            f.push(("ouch.display", ch(p.display.code())));
            f.push((
                "ouch.order_reference_number",
                p.order_reference_number.to_string(),
            ));
        }
        OutboundMessage::OrderModified(o) => {
            head(&mut f, o.timestamp, &o.order_token);
            f.push(("ouch.buy_sell_indicator", ch(o.side.code())));
            f.push(("ouch.shares", o.shares.to_string()));
        }
    }
    f
}

/// Something to put on the wire, and what tshark should make of it.
enum Item<'a> {
    Client(ClientPacket<'a>),
    Server(ServerPacket<'a>),
    In(InboundMessage),
    Out(OutboundMessage),
}

/// The scripted capture and the expected decode.
struct Script {
    pcap: Pcap,
    soup: Vec<Expect>,
    ouch: Vec<Expect>,
    /// Lines `tshark -V` must print, in this order.
    verbose_lines: Vec<String>,
    /// Sequenced Data packets sent so far on the current connection.
    next_seq: u64,
}

impl Script {
    /// Encodes `items` back to back and records the expectations.
    fn encode(&mut self, items: &[Item<'_>]) -> (Dir, Vec<u8>) {
        let mut bytes = Vec::new();
        let mut dir = None;
        for item in items {
            let mut one = Vec::new();
            let (d, fields) = match item {
                Item::Client(p) => {
                    p.encode(&mut one).unwrap();
                    let mut fields = vec![("soupbintcp.packet_type", ch(p.packet_type()))];
                    if let ClientPacket::LoginRequest(l) = p {
                        fields.push(("soupbintcp.username", text(l.username.wire())));
                        fields.push(("soupbintcp.password", text(l.password.wire())));
                        fields.push(("soupbintcp.session", text(l.requested_session.wire())));
                        self.verbose_lines.push(format!(
                            "Requested sequence number: {}",
                            l.requested_sequence_number
                        ));
                    }
                    if let ClientPacket::Debug(t) = p {
                        fields.push(("soupbintcp.text", text(t)));
                    }
                    (Dir::ToServer, fields)
                }
                Item::Server(p) => {
                    p.encode(&mut one).unwrap();
                    let mut fields = vec![("soupbintcp.packet_type", ch(p.packet_type()))];
                    match p {
                        ServerPacket::LoginAccepted(a) => {
                            fields.push(("soupbintcp.session", text(a.session.wire())));
                            self.verbose_lines
                                .push(format!("Next sequence number: {}", a.sequence_number));
                            self.next_seq = a.sequence_number;
                        }
                        ServerPacket::LoginRejected(r) => {
                            fields.push(("soupbintcp.reject_code", ch(r.code())));
                        }
                        ServerPacket::Debug(t) => fields.push(("soupbintcp.text", text(t))),
                        _ => {}
                    }
                    (Dir::ToClient, fields)
                }
                Item::In(m) => {
                    m.encode_unsequenced(&mut one);
                    self.ouch.push(Expect {
                        dir: Dir::ToServer,
                        fields: inbound_fields(m),
                    });
                    (Dir::ToServer, vec![("soupbintcp.packet_type", ch(b'U'))])
                }
                Item::Out(m) => {
                    m.encode_sequenced(&mut one);
                    self.ouch.push(Expect {
                        dir: Dir::ToClient,
                        fields: outbound_fields(m),
                    });
                    self.verbose_lines
                        .push(format!("Sequence number: {} (Calculated)", self.next_seq));
                    self.next_seq += 1;
                    (Dir::ToClient, vec![("soupbintcp.packet_type", ch(b'S'))])
                }
            };
            let mut fields = fields;
            fields.push(("soupbintcp.packet_length", (one.len() - 2).to_string()));
            self.soup.push(Expect { dir: d, fields });
            assert!(dir.is_none() || dir == Some(d), "one direction per segment");
            dir = Some(d);
            bytes.extend_from_slice(&one);
        }
        (dir.unwrap(), bytes)
    }

    /// Sends `items` in one TCP segment.
    fn send(&mut self, conn: &mut Connection, items: &[Item<'_>]) {
        let (dir, bytes) = self.encode(items);
        conn.send(&mut self.pcap, dir, &bytes);
    }

    /// Sends `items` split into two TCP segments after `at` bytes.
    fn send_split(&mut self, conn: &mut Connection, items: &[Item<'_>], at: usize) {
        let (dir, bytes) = self.encode(items);
        conn.send(&mut self.pcap, dir, &bytes[..at]);
        conn.send(&mut self.pcap, dir, &bytes[at..]);
    }
}

const T0: u64 = 34_200_000_000_000; // 09:30:00

fn build_script() -> Script {
    use Item::{Client, In, Out, Server};
    let mut s = Script {
        pcap: Pcap::new(),
        soup: Vec::new(),
        ouch: Vec::new(),
        verbose_lines: Vec::new(),
        next_seq: 0,
    };
    let login = |user: &str, password: &str, session: &str| {
        ClientPacket::LoginRequest(LoginRequest {
            username: Username::new(user).unwrap(),
            password: Password::new(password).unwrap(),
            requested_session: SessionId::new(session).unwrap(),
            requested_sequence_number: 1,
        })
    };

    // ---- The trading session.
    let mut conn = Connection::open(&mut s.pcap, 40_001);
    s.send(&mut conn, &[Client(login("alice", "s3cret", ""))]);
    s.send(
        &mut conn,
        &[Server(ServerPacket::LoginAccepted(LoginAccepted {
            session: SessionId::new("SESS1").unwrap(),
            sequence_number: 1,
        }))],
    );
    s.send(
        &mut conn,
        &[Out(OutboundMessage::SystemEvent(SystemEvent {
            timestamp: T0,
            event_code: EventCode::StartOfDay,
        }))],
    );

    // A buy rests.
    let t1 = enter(
        "T1",
        BuySellIndicator::Buy,
        100,
        Price(1_002_500),
        TimeInForce::SYSTEM_HOURS,
    );
    s.send(&mut conn, &[In(InboundMessage::EnterOrder(t1))]);
    s.send(
        &mut conn,
        &[Out(OutboundMessage::OrderAccepted(accepted(
            &t1,
            T0 + 1,
            1,
            OrderState::Live,
        )))],
    );

    // An IOC sell crosses it: accepted, both sides executed with one match number; the three
    // Sequenced Data packets travel in one TCP segment.
    let t2 = enter(
        "T2",
        BuySellIndicator::Sell,
        60,
        Price(1_000_000),
        TimeInForce::IMMEDIATE_OR_CANCEL,
    );
    s.send(&mut conn, &[In(InboundMessage::EnterOrder(t2))]);
    let exec = |token_text: &str, flag: LiquidityFlag, ts: u64| {
        OutboundMessage::OrderExecuted(OrderExecuted {
            timestamp: ts,
            order_token: token(token_text),
            executed_shares: 60,
            execution_price: Price(1_002_500),
            liquidity_flag: flag,
            match_number: 1,
        })
    };
    s.send(
        &mut conn,
        &[
            Out(OutboundMessage::OrderAccepted(accepted(
                &t2,
                T0 + 2,
                2,
                OrderState::Live,
            ))),
            Out(exec("T1", LiquidityFlag::Added, T0 + 3)),
            Out(exec("T2", LiquidityFlag::Removed, T0 + 3)),
        ],
    );

    // The rest of T1 is replaced by T3 at a better price.
    s.send(
        &mut conn,
        &[In(InboundMessage::ReplaceOrder(ReplaceOrder {
            existing_order_token: token("T1"),
            replacement_order_token: token("T3"),
            shares: 40,
            price: Price(1_005_000),
            time_in_force: TimeInForce::SYSTEM_HOURS,
            display: DisplayType::Anonymous,
            intermarket_sweep: IntermarketSweepEligibility::NotEligible,
            minimum_quantity: 0,
        }))],
    );
    s.send(
        &mut conn,
        &[Out(OutboundMessage::OrderReplaced(OrderReplaced {
            timestamp: T0 + 4,
            replacement_order_token: token("T3"),
            side: BuySellIndicator::Buy,
            shares: 40,
            stock: stock(),
            price: Price(1_005_000),
            time_in_force: TimeInForce::SYSTEM_HOURS,
            firm: Firm::new("KEEL").unwrap(),
            display: DisplayType::Anonymous,
            order_reference_number: 3,
            capacity: Capacity::Agency,
            intermarket_sweep: IntermarketSweepEligibility::NotEligible,
            minimum_quantity: 0,
            cross_type: CrossType::NoCross,
            order_state: OrderState::Live,
            previous_order_token: token("T1"),
            bbo_weight_indicator: BboWeightIndicator::Unspecified,
        }))],
    );

    // Modified down to 30, then canceled.
    s.send(
        &mut conn,
        &[In(InboundMessage::ModifyOrder(ModifyOrder {
            order_token: token("T3"),
            side: BuySellIndicator::Buy,
            shares: 30,
        }))],
    );
    s.send(
        &mut conn,
        &[Out(OutboundMessage::OrderModified(OrderModified {
            timestamp: T0 + 5,
            order_token: token("T3"),
            side: BuySellIndicator::Buy,
            shares: 30,
        }))],
    );
    s.send(
        &mut conn,
        &[In(InboundMessage::CancelOrder(CancelOrder {
            order_token: token("T3"),
            shares: 0,
        }))],
    );
    s.send(
        &mut conn,
        &[Out(OutboundMessage::OrderCanceled(OrderCanceled {
            timestamp: T0 + 6,
            order_token: token("T3"),
            decrement_shares: 30,
            reason: CancelReason::UserRequested,
        }))],
    );

    // An unknown stock is rejected; a cancel for an unknown token is refused. The Enter
    // Order arrives split across two TCP segments.
    let mut t4 = enter(
        "T4",
        BuySellIndicator::Buy,
        1,
        Price(10_000),
        TimeInForce::SYSTEM_HOURS,
    );
    t4.stock = Stock::new("NOPE").unwrap();
    s.send_split(&mut conn, &[In(InboundMessage::EnterOrder(t4))], 11);
    s.send(
        &mut conn,
        &[Out(OutboundMessage::OrderRejected(OrderRejected {
            timestamp: T0 + 7,
            order_token: token("T4"),
            reason: RejectReason::InvalidStock,
        }))],
    );
    s.send(
        &mut conn,
        &[In(InboundMessage::CancelOrder(CancelOrder {
            order_token: token("T9"),
            shares: 0,
        }))],
    );
    s.send(
        &mut conn,
        &[Out(OutboundMessage::CancelReject(CancelReject {
            timestamp: T0 + 8,
            order_token: token("T9"),
        }))],
    );

    // A post-only sell rests; the same user's market FOK buy would trade with it and is
    // canceled by self-match prevention.
    let mut t5 = enter(
        "T5",
        BuySellIndicator::SellShort,
        10,
        Price(1_010_000),
        TimeInForce::MARKET_HOURS,
    );
    t5.display = DisplayType::PostOnly;
    t5.capacity = Capacity::Principal;
    let mut t6 = enter(
        "T6",
        BuySellIndicator::Buy,
        10,
        Price::MARKET,
        TimeInForce::IMMEDIATE_OR_CANCEL,
    );
    t6.minimum_quantity = 10;
    t6.customer_type = CustomerType::NotRetailDesignated;
    s.send(
        &mut conn,
        &[
            In(InboundMessage::EnterOrder(t5)),
            In(InboundMessage::EnterOrder(t6)),
        ],
    );
    s.send(
        &mut conn,
        &[
            Out(OutboundMessage::OrderAccepted(accepted(
                &t5,
                T0 + 9,
                5,
                OrderState::Live,
            ))),
            Out(OutboundMessage::OrderAccepted(accepted(
                &t6,
                T0 + 9,
                6,
                OrderState::Dead,
            ))),
            Out(OutboundMessage::OrderCanceled(OrderCanceled {
                timestamp: T0 + 9,
                order_token: token("T6"),
                decrement_shares: 10,
                reason: CancelReason::SelfMatchPrevention,
            })),
            Out(OutboundMessage::AiqCanceled(AiqCanceled {
                timestamp: T0 + 9,
                order_token: token("T6"),
                decrement_shares: 0,
                reason: CancelReason::SelfMatchPrevention,
                quantity_prevented_from_trading: 10,
                execution_price: Price(1_010_000),
                liquidity_flag: LiquidityFlag::Removed,
            })),
        ],
    );

    // The remaining message types, for the encoders' sake.
    s.send(
        &mut conn,
        &[
            Out(OutboundMessage::CancelPending(CancelPending {
                timestamp: T0 + 10,
                order_token: token("T5"),
            })),
            Out(OutboundMessage::OrderPriorityUpdate(OrderPriorityUpdate {
                timestamp: T0 + 11,
                order_token: token("T5"),
                price: Price(1_010_000),
                display: DisplayType::PostOnly,
                order_reference_number: 7,
            })),
            Out(OutboundMessage::BrokenTrade(BrokenTrade {
                timestamp: T0 + 12,
                order_token: token("T1"),
                match_number: 1,
                reason: BrokenTradeReason::Supervisory,
            })),
            Out(OutboundMessage::OrderCanceled(OrderCanceled {
                timestamp: T0 + 13,
                order_token: token("T5"),
                decrement_shares: 10,
                reason: CancelReason::ImmediateOrCancel,
            })),
        ],
    );

    // Heartbeats and debug text both ways.
    s.send(&mut conn, &[Client(ClientPacket::ClientHeartbeat)]);
    s.send(&mut conn, &[Server(ServerPacket::ServerHeartbeat)]);
    s.send(&mut conn, &[Client(ClientPacket::Debug(b"client says hi"))]);
    s.send(&mut conn, &[Server(ServerPacket::Debug(b"keel 0.1"))]);

    // End of day, logout, end of session.
    s.send(
        &mut conn,
        &[Out(OutboundMessage::SystemEvent(SystemEvent {
            timestamp: 57_600_000_000_000,
            event_code: EventCode::EndOfDay,
        }))],
    );
    s.send(&mut conn, &[Client(ClientPacket::LogoutRequest)]);
    s.send(&mut conn, &[Server(ServerPacket::EndOfSession)]);
    conn.close(&mut s.pcap);

    // ---- Two refused logins.
    for (port, password, session, reason) in [
        (40_002, "wrong", "", LoginRejectReason::NotAuthorized),
        (
            40_003,
            "s3cret",
            "OLD42",
            LoginRejectReason::SessionNotAvailable,
        ),
    ] {
        let mut conn = Connection::open(&mut s.pcap, port);
        s.send(&mut conn, &[Client(login("alice", password, session))]);
        s.send(&mut conn, &[Server(ServerPacket::LoginRejected(reason))]);
        conn.close(&mut s.pcap);
    }
    s
}

// ------------------------------------------------------------------ running tshark

fn tshark_version() -> Option<String> {
    let output = Command::new("tshark").arg("--version").output().ok()?;
    if !output.status.success() {
        return None;
    }
    String::from_utf8(output.stdout)
        .ok()?
        .lines()
        .next()
        .map(str::to_owned)
}

/// A directory for captures: under `KEEL_TSHARK_KEEP` if set (kept), else a temporary one.
fn scratch_dir(test: &str) -> PathBuf {
    let dir = match std::env::var_os("KEEL_TSHARK_KEEP") {
        Some(dir) => PathBuf::from(dir).join(test),
        None => std::env::temp_dir().join(format!("keel-tshark-{}-{test}", std::process::id())),
    };
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn run_tshark(pcap: &Path, extra: &[&str]) -> String {
    let decode_as = format!("tcp.port=={SERVER_PORT},soupbintcp");
    let output = Command::new("tshark")
        .arg("-r")
        .arg(pcap)
        .args(["-d", &decode_as])
        .args(extra)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "tshark failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// Every object under `key` in tshark's JSON, in packet order, with its direction.
fn layers(packets: &Value, key: &str) -> Vec<(Dir, serde_json::Map<String, Value>)> {
    let mut out = Vec::new();
    for packet in packets.as_array().expect("a JSON array of packets") {
        let layers = &packet["_source"]["layers"];
        let src_port = layers["tcp"]["tcp.srcport"].as_str().unwrap_or_default();
        let dir = if src_port == SERVER_PORT.to_string() {
            Dir::ToClient
        } else {
            Dir::ToServer
        };
        match &layers[key] {
            Value::Object(o) => out.push((dir, o.clone())),
            Value::Array(items) => {
                for item in items {
                    out.push((dir, item.as_object().expect("an object").clone()));
                }
            }
            _ => {}
        }
    }
    out
}

/// Expert items at warning severity or above (and malformed markers), anywhere.
fn problems(value: &Value, found: &mut Vec<String>) {
    const PI_WARN: u64 = 0x0060_0000;
    match value {
        Value::Object(o) => {
            if let Some(sev) = o.get("_ws.expert.severity").and_then(Value::as_str) {
                if sev.parse::<u64>().unwrap_or(u64::MAX) >= PI_WARN {
                    found.push(format!("expert: {}", Value::Object(o.clone())));
                }
            }
            for (k, v) in o {
                if k.starts_with("_ws.malformed") {
                    found.push(format!("malformed: {v}"));
                }
                problems(v, found);
            }
        }
        Value::Array(items) => items.iter().for_each(|v| problems(v, found)),
        _ => {}
    }
}

fn check(kind: &str, expected: &[Expect], actual: &[(Dir, serde_json::Map<String, Value>)]) {
    assert_eq!(
        actual.len(),
        expected.len(),
        "{kind}: tshark decoded {} items, the script sent {}",
        actual.len(),
        expected.len()
    );
    for (n, (want, (dir, got))) in expected.iter().zip(actual).enumerate() {
        assert_eq!(*dir, want.dir, "{kind} #{n}: direction");
        for (field, value) in &want.fields {
            assert_eq!(
                got.get(*field).and_then(Value::as_str),
                Some(value.as_str()),
                "{kind} #{n} field {field}: tshark shows {got:?}"
            );
        }
    }
}

#[test]
fn tshark_decodes_a_scripted_session() {
    let Some(version) = tshark_version() else {
        eprintln!(
            "SKIPPED protocol_tshark: `tshark` is not installed \
             (apt-get install tshark); CI installs it and runs this test"
        );
        return;
    };
    eprintln!("protocol_tshark: using {version}");
    let script = build_script();
    let dir = scratch_dir("session");
    let path = dir.join("session.pcap");
    std::fs::write(&path, &script.pcap.bytes).unwrap();

    let json = run_tshark(&path, &["-T", "json", "--no-duplicate-keys"]);
    let packets: Value = serde_json::from_str(&json).unwrap();
    let mut found = Vec::new();
    problems(&packets, &mut found);
    assert!(found.is_empty(), "tshark reports problems: {found:#?}");
    check(
        "SoupBinTCP packet",
        &script.soup,
        &layers(&packets, "soupbintcp"),
    );
    check("OUCH message", &script.ouch, &layers(&packets, "ouch"));

    // Values tshark only formats in its text output: the numeric login fields it parses,
    // and the sequence numbers it computes for Sequenced Data from Login Accepted.
    let verbose = run_tshark(&path, &["-V"]);
    assert!(
        !verbose.contains("Malformed"),
        "tshark -V reports a malformed packet"
    );
    assert!(
        !verbose.contains("Expert Info (Warning"),
        "tshark -V reports a warning"
    );
    assert!(
        !verbose.contains("Expert Info (Error"),
        "tshark -V reports an error"
    );
    let mut rest = verbose.as_str();
    for line in &script.verbose_lines {
        let at = rest
            .find(line.as_str())
            .unwrap_or_else(|| panic!("tshark -V does not show {line:?} (in order)"));
        rest = &rest[at + line.len()..];
    }
    eprintln!(
        "protocol_tshark: {} SoupBinTCP packets and {} OUCH messages decoded as expected",
        script.soup.len(),
        script.ouch.len()
    );
    if std::env::var_os("KEEL_TSHARK_KEEP").is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// The problems tshark reports for a one-connection capture of `segments`.
fn tshark_problems(name: &str, segments: &[(Dir, Vec<u8>)]) -> Vec<String> {
    let mut pcap = Pcap::new();
    let mut conn = Connection::open(&mut pcap, 41_000);
    for (dir, bytes) in segments {
        conn.send(&mut pcap, *dir, bytes);
    }
    conn.close(&mut pcap);
    let dir = scratch_dir(name);
    let path = dir.join(format!("{name}.pcap"));
    std::fs::write(&path, &pcap.bytes).unwrap();
    let json = run_tshark(&path, &["-T", "json", "--no-duplicate-keys"]);
    let mut found = Vec::new();
    problems(&serde_json::from_str(&json).unwrap(), &mut found);
    if std::env::var_os("KEEL_TSHARK_KEEP").is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    found
}

/// The checks above can fail: tshark flags bytes the codec refuses to decode (and so would
/// never produce), and one value the codec allows but tshark's dissector cannot represent.
#[test]
fn tshark_flags_what_it_should() {
    if tshark_version().is_none() {
        eprintln!("SKIPPED protocol_tshark: `tshark` is not installed");
        return;
    }
    use keel_protocol::soupbin;

    // A right-justified sequence number padded on the wrong side.
    let mut login = Vec::new();
    ClientPacket::LoginRequest(LoginRequest {
        username: Username::new("alice").unwrap(),
        password: Password::new("pw").unwrap(),
        requested_session: SessionId::BLANK,
        requested_sequence_number: 1,
    })
    .encode(&mut login)
    .unwrap();
    let mut padded_wrong = login.clone();
    padded_wrong[29..49].copy_from_slice(b"1                   ");
    assert!(soupbin::decode_client(&padded_wrong).is_err());
    let found = tshark_problems("bad-seq", &[(Dir::ToServer, padded_wrong)]);
    assert!(
        !found.is_empty(),
        "tshark accepted a left-justified sequence number"
    );

    // A Login Accepted too short for its fields.
    let short = vec![
        0x00, 0x0b, b'A', b' ', b' ', b' ', b' ', b' ', b' ', b' ', b' ', b'S', b'1',
    ];
    assert!(soupbin::decode_server(&short).is_err());
    let found = tshark_problems(
        "short-accept",
        &[(Dir::ToServer, login.clone()), (Dir::ToClient, short)],
    );
    assert!(
        !found.is_empty(),
        "tshark accepted a truncated Login Accepted"
    );

    // Known tshark limitation: it parses the 20-digit sequence number as a signed 32-bit
    // integer (ws_strtoi32), so numbers from 2^31 up, valid per the specification and
    // accepted by the codec, are reported as invalid.
    let mut accepted = Vec::new();
    ServerPacket::LoginAccepted(LoginAccepted {
        session: SessionId::new("S").unwrap(),
        sequence_number: 1 << 31,
    })
    .encode(&mut accepted)
    .unwrap();
    assert!(soupbin::decode_server(&accepted).unwrap().is_some());
    let found = tshark_problems(
        "big-seq",
        &[(Dir::ToServer, login), (Dir::ToClient, accepted)],
    );
    assert!(
        !found.is_empty(),
        "tshark now accepts sequence numbers >= 2^31"
    );
}

/// Every one-byte code the codec accepts is one Wireshark's dissectors know, field by
/// field (`tshark -G values` lists their value strings); codes Wireshark knows and the codec
/// refuses are printed, and must stay exactly the message types this codec leaves out.
#[test]
fn code_tables_agree_with_wireshark() {
    use keel_protocol::ouch::message_type;
    if tshark_version().is_none() {
        eprintln!("SKIPPED protocol_tshark: `tshark` is not installed");
        return;
    }
    let output = Command::new("tshark")
        .args(["-G", "values"])
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&output.stdout);
    let known = |field: &str| -> Vec<u8> {
        let mut codes: Vec<u8> = listing
            .lines()
            .filter_map(|line| {
                let mut cols = line.split('\t');
                (cols.next() == Some("V") && cols.next() == Some(field))
                    .then(|| cols.next())
                    .flatten()
            })
            .filter_map(|quoted| {
                let b = quoted.as_bytes();
                (b.len() == 3 && b[0] == b'\'' && b[2] == b'\'').then_some(b[1])
            })
            .collect();
        codes.sort_unstable();
        codes
    };
    let ours = |codes: Vec<u8>| {
        let mut codes = codes;
        codes.sort_unstable();
        codes
    };
    let tables: [(&str, Vec<u8>); 14] = [
        (
            "ouch.buy_sell_indicator",
            ours(BuySellIndicator::ALL.iter().map(|v| v.code()).collect()),
        ),
        (
            "ouch.display",
            ours(DisplayType::ALL.iter().map(|v| v.code()).collect()),
        ),
        (
            "ouch.capacity",
            ours(Capacity::ALL.iter().map(|v| v.code()).collect()),
        ),
        (
            "ouch.iso_eligible",
            ours(
                IntermarketSweepEligibility::ALL
                    .iter()
                    .map(|v| v.code())
                    .collect(),
            ),
        ),
        (
            "ouch.cross_type",
            ours(CrossType::ALL.iter().map(|v| v.code()).collect()),
        ),
        (
            "ouch.customer_type",
            ours(CustomerType::ALL.iter().map(|v| v.code()).collect()),
        ),
        (
            "ouch.event_code",
            ours(EventCode::ALL.iter().map(|v| v.code()).collect()),
        ),
        (
            "ouch.order_state",
            ours(OrderState::ALL.iter().map(|v| v.code()).collect()),
        ),
        (
            "ouch.bbo_weight_indicator",
            ours(BboWeightIndicator::ALL.iter().map(|v| v.code()).collect()),
        ),
        (
            "ouch.cancel_reason",
            ours(CancelReason::ALL.iter().map(|v| v.code()).collect()),
        ),
        (
            "ouch.reject_reason",
            ours(RejectReason::ALL.iter().map(|v| v.code()).collect()),
        ),
        (
            "ouch.liquidity_flag",
            ours(LiquidityFlag::ALL.iter().map(|v| v.code()).collect()),
        ),
        (
            "ouch.broken_trade_reason",
            ours(BrokenTradeReason::ALL.iter().map(|v| v.code()).collect()),
        ),
        ("soupbintcp.reject_code", ours(vec![b'A', b'S'])),
    ];
    for (field, codes) in &tables {
        let theirs = known(field);
        assert!(!theirs.is_empty(), "tshark lists no values for {field}");
        let missing: Vec<char> = codes
            .iter()
            .filter(|c| !theirs.contains(c))
            .map(|c| char::from(*c))
            .collect();
        assert!(
            missing.is_empty(),
            "{field}: codes unknown to Wireshark: {missing:?}"
        );
        let extra: Vec<char> = theirs
            .iter()
            .filter(|c| !codes.contains(c))
            .map(|c| char::from(*c))
            .collect();
        if !extra.is_empty() {
            eprintln!("{field}: Wireshark also knows {extra:?}");
        }
    }
    // Message types: Wireshark's table uses 'R' for Replaced and 'm' for Order Modified
    // (its disambiguations of 'U' and 'M'). It also knows types this codec leaves out.
    let ours_types = [
        message_type::ENTER_ORDER,
        message_type::REPLACE_ORDER,
        message_type::CANCEL_ORDER,
        message_type::MODIFY_ORDER,
        message_type::SYSTEM_EVENT,
        message_type::ORDER_ACCEPTED,
        b'R',
        message_type::ORDER_CANCELED,
        message_type::AIQ_CANCELED,
        message_type::ORDER_EXECUTED,
        message_type::BROKEN_TRADE,
        message_type::ORDER_REJECTED,
        message_type::CANCEL_PENDING,
        message_type::CANCEL_REJECT,
        message_type::ORDER_PRIORITY_UPDATE,
        b'm',
    ];
    let theirs = known("ouch.packet_type");
    for t in ours_types {
        assert!(
            theirs.contains(&t),
            "OUCH type {:?} unknown to Wireshark",
            char::from(t)
        );
    }
    let extra: Vec<char> = theirs
        .iter()
        .filter(|t| !ours_types.contains(t))
        .map(|t| char::from(*t))
        .collect();
    eprintln!("ouch.packet_type: Wireshark also knows {extra:?}");
    let mut soup_types = b"+AHJLORSUZ".to_vec();
    soup_types.sort_unstable();
    assert_eq!(known("soupbintcp.packet_type"), soup_types);
}
