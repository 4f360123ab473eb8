//! Property-based fuzzing of every SoupBinTCP and OUCH decoder: they never panic, never read
//! past their input, never wait for more than `max + 2` bytes, agree with themselves on every
//! prefix of the input, and whatever they accept re-encodes to an equivalent value (to the
//! identical bytes where the encoding is canonical).
//!
//! Inputs are arbitrary bytes, valid messages with bytes overwritten, truncated or appended,
//! and streams of valid packets cut into random chunks.
//!
//! Case count: 256 per property by default (the CI run). A long local run:
//!
//! ```text
//! KEEL_FUZZ_CASES=1000000 cargo test --release -p keel-protocol --test protocol_fuzz
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use keel_protocol::ouch::{
    AiqCanceled, BboWeightIndicator, BrokenTrade, BrokenTradeReason, BuySellIndicator, CancelOrder,
    CancelPending, CancelReason, CancelReject, Capacity, CrossType, CustomerType, DisplayType,
    EnterOrder, EventCode, InboundMessage, IntermarketSweepEligibility, LiquidityFlag, ModifyOrder,
    OrderAccepted, OrderCanceled, OrderExecuted, OrderModified, OrderPriorityUpdate, OrderRejected,
    OrderReplaced, OrderState, OutboundMessage, Price, RejectReason, ReplaceOrder, SystemEvent,
    TimeInForce,
};
use keel_protocol::soupbin::{
    ClientPacket, FrameDecoder, LoginAccepted, LoginRejectReason, LoginRequest, Password,
    ServerPacket, SessionId,
};
use keel_protocol::{ouch, Alpha, Firm, OrderToken, ProtocolError, Stock, Username};
use proptest::prelude::*;
use proptest::sample::select;

fn config() -> ProptestConfig {
    let cases = std::env::var("KEEL_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    ProptestConfig {
        cases,
        ..ProptestConfig::default()
    }
}

// ------------------------------------------------------------------ strategies

fn alpha<const N: usize>(min: usize) -> BoxedStrategy<Alpha<N>> {
    // Printable ASCII that does not end in a space (the padding).
    let body = format!("[ -~]{{0,{}}}[!-~]", N - 1);
    let regex = if min == 0 { format!("({body})?") } else { body };
    proptest::string::string_regex(&regex)
        .unwrap()
        .prop_map(|s| Alpha::new(&s).unwrap())
        .boxed()
}

fn token() -> BoxedStrategy<OrderToken> {
    alpha::<14>(1)
}

fn stock() -> BoxedStrategy<Stock> {
    alpha::<8>(1)
}

fn firm() -> BoxedStrategy<Firm> {
    alpha::<4>(0)
}

fn price() -> impl Strategy<Value = Price> {
    prop_oneof![
        Just(Price::MARKET),
        Just(Price::LIMIT_MAX),
        any::<u32>().prop_map(Price)
    ]
}

fn tif() -> impl Strategy<Value = TimeInForce> {
    prop_oneof![
        Just(TimeInForce::IMMEDIATE_OR_CANCEL),
        Just(TimeInForce::SYSTEM_HOURS),
        any::<u32>().prop_map(TimeInForce)
    ]
}

fn enter_order() -> impl Strategy<Value = EnterOrder> {
    (
        (
            token(),
            select(BuySellIndicator::ALL),
            any::<u32>(),
            stock(),
            price(),
            tif(),
        ),
        (
            firm(),
            select(DisplayType::ALL),
            select(Capacity::ALL),
            select(IntermarketSweepEligibility::ALL),
            any::<u32>(),
            select(CrossType::ALL),
            select(CustomerType::ALL),
        ),
    )
        .prop_map(
            |(
                (order_token, side, shares, stock, price, time_in_force),
                (
                    firm,
                    display,
                    capacity,
                    intermarket_sweep,
                    minimum_quantity,
                    cross_type,
                    customer_type,
                ),
            )| EnterOrder {
                order_token,
                side,
                shares,
                stock,
                price,
                time_in_force,
                firm,
                display,
                capacity,
                intermarket_sweep,
                minimum_quantity,
                cross_type,
                customer_type,
            },
        )
}

