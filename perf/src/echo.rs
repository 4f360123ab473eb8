//! `keel-perf echo-server`: the floor under the end-to-end figures.
//!
//! A one-thread mio server speaking the same SoupBinTCP/OUCH subset as `keel serve` but
//! doing no exchange work: it accepts any login, answers every Enter Order at once with
//! Order Accepted (and, for an IOC, an Order Executed for all its shares), and every Cancel
//! Order with Order Canceled. No matching loop, no journal, no queues between threads.
//! Run under the same generator (`keel-perf e2e --echo`), it measures what loopback TCP,
//! wake-ups and the generator itself cost on this machine; whatever `keel serve` adds on
//! top of that is the node's own cost.

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use keel_protocol::ouch::{
    BboWeightIndicator, CancelReason, InboundMessage, LiquidityFlag, OrderAccepted, OrderCanceled,
    OrderExecuted, OrderState, OutboundMessage, TimeInForce,
};
use keel_protocol::soupbin::{ClientPacket, FrameDecoder, LoginAccepted, ServerPacket, SessionId};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};

const LISTENER: Token = Token(0);
const NS_PER_DAY: u64 = 86_400 * 1_000_000_000;

/// `keel-perf echo-server` options.
#[derive(Clone, Debug, clap::Args)]
pub struct EchoArgs {
    /// Address to listen on (port 0: any free port; the address is printed).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
}

struct Connection {
    stream: TcpStream,
    rbuf: Vec<u8>,
    wbuf: Vec<u8>,
    next_seq: u64,
}

/// Serves until killed.
pub fn main(args: &EchoArgs) -> anyhow::Result<()> {
    let mut poll = Poll::new()?;
    let mut listener = TcpListener::bind(args.listen).context("bind")?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    eprintln!(
        "keel serve: listening on {} (keel-perf echo-server: no matching, no journal)",
        listener.local_addr()?
    );
    let mut server = Echo {
        session: SessionId::new("ECHO").context("session")?,
        decoder: FrameDecoder::default(),
        match_number: 0,
        chunk: vec![0u8; 256 * 1024],
    };
    let mut connections: HashMap<Token, Connection> = HashMap::new();
    let mut next_token = 1usize;
    let mut events = Events::with_capacity(256);
    loop {
        match poll.poll(&mut events, Some(Duration::from_secs(1))) {
            Ok(()) => {}
            Err(error) if error.kind() == ErrorKind::Interrupted => continue,
            Err(error) => return Err(error.into()),
        }
        for event in events.iter() {
            if event.token() == LISTENER {
                accept_all(&poll, &listener, &mut connections, &mut next_token)?;
                continue;
            }
            let token = event.token();
            let Some(connection) = connections.get_mut(&token) else {
                continue;
            };
            if server.serve(connection) {
                if let Some(mut connection) = connections.remove(&token) {
                    let _ = poll.registry().deregister(&mut connection.stream);
                }
            }
        }
    }
}

/// Accepts every pending connection and registers it under a new token.
fn accept_all(
    poll: &Poll,
    listener: &TcpListener,
    connections: &mut HashMap<Token, Connection>,
    next_token: &mut usize,
) -> anyhow::Result<()> {
    while let Ok((mut stream, _)) = listener.accept() {
        let token = Token(*next_token);
        *next_token += 1;
        let _ = stream.set_nodelay(true);
        poll.registry()
            .register(&mut stream, token, Interest::READABLE | Interest::WRITABLE)?;
        connections.insert(
            token,
            Connection {
                stream,
                rbuf: Vec::with_capacity(64 * 1024),
                wbuf: Vec::with_capacity(64 * 1024),
                next_seq: 1,
            },
        );
    }
    Ok(())
}

/// What the server shares across connections.
struct Echo {
    session: SessionId,
    decoder: FrameDecoder,
    match_number: u64,
    /// Read buffer.
    chunk: Vec<u8>,
}

