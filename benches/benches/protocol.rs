//! Criterion micro-benchmarks of the order-entry wire codecs in
//! `keel_protocol` (OUCH 4.2 messages, SoupBinTCP 4.0 framing), through their
//! public API, on representative messages:
//!
//! - `ouch/encode/M` and `ouch/decode/M` for Enter Order (client → exchange), Order
//!   Accepted and Order Executed (exchange → client): the message alone, no framing;
//!   encoding writes into a reused stack buffer (`encode_into`), decoding validates every
//!   field as the gateway does;
//! - `soupbin/encode/login_request`, `soupbin/decode/login_request`: the Login Request
//!   packet (username, password, session, requested sequence number in ASCII);
//! - `soupbin/encode/sequenced_order_executed`: an Order Executed framed as one Sequenced
//!   Data packet (`encode_sequenced_into`);
//! - `soupbin/decode/sequenced_order_executed`: splitting that packet off a buffer and
//!   decoding its OUCH payload, what a client's read loop does per message;
//! - `soupbin/decode/stream_64_sequenced`: the same over a buffer of 64 back-to-back packets
//!   (throughput per packet), as received in one read.

// Benchmarks unwrap freely: the messages are fixed and valid, so a failure is a broken
// benchmark, and the panic says which.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use keel_protocol::ouch::{
    BboWeightIndicator, BuySellIndicator, Capacity, CrossType, CustomerType, DisplayType,
    EnterOrder, InboundMessage, IntermarketSweepEligibility, LiquidityFlag, OrderAccepted,
    OrderExecuted, OrderState, OutboundMessage, Price, TimeInForce,
};
use keel_protocol::soupbin::{
    decode_client, ClientPacket, FrameDecoder, LoginRequest, Password, ServerPacket, SessionId,
    SERVER_PACKET_BYTES_MAX_DEFAULT as DEFAULT_MAX_SERVER_PACKET_LEN,
};
use keel_protocol::{Firm, OrderToken, Stock, Username};

fn enter_order() -> EnterOrder {
    EnterOrder {
        order_token: OrderToken::new("ORD0000012345").unwrap(),
        side: BuySellIndicator::Buy,
        shares: 100,
        stock: Stock::new("BTC-PERP").unwrap(),
        price: Price(1_002_500),
        time_in_force: TimeInForce::SYSTEM_HOURS,
        firm: Firm::BLANK,
        display: DisplayType::Attributable,
        capacity: Capacity::Agency,
        intermarket_sweep: IntermarketSweepEligibility::NotEligible,
        minimum_quantity: 0,
        cross_type: CrossType::NoCross,
        customer_type: CustomerType::NotRetailDesignated,
    }
}

fn order_accepted() -> OrderAccepted {
    let order = enter_order();
    OrderAccepted {
        timestamp: 34_200_000_000_123,
        order_token: order.order_token,
        side: order.side,
        shares: order.shares,
        stock: order.stock,
        price: order.price,
        time_in_force: order.time_in_force,
        firm: Firm::new("KEEL").unwrap(),
        display: order.display,
        order_reference_number: 987_654_321,
        capacity: order.capacity,
        intermarket_sweep: order.intermarket_sweep,
        minimum_quantity: 0,
        cross_type: order.cross_type,
        order_state: OrderState::Live,
        bbo_weight_indicator: BboWeightIndicator::Unspecified,
    }
}

fn order_executed() -> OrderExecuted {
    OrderExecuted {
        timestamp: 34_200_000_000_456,
        order_token: OrderToken::new("ORD0000012345").unwrap(),
        executed_shares: 40,
        execution_price: Price(1_002_500),
        liquidity_flag: LiquidityFlag::Added,
        match_number: 5_551_212,
    }
}

fn login_request() -> LoginRequest {
    LoginRequest {
        username: Username::new("alice").unwrap(),
        password: Password::new("s3cret").unwrap(),
        requested_session: SessionId::BLANK,
        requested_sequence_number: 1,
    }
}