fn inbound() -> impl Strategy<Value = InboundMessage> {
    prop_oneof![
        enter_order().prop_map(InboundMessage::EnterOrder),
        (
            token(),
            token(),
            any::<u32>(),
            price(),
            tif(),
            select(DisplayType::ALL),
            select(IntermarketSweepEligibility::ALL),
            any::<u32>()
        )
            .prop_map(|(a, b, shares, price, tif, display, ise, min)| {
                InboundMessage::ReplaceOrder(ReplaceOrder {
                    existing_order_token: a,
                    replacement_order_token: b,
                    shares,
                    price,
                    time_in_force: tif,
                    display,
                    intermarket_sweep: ise,
                    minimum_quantity: min,
                })
            }),
        (token(), any::<u32>()).prop_map(|(order_token, shares)| {
            InboundMessage::CancelOrder(CancelOrder {
                order_token,
                shares,
            })
        }),
        (token(), select(BuySellIndicator::ALL), any::<u32>()).prop_map(
            |(order_token, side, shares)| {
                InboundMessage::ModifyOrder(ModifyOrder {
                    order_token,
                    side,
                    shares,
                })
            }
        ),
    ]
}

fn order_accepted() -> impl Strategy<Value = OrderAccepted> {
    (
        (
            any::<u64>(),
            token(),
            select(BuySellIndicator::ALL),
            any::<u32>(),
            stock(),
            price(),
            tif(),
            firm(),
        ),
        (
            select(DisplayType::ALL),
            any::<u64>(),
            select(Capacity::ALL),
            select(IntermarketSweepEligibility::ALL),
            any::<u32>(),
            select(CrossType::ALL),
            select(OrderState::ALL),
            select(BboWeightIndicator::ALL),
        ),
    )
        .prop_map(
            |(
                (timestamp, order_token, side, shares, stock, price, time_in_force, firm),
                (
                    display,
                    order_reference_number,
                    capacity,
                    intermarket_sweep,
                    minimum_quantity,
                    cross_type,
                    order_state,
                    bbo_weight_indicator,
                ),
            )| OrderAccepted {
                timestamp,
                order_token,
                side,
                shares,
                stock,
                price,
                time_in_force,
                firm,
                display,
                order_reference_number,
                capacity,
                intermarket_sweep,
                minimum_quantity,
                cross_type,
                order_state,
                bbo_weight_indicator,
            },
        )
}

