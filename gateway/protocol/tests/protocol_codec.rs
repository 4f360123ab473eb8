//! Byte-exact encodings of every SoupBinTCP packet and OUCH message, written by hand from the
//! specifications' layout tables (offset, length, type), plus decode/encode round trips and
//! the decoders' refusals.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use keel_protocol::ouch::{
    self, AiqCanceled, BboWeightIndicator, BrokenTrade, BrokenTradeReason, BuySellIndicator,
    CancelOrder, CancelPending, CancelReason, CancelReject, Capacity, CrossType, CustomerType,
    DisplayType, EnterOrder, EventCode, InboundMessage, IntermarketSweepEligibility, LiquidityFlag,
    ModifyOrder, OrderAccepted, OrderCanceled, OrderExecuted, OrderModified, OrderPriorityUpdate,
    OrderRejected, OrderReplaced, OrderState, OutboundMessage, Price, RejectReason, ReplaceOrder,
    SystemEvent, TimeInForce,
};
use keel_protocol::soupbin::{
    self, ClientPacket, FrameDecoder, LoginAccepted, LoginRejectReason, LoginRequest, Password,
    ServerPacket, SessionId,
};
use keel_protocol::{Firm, OrderToken, ProtocolError, Stock, Username};

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

fn token(s: &str) -> OrderToken {
    OrderToken::new(s).unwrap()
}

// ---------------------------------------------------------------- SoupBinTCP

#[test]
fn login_request_bytes() {
    let packet = ClientPacket::LoginRequest(LoginRequest {
        username: Username::new("alice").unwrap(),
        password: Password::new("s3cret").unwrap(),
        requested_session: SessionId::BLANK,
        requested_sequence_number: 1,
    });
    let expected = cat(&[
        &[0x00, 0x2f],           // length 47 = type + 46
        b"L",                    // packet type
        b"alice ",               // username, 6, right-padded
        b"s3cret    ",           // password, 10, right-padded
        b"          ",           // requested session, 10, blank = current
        b"                   1", // requested sequence number, 20, left-padded
    ]);
    let mut out = Vec::new();
    packet.encode(&mut out).unwrap();
    assert_eq!(out, expected);
    assert_eq!(packet.encoded_len(), 49);
    assert_eq!(
        soupbin::decode_client(&expected).unwrap(),
        Some((packet, 49))
    );

    // A named session is left-padded, and sequence numbers use all 20 digits if needed.
    let packet = ClientPacket::LoginRequest(LoginRequest {
        username: Username::new("BOB123").unwrap(),
        password: Password::new("0123456789").unwrap(),
        requested_session: SessionId::new("0000001234").unwrap(),
        requested_sequence_number: u64::MAX,
    });
    let mut out = Vec::new();
    packet.encode(&mut out).unwrap();
    assert_eq!(
        out,
        cat(&[
            &[0x00, 0x2f],
            b"L",
            b"BOB123",
            b"0123456789",
            b"0000001234",
            b"18446744073709551615"
        ])
    );
}

#[test]
fn login_accepted_and_rejected_bytes() {
    let accepted = ServerPacket::LoginAccepted(LoginAccepted {
        session: SessionId::new("SESS1").unwrap(),
        sequence_number: 42,
    });
    let expected = cat(&[
        &[0x00, 0x1f],           // length 31
        b"A",                    // packet type
        b"     SESS1",           // session, 10, left-padded
        b"                  42", // next sequence number, 20, left-padded
    ]);
    let mut out = Vec::new();
    accepted.encode(&mut out).unwrap();
    assert_eq!(out, expected);
    assert_eq!(
        soupbin::decode_server(&expected).unwrap(),
        Some((accepted, 33))
    );

    for (reason, code) in [
        (LoginRejectReason::NotAuthorized, b'A'),
        (LoginRejectReason::SessionNotAvailable, b'S'),
    ] {
        let packet = ServerPacket::LoginRejected(reason);
        let mut out = Vec::new();
        packet.encode(&mut out).unwrap();
        assert_eq!(out, [0x00, 0x02, b'J', code]);
        assert_eq!(soupbin::decode_server(&out).unwrap(), Some((packet, 4)));
    }
    assert_eq!(
        soupbin::decode_server(&[0x00, 0x02, b'J', b'X']),
        Err(ProtocolError::InvalidCode {
            field: "Reject Reason Code",
            byte: b'X'
        })
    );
}