fn configure(group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>) {
    group.sample_size(30);
    group.warm_up_time(Duration::from_millis(300));
    group.measurement_time(Duration::from_secs(1));
}

fn ouch(c: &mut Criterion) {
    let mut group = c.benchmark_group("ouch");
    group.throughput(Throughput::Elements(1));
    configure(&mut group);
    let mut buf = [0u8; 128];

    let inbound = InboundMessage::EnterOrder(enter_order());
    let len = inbound.encode_into(&mut buf).unwrap();
    let enter_bytes = buf[..len].to_vec();
    group.bench_function("encode/enter_order", |b| {
        b.iter(|| {
            black_box(&inbound)
                .encode_into(black_box(&mut buf))
                .unwrap()
        })
    });
    group.bench_function("decode/enter_order", |b| {
        b.iter(|| InboundMessage::decode(black_box(&enter_bytes)).unwrap())
    });

    for (name, message) in [
        (
            "order_accepted",
            OutboundMessage::OrderAccepted(order_accepted()),
        ),
        (
            "order_executed",
            OutboundMessage::OrderExecuted(order_executed()),
        ),
    ] {
        let len = message.encode_into(&mut buf).unwrap();
        let bytes = buf[..len].to_vec();
        group.bench_function(format!("encode/{name}"), |b| {
            b.iter(|| {
                black_box(&message)
                    .encode_into(black_box(&mut buf))
                    .unwrap()
            })
        });
        group.bench_function(format!("decode/{name}"), |b| {
            b.iter(|| OutboundMessage::decode(black_box(&bytes)).unwrap())
        });
    }
    group.finish();
}

fn soupbin(c: &mut Criterion) {
    let mut group = c.benchmark_group("soupbin");
    group.throughput(Throughput::Elements(1));
    configure(&mut group);
    let mut buf = [0u8; 128];

    let login = ClientPacket::LoginRequest(login_request());
    let len = login.encode_into(&mut buf).unwrap();
    let login_bytes = buf[..len].to_vec();
    group.bench_function("encode/login_request", |b| {
        b.iter(|| black_box(&login).encode_into(black_box(&mut buf)).unwrap())
    });
    group.bench_function("decode/login_request", |b| {
        b.iter(|| decode_client(black_box(&login_bytes)).unwrap())
    });

    let executed = OutboundMessage::OrderExecuted(order_executed());
    let len = executed.encode_sequenced_into(&mut buf).unwrap();
    let packet = buf[..len].to_vec();
    group.bench_function("encode/sequenced_order_executed", |b| {
        b.iter(|| {
            black_box(&executed)
                .encode_sequenced_into(black_box(&mut buf))
                .unwrap()
        })
    });
    let decoder = FrameDecoder::new(DEFAULT_MAX_SERVER_PACKET_LEN);
    let decode_one = |bytes: &[u8]| -> (OutboundMessage, usize) {
        let (frame, used) = decoder.decode_server(bytes).unwrap().unwrap();
        let ServerPacket::SequencedData(payload) = frame else {
            panic!("expected Sequenced Data, got {frame:?}");
        };
        (OutboundMessage::decode(payload).unwrap(), used)
    };
    group.bench_function("decode/sequenced_order_executed", |b| {
        b.iter(|| decode_one(black_box(&packet)))
    });

    const PACKETS: usize = 64;
    let stream: Vec<u8> = packet.repeat(PACKETS);
    group.throughput(Throughput::Elements(PACKETS as u64));
    group.bench_function("decode/stream_64_sequenced", |b| {
        b.iter(|| {
            let mut rest = black_box(stream.as_slice());
            let mut shares = 0u64;
            while !rest.is_empty() {
                let (message, used) = decode_one(rest);
                if let OutboundMessage::OrderExecuted(m) = message {
                    shares += u64::from(m.executed_shares);
                }
                rest = &rest[used..];
            }
            shares
        })
    });
    group.finish();
}

criterion_group!(benches, ouch, soupbin);
criterion_main!(benches);