fn outbound() -> impl Strategy<Value = OutboundMessage> {
    prop_oneof![
        (any::<u64>(), select(EventCode::ALL)).prop_map(|(timestamp, event_code)| {
            OutboundMessage::SystemEvent(SystemEvent {
                timestamp,
                event_code,
            })
        }),
        order_accepted().prop_map(OutboundMessage::OrderAccepted),
        (order_accepted(), token()).prop_map(|(a, previous)| {
            OutboundMessage::OrderReplaced(OrderReplaced {
                timestamp: a.timestamp,
                replacement_order_token: a.order_token,
                side: a.side,
                shares: a.shares,
                stock: a.stock,
                price: a.price,
                time_in_force: a.time_in_force,
                firm: a.firm,
                display: a.display,
                order_reference_number: a.order_reference_number,
                capacity: a.capacity,
                intermarket_sweep: a.intermarket_sweep,
                minimum_quantity: a.minimum_quantity,
                cross_type: a.cross_type,
                order_state: a.order_state,
                previous_order_token: previous,
                bbo_weight_indicator: a.bbo_weight_indicator,
            })
        }),
        (
            any::<u64>(),
            token(),
            any::<u32>(),
            select(CancelReason::ALL)
        )
            .prop_map(|(timestamp, order_token, decrement_shares, reason)| {
                OutboundMessage::OrderCanceled(OrderCanceled {
                    timestamp,
                    order_token,
                    decrement_shares,
                    reason,
                })
            }),
        (
            any::<u64>(),
            token(),
            any::<u32>(),
            select(CancelReason::ALL),
            any::<u32>(),
            price(),
            select(LiquidityFlag::ALL)
        )
            .prop_map(
                |(timestamp, order_token, dec, reason, prevented, px, flag)| {
                    OutboundMessage::AiqCanceled(AiqCanceled {
                        timestamp,
                        order_token,
                        decrement_shares: dec,
                        reason,
                        quantity_prevented_from_trading: prevented,
                        execution_price: px,
                        liquidity_flag: flag,
                    })
                }
            ),
        (
            any::<u64>(),
            token(),
            any::<u32>(),
            price(),
            select(LiquidityFlag::ALL),
            any::<u64>()
        )
            .prop_map(|(timestamp, order_token, shares, px, flag, match_number)| {
                OutboundMessage::OrderExecuted(OrderExecuted {
                    timestamp,
                    order_token,
                    executed_shares: shares,
                    execution_price: px,
                    liquidity_flag: flag,
                    match_number,
                })
            }),
        (
            any::<u64>(),
            token(),
            any::<u64>(),
            select(BrokenTradeReason::ALL)
        )
            .prop_map(|(timestamp, order_token, match_number, reason)| {
                OutboundMessage::BrokenTrade(BrokenTrade {
                    timestamp,
                    order_token,
                    match_number,
                    reason,
                })
            }),
        (any::<u64>(), token(), select(RejectReason::ALL)).prop_map(
            |(timestamp, order_token, reason)| {
                OutboundMessage::OrderRejected(OrderRejected {
                    timestamp,
                    order_token,
                    reason,
                })
            }
        ),
        (any::<u64>(), token()).prop_map(|(timestamp, order_token)| {
            OutboundMessage::CancelPending(CancelPending {
                timestamp,
                order_token,
            })
        }),
        (any::<u64>(), token()).prop_map(|(timestamp, order_token)| {
            OutboundMessage::CancelReject(CancelReject {
                timestamp,
                order_token,
            })
        }),
        (
            any::<u64>(),
            token(),
            price(),
            select(DisplayType::ALL),
            any::<u64>()
        )
            .prop_map(|(timestamp, order_token, price, display, reference)| {
                OutboundMessage::OrderPriorityUpdate(OrderPriorityUpdate {
                    timestamp,
                    order_token,
                    price,
                    display,
                    order_reference_number: reference,
                })
            }),
        (
            any::<u64>(),
            token(),
            select(BuySellIndicator::ALL),
            any::<u32>()
        )
            .prop_map(|(timestamp, order_token, side, shares)| {
                OutboundMessage::OrderModified(OrderModified {
                    timestamp,
                    order_token,
                    side,
                    shares,
                })
            }),
    ]
}

/// A client packet, owning its payload.
#[derive(Clone, Debug)]
enum OwnedClient {
    Login(LoginRequest),
    Unsequenced(Vec<u8>),
    Heartbeat,
    Logout,
    Debug(Vec<u8>),
}

impl OwnedClient {
    fn packet(&self) -> ClientPacket<'_> {
        match self {
            OwnedClient::Login(l) => ClientPacket::LoginRequest(*l),
            OwnedClient::Unsequenced(d) => ClientPacket::UnsequencedData(d),
            OwnedClient::Heartbeat => ClientPacket::ClientHeartbeat,
            OwnedClient::Logout => ClientPacket::LogoutRequest,
            OwnedClient::Debug(d) => ClientPacket::Debug(d),
        }
    }
}

fn client_packet() -> impl Strategy<Value = OwnedClient> {
    let login = (
        alpha::<6>(1),
        alpha::<10>(0),
        "[A-Za-z0-9]{0,10}",
        any::<u64>(),
    )
        .prop_map(|(username, password, session, seq)| {
            OwnedClient::Login(LoginRequest {
                username: Username::new(username.as_str()).unwrap(),
                password: Password::new(password.as_str()).unwrap(),
                requested_session: SessionId::new(&session).unwrap(),
                requested_sequence_number: seq,
            })
        });
    prop_oneof![
        login,
        inbound().prop_map(|m| {
            let mut v = Vec::new();
            m.encode(&mut v);
            OwnedClient::Unsequenced(v)
        }),
        proptest::collection::vec(any::<u8>(), 0..49).prop_map(OwnedClient::Unsequenced),
        Just(OwnedClient::Heartbeat),
        Just(OwnedClient::Logout),
        proptest::collection::vec(any::<u8>(), 0..49).prop_map(OwnedClient::Debug),
    ]
}

/// A server packet, owning its payload.
#[derive(Clone, Debug)]
enum OwnedServer {
    Accepted(LoginAccepted),
    Rejected(LoginRejectReason),
    Sequenced(Vec<u8>),
    Heartbeat,
    End,
    Debug(Vec<u8>),
}