#[test]
fn empty_and_data_packets_bytes() {
    let cases: [(ClientPacket<'_>, &[u8]); 4] = [
        (ClientPacket::ClientHeartbeat, &[0x00, 0x01, b'R']),
        (ClientPacket::LogoutRequest, &[0x00, 0x01, b'O']),
        (
            ClientPacket::UnsequencedData(b"xyz"),
            &[0x00, 0x04, b'U', b'x', b'y', b'z'],
        ),
        (ClientPacket::Debug(b"hi"), &[0x00, 0x03, b'+', b'h', b'i']),
    ];
    for (packet, bytes) in cases {
        let mut out = Vec::new();
        packet.encode(&mut out).unwrap();
        assert_eq!(out, bytes);
        let mut fixed = [0u8; 16];
        let n = packet.encode_into(&mut fixed).unwrap();
        assert_eq!(&fixed[..n], bytes);
        assert_eq!(
            soupbin::decode_client(bytes).unwrap(),
            Some((packet, bytes.len()))
        );
    }
    let cases: [(ServerPacket<'_>, &[u8]); 4] = [
        (ServerPacket::ServerHeartbeat, &[0x00, 0x01, b'H']),
        (ServerPacket::EndOfSession, &[0x00, 0x01, b'Z']),
        (
            ServerPacket::SequencedData(b"ab"),
            &[0x00, 0x03, b'S', b'a', b'b'],
        ),
        (ServerPacket::Debug(b""), &[0x00, 0x01, b'+']),
    ];
    for (packet, bytes) in cases {
        let mut out = Vec::new();
        packet.encode(&mut out).unwrap();
        assert_eq!(out, bytes);
        assert_eq!(
            soupbin::decode_server(bytes).unwrap(),
            Some((packet, bytes.len()))
        );
    }
    assert_eq!(
        ClientPacket::ClientHeartbeat.encode_into(&mut [0u8; 2]),
        Err(ProtocolError::BufferTooSmall {
            needed: 3,
            available: 2
        })
    );
}

#[test]
fn decoder_is_incremental_and_consumes_exactly_one_packet() {
    let mut stream = Vec::new();
    ClientPacket::ClientHeartbeat.encode(&mut stream).unwrap();
    ClientPacket::UnsequencedData(b"hello")
        .encode(&mut stream)
        .unwrap();
    ClientPacket::LogoutRequest.encode(&mut stream).unwrap();
    let d = FrameDecoder::default();
    // Byte by byte: nothing until a packet is complete.
    let mut decoded = Vec::new();
    let mut start = 0;
    for end in 0..=stream.len() {
        if let Some((packet, used)) = d.decode_client(&stream[start..end]).unwrap() {
            assert_eq!(start + used, end);
            decoded.push(packet);
            start = end;
        }
    }
    assert_eq!(
        decoded,
        vec![
            ClientPacket::ClientHeartbeat,
            ClientPacket::UnsequencedData(b"hello"),
            ClientPacket::LogoutRequest
        ]
    );
}

#[test]
fn login_request_field_errors() {
    let good = cat(&[
        &[0x00, 0x2f],
        b"L",
        b"alice ",
        b"pw        ",
        b"   SESSION",
        b"                   7",
    ]);
    assert!(soupbin::decode_client(&good).unwrap().is_some());
    let with = |offset: usize, bytes: &[u8]| {
        let mut b = good.clone();
        b[offset..offset + bytes.len()].copy_from_slice(bytes);
        soupbin::decode_client(&b).map(|decoded| match decoded {
            Some((ClientPacket::LoginRequest(login), 49)) => login,
            other => panic!("not one login: {other:?}"),
        })
    };
    // Username blank or with a control character.
    assert!(matches!(
        with(3, b"      "),
        Err(ProtocolError::InvalidField {
            field: "Username",
            ..
        })
    ));
    assert!(matches!(
        with(3, b"al\tce "),
        Err(ProtocolError::InvalidField {
            field: "Username",
            ..
        })
    ));
    // Password with a non-ASCII byte.
    assert!(matches!(
        with(9, b"\xff"),
        Err(ProtocolError::InvalidField {
            field: "Password",
            ..
        })
    ));
    // Session with punctuation or a gap.
    assert!(matches!(
        with(19, b"SES-SION  "),
        Err(ProtocolError::InvalidField {
            field: "Session",
            ..
        })
    ));
    assert!(matches!(
        with(19, b"SES SION  "),
        Err(ProtocolError::InvalidField {
            field: "Session",
            ..
        })
    ));
    // Sequence number: right-padded, blank, signed, or out of range.
    for bad in [
        b"7                   ",
        b"                    ",
        b"                  -7",
        b"99999999999999999999",
    ] {
        assert!(
            matches!(
                with(29, bad),
                Err(ProtocolError::InvalidField {
                    field: "Requested Sequence Number",
                    ..
                })
            ),
            "{bad:?}"
        );
    }
    // Leading zeros are digits.
    let login = with(29, b"00000000000000000007").unwrap();
    assert_eq!(login.requested_sequence_number, 7);
    assert_eq!(login.requested_session.as_str(), "SESSION");
    // A SoupBinTCP 4.1 login (with a 5-byte heartbeat timeout) has the wrong length: too
    // long for the default limit, and not 47 for any limit.
    let mut v41 = good.clone();
    v41[1] = 52;
    v41.extend_from_slice(b"01000");
    assert_eq!(
        soupbin::decode_client(&v41),
        Err(ProtocolError::PacketTooLong { len: 52, max: 50 })
    );
    assert_eq!(
        FrameDecoder::new(100).decode_client(&v41),
        Err(ProtocolError::BadPacketLength {
            packet_type: b'L',
            len: 52,
            expected: 47
        })
    );
}

// ---------------------------------------------------------------- OUCH inbound

fn enter_order() -> EnterOrder {
    EnterOrder {
        order_token: token("ORD1"),
        side: BuySellIndicator::Buy,
        shares: 100,
        stock: Stock::new("AAPL").unwrap(),
        price: Price(1_502_500),
        time_in_force: TimeInForce::SYSTEM_HOURS,
        firm: Firm::new("FIRM").unwrap(),
        display: DisplayType::Anonymous,
        capacity: Capacity::Agency,
        intermarket_sweep: IntermarketSweepEligibility::NotEligible,
        minimum_quantity: 0,
        cross_type: CrossType::NoCross,
        customer_type: CustomerType::PortDefault,
    }
}

fn check_inbound(message: InboundMessage, expected: &[u8]) {
    let mut out = Vec::new();
    message.encode(&mut out);
    assert_eq!(out, expected, "{message:?}");
    assert_eq!(message.encoded_len(), expected.len());
    assert_eq!(InboundMessage::decode(expected).unwrap(), message);
    let mut fixed = [0u8; 64];
    let n = message.encode_into(&mut fixed).unwrap();
    assert_eq!(&fixed[..n], expected);
    // Framed: one Unsequenced Data packet.
    let mut framed = Vec::new();
    message.encode_unsequenced(&mut framed);
    let (packet, used) = soupbin::decode_client(&framed).unwrap().unwrap();
    assert_eq!(used, framed.len());
    assert_eq!(packet, ClientPacket::UnsequencedData(expected));
    // Wrong length either way.
    assert!(matches!(
        InboundMessage::decode(&expected[..expected.len() - 1]),
        Err(ProtocolError::BadMessageLength { .. })
    ));
    let mut longer = expected.to_vec();
    longer.push(b' ');
    assert!(matches!(
        InboundMessage::decode(&longer),
        Err(ProtocolError::BadMessageLength { .. })
    ));
}

#[test]
fn enter_order_bytes() {
    let expected = cat(&[
        b"O",                      // 0  type
        b"ORD1          ",         // 1  order token, 14
        b"B",                      // 15 buy/sell indicator
        &[0x00, 0x00, 0x00, 0x64], // 16 shares 100
        b"AAPL    ",               // 20 stock, 8
        &[0x00, 0x16, 0xed, 0x24], // 28 price 150.2500 = 1502500
        &[0x00, 0x01, 0x86, 0x9f], // 32 time in force 99999
        b"FIRM",                   // 36 firm, 4
        b"Y",                      // 40 display
        b"A",                      // 41 capacity
        b"N",                      // 42 intermarket sweep eligibility
        &[0x00, 0x00, 0x00, 0x00], // 43 minimum quantity
        b"N",                      // 47 cross type
        b" ",                      // 48 customer type
    ]);
    assert_eq!(expected.len(), 49);
    check_inbound(InboundMessage::EnterOrder(enter_order()), &expected);
}

#[test]
fn replace_cancel_modify_bytes() {
    let replace = ReplaceOrder {
        existing_order_token: token("ORD1"),
        replacement_order_token: token("ORD2"),
        shares: 250,
        price: Price(999),
        time_in_force: TimeInForce::IMMEDIATE_OR_CANCEL,
        display: DisplayType::PostOnly,
        intermarket_sweep: IntermarketSweepEligibility::Eligible,
        minimum_quantity: 5,
    };
    check_inbound(
        InboundMessage::ReplaceOrder(replace),
        &cat(&[
            b"U",
            b"ORD1          ",
            b"ORD2          ",
            &[0x00, 0x00, 0x00, 0xfa],
            &[0x00, 0x00, 0x03, 0xe7],
            &[0x00, 0x00, 0x00, 0x00],
            b"P",
            b"Y",
            &[0x00, 0x00, 0x00, 0x05],
        ]),
    );
    check_inbound(
        InboundMessage::CancelOrder(CancelOrder {
            order_token: token("ORD2"),
            shares: 0,
        }),
        &cat(&[b"X", b"ORD2          ", &[0, 0, 0, 0]]),
    );
    check_inbound(
        InboundMessage::ModifyOrder(ModifyOrder {
            order_token: token("ORD3"),
            side: BuySellIndicator::SellShort,
            shares: 0x0102_0304,
        }),
        &cat(&[b"M", b"ORD3          ", b"T", &[1, 2, 3, 4]]),
    );
}

#[test]
fn inbound_decoder_refusals() {
    let mut good = Vec::new();
    InboundMessage::EnterOrder(enter_order()).encode(&mut good);
    let with = |offset: usize, byte: u8| {
        let mut b = good.clone();
        b[offset] = byte;
        InboundMessage::decode(&b)
    };
    assert_eq!(
        InboundMessage::decode(&[]),
        Err(ProtocolError::EmptyMessage)
    );
    assert_eq!(with(0, b'Q'), Err(ProtocolError::UnknownMessageType(b'Q')));
    // An outbound type is unknown inbound.
    assert_eq!(with(0, b'A'), Err(ProtocolError::UnknownMessageType(b'A')));
    let code = |field, byte| Err(ProtocolError::InvalidCode { field, byte });
    assert_eq!(with(15, b'X'), code("Buy/Sell Indicator", b'X'));
    assert_eq!(with(40, b'x'), code("Display", b'x'));
    assert_eq!(with(41, b'B'), code("Capacity", b'B'));
    assert_eq!(with(42, b'y'), code("Intermarket Sweep Eligibility", b'y'));
    assert_eq!(with(47, b'Z'), code("Cross Type", b'Z'));
    assert_eq!(with(48, b'X'), code("Customer Type", b'X'));
    assert!(matches!(
        with(3, 0),
        Err(ProtocolError::InvalidField {
            field: "Order Token",
            ..
        })
    ));
    assert!(matches!(
        with(22, 0x80),
        Err(ProtocolError::InvalidField { field: "Stock", .. })
    ));
    assert!(matches!(
        with(37, b'\n'),
        Err(ProtocolError::InvalidField { field: "Firm", .. })
    ));
    let mut blank_token = good.clone();
    blank_token[1..15].fill(b' ');
    assert!(matches!(
        InboundMessage::decode(&blank_token),
        Err(ProtocolError::InvalidField {
            field: "Order Token",
            reason: "blank"
        })
    ));
    let mut blank_stock = good.clone();
    blank_stock[20..28].fill(b' ');
    assert!(matches!(
        InboundMessage::decode(&blank_stock),
        Err(ProtocolError::InvalidField {
            field: "Stock",
            reason: "blank"
        })
    ));
    // A blank firm means "default firm" and is fine.
    let mut blank_firm = good.clone();
    blank_firm[36..40].fill(b' ');
    assert!(InboundMessage::decode(&blank_firm).is_ok());
    // The token of a message with a bad code is still readable for a polite rejection.
    let mut bad_display = good.clone();
    bad_display[40] = b'x';
    assert_eq!(ouch::peek_order_token(&bad_display), Some(token("ORD1")));
    assert_eq!(ouch::peek_order_token(&bad_display[..48]), None);
    assert_eq!(ouch::peek_order_token(&blank_token), None);
}

#[test]
fn peek_order_token_names_the_replacement() {
    let replace = InboundMessage::ReplaceOrder(ReplaceOrder {
        existing_order_token: token("OLD"),
        replacement_order_token: token("NEW"),
        shares: 1,
        price: Price(1),
        time_in_force: TimeInForce::MARKET_HOURS,
        display: DisplayType::Anonymous,
        intermarket_sweep: IntermarketSweepEligibility::NotEligible,
        minimum_quantity: 0,
    });
    let mut bytes = Vec::new();
    replace.encode(&mut bytes);
    assert_eq!(ouch::peek_order_token(&bytes), Some(token("NEW")));
}

// ---------------------------------------------------------------- OUCH outbound

const TS: u64 = 34_200_000_000_123; // 09:30:00.000000123 in ns since midnight
const TS_BYTES: [u8; 8] = [0x00, 0x00, 0x1f, 0x1a, 0xce, 0xd9, 0xf0, 0x7b];

fn check_outbound(message: OutboundMessage, expected: &[u8]) {
    assert_eq!(TS.to_be_bytes(), TS_BYTES);
    let mut out = Vec::new();
    message.encode(&mut out);
    assert_eq!(out, expected, "{message:?}");
    assert_eq!(message.encoded_len(), expected.len());
    assert_eq!(OutboundMessage::decode(expected).unwrap(), message);
    let mut framed = Vec::new();
    message.encode_sequenced(&mut framed);
    let mut fixed = [0u8; 128];
    let n = message.encode_sequenced_into(&mut fixed).unwrap();
    assert_eq!(&fixed[..n], framed.as_slice());
    assert_eq!(
        soupbin::decode_server(&framed).unwrap(),
        Some((ServerPacket::SequencedData(expected), framed.len()))
    );
    assert!(matches!(
        OutboundMessage::decode(&expected[..expected.len() - 1]),
        Err(ProtocolError::BadMessageLength { .. })
    ));
}

#[test]
fn system_event_bytes() {
    check_outbound(
        OutboundMessage::SystemEvent(SystemEvent {
            timestamp: TS,
            event_code: EventCode::StartOfDay,
        }),
        &cat(&[b"S", &TS_BYTES, b"S"]),
    );
}

#[test]
fn order_accepted_bytes() {
    let accepted = OrderAccepted {
        timestamp: TS,
        order_token: token("ORD1"),
        side: BuySellIndicator::Sell,
        shares: 100,
        stock: Stock::new("BTC-PERP").unwrap(),
        price: Price(1_002_500),
        time_in_force: TimeInForce::MARKET_HOURS,
        firm: Firm::BLANK,
        display: DisplayType::PostOnly,
        order_reference_number: 0x0102_0304_0506_0708,
        capacity: Capacity::Principal,
        intermarket_sweep: IntermarketSweepEligibility::NotEligible,
        minimum_quantity: 0,
        cross_type: CrossType::NoCross,
        order_state: OrderState::Live,
        bbo_weight_indicator: BboWeightIndicator::Unspecified,
    };
    let expected = cat(&[
        b"A",                      // 0  type
        &TS_BYTES,                 // 1  timestamp
        b"ORD1          ",         // 9  order token
        b"S",                      // 23 buy/sell indicator
        &[0, 0, 0, 100],           // 24 shares
        b"BTC-PERP",               // 28 stock
        &[0x00, 0x0f, 0x4c, 0x04], // 36 price 100.2500
        &[0x00, 0x01, 0x86, 0x9e], // 40 time in force 99998
        b"    ",                   // 44 firm (blank)
        b"P",                      // 48 display
        &[1, 2, 3, 4, 5, 6, 7, 8], // 49 order reference number
        b"P",                      // 57 capacity
        b"N",                      // 58 intermarket sweep eligibility
        &[0, 0, 0, 0],             // 59 minimum quantity
        b"N",                      // 63 cross type
        b"L",                      // 64 order state
        b" ",                      // 65 BBO weight indicator
    ]);
    assert_eq!(expected.len(), 66);
    check_outbound(OutboundMessage::OrderAccepted(accepted), &expected);

    let replaced = OrderReplaced {
        timestamp: TS,
        replacement_order_token: token("ORD2"),
        side: BuySellIndicator::Buy,
        shares: 7,
        stock: Stock::new("AAPL").unwrap(),
        price: Price::MARKET,
        time_in_force: TimeInForce::IMMEDIATE_OR_CANCEL,
        firm: Firm::new("ABCD").unwrap(),
        display: DisplayType::Anonymous,
        order_reference_number: 9,
        capacity: Capacity::Agency,
        intermarket_sweep: IntermarketSweepEligibility::Eligible,
        minimum_quantity: 7,
        cross_type: CrossType::NoCross,
        order_state: OrderState::Dead,
        previous_order_token: token("ORD1"),
        bbo_weight_indicator: BboWeightIndicator::Weight3,
    };
    let expected = cat(&[
        b"U",
        &TS_BYTES,
        b"ORD2          ",
        b"B",
        &[0, 0, 0, 7],
        b"AAPL    ",
        &[0x7f, 0xff, 0xff, 0xff],
        &[0, 0, 0, 0],
        b"ABCD",
        b"Y",
        &[0, 0, 0, 0, 0, 0, 0, 9],
        b"A",
        b"Y",
        &[0, 0, 0, 7],
        b"N",
        b"D",
        b"ORD1          ",
        b"3",
    ]);
    assert_eq!(expected.len(), 80);
    check_outbound(OutboundMessage::OrderReplaced(replaced), &expected);
}

#[test]
fn cancel_execute_reject_bytes() {
    check_outbound(
        OutboundMessage::OrderCanceled(OrderCanceled {
            timestamp: TS,
            order_token: token("ORD1"),
            decrement_shares: 40,
            reason: CancelReason::SelfMatchPrevention,
        }),
        &cat(&[b"C", &TS_BYTES, b"ORD1          ", &[0, 0, 0, 40], b"Q"]),
    );
    check_outbound(
        OutboundMessage::AiqCanceled(AiqCanceled {
            timestamp: TS,
            order_token: token("ORD1"),
            decrement_shares: 40,
            reason: CancelReason::SelfMatchPrevention,
            quantity_prevented_from_trading: 30,
            execution_price: Price(10_000),
            liquidity_flag: LiquidityFlag::Removed,
        }),
        &cat(&[
            b"D",
            &TS_BYTES,
            b"ORD1          ",
            &[0, 0, 0, 40],
            b"Q",
            &[0, 0, 0, 30],
            &[0, 0, 0x27, 0x10],
            b"R",
        ]),
    );
    check_outbound(
        OutboundMessage::OrderExecuted(OrderExecuted {
            timestamp: TS,
            order_token: token("ORD1"),
            executed_shares: 60,
            execution_price: Price(1_002_500),
            liquidity_flag: LiquidityFlag::Added,
            match_number: 77,
        }),
        &cat(&[
            b"E",
            &TS_BYTES,
            b"ORD1          ",
            &[0, 0, 0, 60],
            &[0x00, 0x0f, 0x4c, 0x04],
            b"A",
            &[0, 0, 0, 0, 0, 0, 0, 77],
        ]),
    );
    check_outbound(
        OutboundMessage::BrokenTrade(BrokenTrade {
            timestamp: TS,
            order_token: token("ORD1"),
            match_number: 77,
            reason: BrokenTradeReason::Erroneous,
        }),
        &cat(&[
            b"B",
            &TS_BYTES,
            b"ORD1          ",
            &[0, 0, 0, 0, 0, 0, 0, 77],
            b"E",
        ]),
    );
    check_outbound(
        OutboundMessage::OrderRejected(OrderRejected {
            timestamp: TS,
            order_token: token("ORD9"),
            reason: RejectReason::InvalidStock,
        }),
        &cat(&[b"J", &TS_BYTES, b"ORD9          ", b"S"]),
    );
    check_outbound(
        OutboundMessage::CancelPending(CancelPending {
            timestamp: TS,
            order_token: token("ORD1"),
        }),
        &cat(&[b"P", &TS_BYTES, b"ORD1          "]),
    );
    check_outbound(
        OutboundMessage::CancelReject(CancelReject {
            timestamp: TS,
            order_token: token("ORD1"),
        }),
        &cat(&[b"I", &TS_BYTES, b"ORD1          "]),
    );
    check_outbound(
        OutboundMessage::OrderPriorityUpdate(OrderPriorityUpdate {
            timestamp: TS,
            order_token: token("ORD1"),
            price: Price(5),
            display: DisplayType::Anonymous,
            order_reference_number: 3,
        }),
        &cat(&[
            b"T",
            &TS_BYTES,
            b"ORD1          ",
            &[0, 0, 0, 5],
            b"Y",
            &[0, 0, 0, 0, 0, 0, 0, 3],
        ]),
    );
    check_outbound(
        OutboundMessage::OrderModified(OrderModified {
            timestamp: TS,
            order_token: token("ORD1"),
            side: BuySellIndicator::SellShortExempt,
            shares: 12,
        }),
        &cat(&[b"M", &TS_BYTES, b"ORD1          ", b"E", &[0, 0, 0, 12]]),
    );
}

#[test]
fn outbound_decoder_refusals() {
    assert_eq!(
        OutboundMessage::decode(&[]),
        Err(ProtocolError::EmptyMessage)
    );
    // Inbound-only and unimplemented types.
    for t in [b'O', b'X', b'F', b'G', b'K', b'z'] {
        let mut bytes = vec![t];
        bytes.resize(40, b' ');
        assert_eq!(
            OutboundMessage::decode(&bytes),
            Err(ProtocolError::UnknownMessageType(t))
        );
    }
    // 'U' and 'M' are told apart by direction: the inbound lengths are wrong outbound.
    let mut modify = vec![b'M'];
    modify.extend_from_slice(b"ORD1          T");
    modify.extend_from_slice(&[0, 0, 0, 1]);
    assert!(InboundMessage::decode(&modify).is_ok());
    assert_eq!(
        OutboundMessage::decode(&modify),
        Err(ProtocolError::BadMessageLength {
            message_type: b'M',
            len: 20,
            expected: 28
        })
    );
    let mut rejected = cat(&[b"J", &TS_BYTES, b"ORD9          ", b"S"]);
    rejected[23] = b'?';
    assert_eq!(
        OutboundMessage::decode(&rejected),
        Err(ProtocolError::InvalidCode {
            field: "Reject Reason",
            byte: b'?'
        })
    );
}

#[test]
fn code_enums_round_trip_and_refuse_everything_else() {
    fn check<T: Copy + PartialEq + std::fmt::Debug>(
        all: &[T],
        code: fn(T) -> u8,
        from: fn(u8) -> Result<T, ProtocolError>,
    ) {
        for byte in 0..=255u8 {
            match all.iter().find(|v| code(**v) == byte) {
                Some(v) => assert_eq!(from(byte), Ok(*v)),
                None => assert!(from(byte).is_err(), "{byte:#04x} accepted"),
            }
        }
        let mut codes: Vec<u8> = all.iter().map(|v| code(*v)).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), all.len(), "duplicate codes");
    }
    check(
        BuySellIndicator::ALL,
        BuySellIndicator::code,
        BuySellIndicator::from_code,
    );
    check(DisplayType::ALL, DisplayType::code, DisplayType::from_code);
    check(Capacity::ALL, Capacity::code, Capacity::from_code);
    check(
        IntermarketSweepEligibility::ALL,
        IntermarketSweepEligibility::code,
        IntermarketSweepEligibility::from_code,
    );
    check(CrossType::ALL, CrossType::code, CrossType::from_code);
    check(
        CustomerType::ALL,
        CustomerType::code,
        CustomerType::from_code,
    );
    check(EventCode::ALL, EventCode::code, EventCode::from_code);
    check(OrderState::ALL, OrderState::code, OrderState::from_code);
    check(
        BboWeightIndicator::ALL,
        BboWeightIndicator::code,
        BboWeightIndicator::from_code,
    );
    check(
        CancelReason::ALL,
        CancelReason::code,
        CancelReason::from_code,
    );
    check(
        RejectReason::ALL,
        RejectReason::code,
        RejectReason::from_code,
    );
    check(
        LiquidityFlag::ALL,
        LiquidityFlag::code,
        LiquidityFlag::from_code,
    );
    check(
        BrokenTradeReason::ALL,
        BrokenTradeReason::code,
        BrokenTradeReason::from_code,
    );
    assert_eq!(CancelReason::SelfMatchPrevention.code(), b'Q');
    assert_eq!(RejectReason::InvalidPrice.code(), b'X');
}

#[test]
fn price_display_and_limits() {
    assert_eq!(Price(1_502_500).to_string(), "150.2500");
    assert_eq!(Price(1).to_string(), "0.0001");
    assert_eq!(Price::MARKET.to_string(), "MARKET");
    assert_eq!(Price::LIMIT_MAX.0, 0x7735_939c);
    assert_eq!(Price::MARKET.0, 0x7fff_ffff);
    assert_eq!(ouch::INBOUND_MESSAGE_BYTES_MAX, 49);
    assert_eq!(ouch::OUTBOUND_MESSAGE_BYTES_MAX, 80);
    assert_eq!(soupbin::CLIENT_PACKET_BYTES_MAX_DEFAULT, 50);
}