impl Echo {
    /// Reads what `connection` sent, answers it and writes what it can; whether the
    /// connection is over (closed, failed, logged out or sent garbage).
    fn serve(&mut self, connection: &mut Connection) -> bool {
        let mut closed = self.read(connection);
        let mut consumed = 0;
        while let Ok(Some((packet, used))) =
            self.decoder.decode_client(&connection.rbuf[consumed..])
        {
            consumed += used;
            match packet {
                ClientPacket::LoginRequest(_) => {
                    let _ = ServerPacket::LoginAccepted(LoginAccepted {
                        session: self.session,
                        sequence_number: connection.next_seq,
                    })
                    .encode(&mut connection.wbuf);
                }
                ClientPacket::UnsequencedData(payload) => {
                    let timestamp = crate::sys::real_ns() % NS_PER_DAY;
                    let Ok(message) = InboundMessage::decode(payload) else {
                        closed = true;
                        break;
                    };
                    answer(
                        &message,
                        timestamp,
                        &mut self.match_number,
                        &mut connection.wbuf,
                        &mut connection.next_seq,
                    );
                }
                ClientPacket::LogoutRequest => closed = true,
                ClientPacket::ClientHeartbeat | ClientPacket::Debug(_) => {}
            }
        }
        connection.rbuf.drain(..consumed);
        write_out(connection);
        closed
    }

    /// Reads everything available into the connection's buffer; whether it closed.
    fn read(&mut self, connection: &mut Connection) -> bool {
        loop {
            match connection.stream.read(&mut self.chunk) {
                Ok(0) => return true,
                Ok(n) => connection.rbuf.extend_from_slice(&self.chunk[..n]),
                Err(error) if error.kind() == ErrorKind::WouldBlock => return false,
                Err(error) if error.kind() == ErrorKind::Interrupted => continue,
                Err(_) => return true,
            }
        }
    }
}

/// Writes as much of the connection's pending output as the socket takes.
fn write_out(connection: &mut Connection) {
    let mut written = 0;
    while written < connection.wbuf.len() {
        match connection.stream.write(&connection.wbuf[written..]) {
            Ok(0) => break,
            Ok(n) => written += n,
            Err(error) if error.kind() == ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
    }
    connection.wbuf.drain(..written);
}

fn answer(
    message: &InboundMessage,
    timestamp: u64,
    match_number: &mut u64,
    out: &mut Vec<u8>,
    next_seq: &mut u64,
) {
    let mut push = |reply: OutboundMessage| {
        reply.encode_sequenced(out);
        *next_seq += 1;
    };
    match message {
        InboundMessage::EnterOrder(order) => {
            push(OutboundMessage::OrderAccepted(OrderAccepted {
                timestamp,
                order_token: order.order_token,
                side: order.side,
                shares: order.shares,
                stock: order.stock,
                price: order.price,
                time_in_force: order.time_in_force,
                firm: order.firm,
                display: order.display,
                order_reference_number: *match_number,
                capacity: order.capacity,
                intermarket_sweep: order.intermarket_sweep,
                minimum_quantity: order.minimum_quantity,
                cross_type: order.cross_type,
                order_state: OrderState::Live,
                bbo_weight_indicator: BboWeightIndicator::Unspecified,
            }));
            if order.time_in_force == TimeInForce::IMMEDIATE_OR_CANCEL {
                *match_number += 1;
                push(OutboundMessage::OrderExecuted(OrderExecuted {
                    timestamp,
                    order_token: order.order_token,
                    executed_shares: order.shares,
                    execution_price: order.price,
                    liquidity_flag: LiquidityFlag::Removed,
                    match_number: *match_number,
                }));
            }
        }
        InboundMessage::CancelOrder(cancel) => {
            push(OutboundMessage::OrderCanceled(OrderCanceled {
                timestamp,
                order_token: cancel.order_token,
                decrement_shares: cancel.shares,
                reason: CancelReason::UserRequested,
            }));
        }
        _ => {}
    }
}