impl OwnedServer {
    fn packet(&self) -> ServerPacket<'_> {
        match self {
            OwnedServer::Accepted(a) => ServerPacket::LoginAccepted(*a),
            OwnedServer::Rejected(r) => ServerPacket::LoginRejected(*r),
            OwnedServer::Sequenced(d) => ServerPacket::SequencedData(d),
            OwnedServer::Heartbeat => ServerPacket::ServerHeartbeat,
            OwnedServer::End => ServerPacket::EndOfSession,
            OwnedServer::Debug(d) => ServerPacket::Debug(d),
        }
    }
}

fn server_packet() -> impl Strategy<Value = OwnedServer> {
    prop_oneof![
        ("[A-Za-z0-9]{0,10}", any::<u64>()).prop_map(|(session, seq)| {
            OwnedServer::Accepted(LoginAccepted {
                session: SessionId::new(&session).unwrap(),
                sequence_number: seq,
            })
        }),
        prop_oneof![
            Just(LoginRejectReason::NotAuthorized),
            Just(LoginRejectReason::SessionNotAvailable)
        ]
        .prop_map(OwnedServer::Rejected),
        outbound().prop_map(|m| {
            let mut v = Vec::new();
            m.encode(&mut v);
            OwnedServer::Sequenced(v)
        }),
        Just(OwnedServer::Heartbeat),
        Just(OwnedServer::End),
        proptest::collection::vec(any::<u8>(), 0..300).prop_map(OwnedServer::Debug),
    ]
}

/// Overwrites, truncates or extends `bytes`.
#[derive(Clone, Debug)]
enum Mutation {
    Set(usize, u8),
    Truncate(usize),
    Append(Vec<u8>),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let interesting = prop_oneof![
        any::<u8>(),
        Just(b' '),
        Just(0u8),
        Just(0x7f),
        Just(0x80),
        Just(0xff),
        select(&b"ABCDEHIJLMNOPQRSTUXYZ0123+"[..]),
    ];
    prop_oneof![
        4 => (any::<usize>(), interesting).prop_map(|(i, b)| Mutation::Set(i, b)),
        1 => any::<usize>().prop_map(Mutation::Truncate),
        1 => proptest::collection::vec(any::<u8>(), 1..8).prop_map(Mutation::Append),
    ]
}

fn apply(bytes: &mut Vec<u8>, mutations: &[Mutation]) {
    for m in mutations {
        match m {
            Mutation::Set(i, b) => {
                if !bytes.is_empty() {
                    let i = i % bytes.len();
                    bytes[i] = *b;
                }
            }
            Mutation::Truncate(n) => {
                let n = n % (bytes.len() + 1);
                bytes.truncate(n);
            }
            Mutation::Append(extra) => bytes.extend_from_slice(extra),
        }
    }
}

// ------------------------------------------------------------------ checks

fn declared_len(buf: &[u8]) -> Option<usize> {
    buf.get(..2)
        .map(|b| 2 + usize::from(u16::from_be_bytes([b[0], b[1]])))
}

/// Every client-decoder invariant on one input.
fn check_client(d: &FrameDecoder, buf: &[u8]) {
    let result = d.decode_client(buf);
    let max = usize::from(d.max_packet_len());
    if buf.len() >= max + 2 {
        assert!(!matches!(result, Ok(None)), "waited past the limit");
    }
    match &result {
        Ok(Some((packet, used))) => {
            assert_eq!(Some(*used), declared_len(buf));
            assert!(*used <= buf.len());
            assert!(*used <= max + 2);
            let mut out = Vec::new();
            packet.encode(&mut out).unwrap();
            assert_eq!(out.len(), packet.encoded_len());
            assert_eq!(out.len(), *used);
            let again = d.decode_client(&out).unwrap().unwrap();
            assert_eq!(again, (*packet, *used));
            if !matches!(packet, ClientPacket::LoginRequest(_)) {
                assert_eq!(out, &buf[..*used]);
            }
        }
        Ok(None) => {}
        Err(_) => {}
    }
    // Every prefix agrees: incomplete, or the same answer once it holds the whole packet.
    let needed = match &result {
        Ok(Some((_, used))) => *used,
        _ => buf.len(),
    };
    for k in 0..needed.min(buf.len()) {
        let prefix = d.decode_client(&buf[..k]);
        match (&result, &prefix) {
            (_, Ok(None)) => {}
            (Err(e), Err(p)) => assert_eq!(e, p, "prefix {k}"),
            _ => panic!("prefix {k} gave {prefix:?}, whole gave {result:?}"),
        }
    }
}

fn check_server(d: &FrameDecoder, buf: &[u8]) {
    let result = d.decode_server(buf);
    let max = usize::from(d.max_packet_len());
    if buf.len() >= max + 2 {
        assert!(!matches!(result, Ok(None)), "waited past the limit");
    }
    if let Ok(Some((packet, used))) = &result {
        assert_eq!(Some(*used), declared_len(buf));
        assert!(*used <= buf.len());
        let mut out = Vec::new();
        packet.encode(&mut out).unwrap();
        assert_eq!(out.len(), *used);
        assert_eq!(d.decode_server(&out).unwrap().unwrap(), (*packet, *used));
        if !matches!(packet, ServerPacket::LoginAccepted(_)) {
            assert_eq!(out, &buf[..*used]);
        }
    }
    let needed = match &result {
        Ok(Some((_, used))) => *used,
        _ => buf.len(),
    };
    for k in 0..needed.min(buf.len()) {
        let prefix = d.decode_server(&buf[..k]);
        match (&result, &prefix) {
            (_, Ok(None)) => {}
            (Err(e), Err(p)) => assert_eq!(e, p, "prefix {k}"),
            _ => panic!("prefix {k} gave {prefix:?}, whole gave {result:?}"),
        }
    }
}

/// OUCH encodings are canonical: anything a decoder accepts re-encodes to the same bytes.
fn check_inbound(bytes: &[u8]) {
    if let Ok(message) = InboundMessage::decode(bytes) {
        let mut out = Vec::new();
        message.encode(&mut out);
        assert_eq!(out, bytes);
        assert!(ouch::peek_order_token(bytes).is_some());
    }
}

fn check_outbound(bytes: &[u8]) {
    if let Ok(message) = OutboundMessage::decode(bytes) {
        let mut out = Vec::new();
        message.encode(&mut out);
        assert_eq!(out, bytes);
    }
}

/// Decodes a whole stream the way a session does, returning the packets and stopping at the
/// first error.
fn drain_client(d: &FrameDecoder, stream: &[u8]) -> (Vec<String>, Option<ProtocolError>) {
    let mut seen = Vec::new();
    let mut pos = 0;
    loop {
        match d.decode_client(&stream[pos..]) {
            Ok(Some((packet, used))) => {
                assert!(used >= 3 && pos + used <= stream.len());
                seen.push(format!("{packet:?}"));
                pos += used;
            }
            Ok(None) => return (seen, None),
            Err(e) => return (seen, Some(e)),
        }
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn client_decoder_on_arbitrary_bytes(
        buf in proptest::collection::vec(any::<u8>(), 0..160),
        max in any::<u16>(),
    ) {
        check_client(&FrameDecoder::new(max), &buf);
        check_client(&FrameDecoder::default(), &buf);
    }

    #[test]
    fn server_decoder_on_arbitrary_bytes(
        buf in proptest::collection::vec(any::<u8>(), 0..160),
        max in any::<u16>(),
    ) {
        check_server(&FrameDecoder::new(max), &buf);
        check_server(&FrameDecoder::new(60), &buf);
    }

    #[test]
    fn decoders_on_typed_headers(
        packet_type in select(&b"+AJSHZLURO"[..]),
        len in 0u16..100,
        body in proptest::collection::vec(any::<u8>(), 0..100),
    ) {
        // Valid-looking headers reach deeper than random bytes do.
        let mut buf = len.to_be_bytes().to_vec();
        buf.push(packet_type);
        buf.extend_from_slice(&body);
        check_client(&FrameDecoder::default(), &buf);
        check_server(&FrameDecoder::default(), &buf);
    }

    #[test]
    fn mutated_client_packets(
        packet in client_packet(),
        mutations in proptest::collection::vec(mutation(), 0..4),
    ) {
        let mut buf = Vec::new();
        packet.packet().encode(&mut buf).unwrap();
        apply(&mut buf, &mutations);
        check_client(&FrameDecoder::default(), &buf);
        check_client(&FrameDecoder::new(u16::MAX), &buf);
    }

    #[test]
    fn mutated_server_packets(
        packet in server_packet(),
        mutations in proptest::collection::vec(mutation(), 0..4),
    ) {
        let mut buf = Vec::new();
        packet.packet().encode(&mut buf).unwrap();
        apply(&mut buf, &mutations);
        check_server(&FrameDecoder::new(soupbin_default_server()), &buf);
    }

    #[test]
    fn ouch_decoders_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..96)) {
        check_inbound(&bytes);
        check_outbound(&bytes);
    }

    #[test]
    fn ouch_decoders_on_typed_bytes(
        message_type in select(&b"OUXMSACDEBJPITFGK"[..]),
        len in 0usize..96,
        fill in any::<u8>(),
        noise in proptest::collection::vec(any::<u8>(), 0..96),
    ) {
        let mut bytes = vec![fill; len.max(1)];
        bytes[0] = message_type;
        for (i, b) in noise.iter().enumerate().skip(1) {
            if i < bytes.len() && b % 3 == 0 {
                bytes[i] = *b;
            }
        }
        check_inbound(&bytes);
        check_outbound(&bytes);
    }

    #[test]
    fn valid_messages_round_trip(
        inbound in inbound(),
        outbound in outbound(),
    ) {
        let mut bytes = Vec::new();
        inbound.encode(&mut bytes);
        prop_assert_eq!(bytes.len(), inbound.encoded_len());
        prop_assert_eq!(InboundMessage::decode(&bytes), Ok(inbound));
        let mut bytes = Vec::new();
        outbound.encode(&mut bytes);
        prop_assert_eq!(bytes.len(), outbound.encoded_len());
        prop_assert_eq!(OutboundMessage::decode(&bytes), Ok(outbound));
    }

    #[test]
    fn mutated_ouch_messages(
        inbound in inbound(),
        outbound in outbound(),
        mutations in proptest::collection::vec(mutation(), 1..4),
    ) {
        let mut bytes = Vec::new();
        inbound.encode(&mut bytes);
        apply(&mut bytes, &mutations);
        check_inbound(&bytes);
        check_outbound(&bytes);
        let mut bytes = Vec::new();
        outbound.encode(&mut bytes);
        apply(&mut bytes, &mutations);
        check_inbound(&bytes);
        check_outbound(&bytes);
    }

    #[test]
    fn streams_survive_any_chunking(
        packets in proptest::collection::vec(client_packet(), 0..12),
        cuts in proptest::collection::vec(any::<usize>(), 0..12),
    ) {
        let mut stream = Vec::new();
        for p in &packets {
            p.packet().encode(&mut stream).unwrap();
        }
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (stream.len() + 1)).collect();
        cuts.push(stream.len());
        cuts.sort_unstable();
        // Feed the stream as it would arrive, chunk by chunk, into a session-style buffer.
        let d = FrameDecoder::default();
        let mut buffer: Vec<u8> = Vec::new();
        let mut decoded = Vec::new();
        let mut fed = 0;
        for cut in cuts {
            buffer.extend_from_slice(&stream[fed..cut]);
            fed = cut;
            while let Some((packet, used)) = d.decode_client(&buffer).unwrap() {
                decoded.push(format!("{packet:?}"));
                buffer.drain(..used);
            }
        }
        prop_assert!(buffer.is_empty());
        let expected: Vec<String> = packets.iter().map(|p| format!("{:?}", p.packet())).collect();
        prop_assert_eq!(decoded, expected);
    }

    #[test]
    fn mutated_streams_stop_cleanly(
        packets in proptest::collection::vec(client_packet(), 1..8),
        mutations in proptest::collection::vec(mutation(), 1..6),
    ) {
        let mut stream = Vec::new();
        for p in &packets {
            p.packet().encode(&mut stream).unwrap();
        }
        apply(&mut stream, &mutations);
        let (seen, error) = drain_client(&FrameDecoder::default(), &stream);
        prop_assert!(seen.len() <= stream.len() / 3 + 1);
        if let Some(e) = error {
            // Errors are the framing ones, or a field error in a Login Request.
            prop_assert!(!e.to_string().is_empty());
        }
    }
}

fn soupbin_default_server() -> u16 {
    keel_protocol::soupbin::SERVER_PACKET_BYTES_MAX_DEFAULT
}
