//! One readable line per message, as `keel client` prints them:
//!
//! ```text
//! #5 accepted A1 buy 10 BTC-PERP @ 100.2500 ref 17
//! #6 executed A1 4 @ 100.2500 (removed liquidity) match 3
//! #7 canceled A1 6 (user requested)
//! #8 rejected B2 (invalid stock)
//! ```

use std::fmt;

use super::{format_price, ClientEvent};
use keel_protocol::ouch::{
    BrokenTradeReason, BuySellIndicator, CancelReason, DisplayType, EventCode, LiquidityFlag,
    OrderAccepted, OrderReplaced, OrderState, OutboundMessage, Price, RejectReason, TimeInForce,
};

/// `buy`, `sell`, `sell short`, `sell short exempt`.
pub fn side_text(side: BuySellIndicator) -> &'static str {
    match side {
        BuySellIndicator::Buy => "buy",
        BuySellIndicator::Sell => "sell",
        BuySellIndicator::SellShort => "sell short",
        BuySellIndicator::SellShortExempt => "sell short exempt",
    }
}

/// The specification's meaning of an Order Canceled reason, in lower case.
pub fn cancel_reason_text(reason: CancelReason) -> &'static str {
    match reason {
        CancelReason::UserRequested => "user requested",
        CancelReason::ImmediateOrCancel => "immediate or cancel",
        CancelReason::Timeout => "timeout",
        CancelReason::Supervisory => "supervisory",
        CancelReason::RegulatoryRestriction => "regulatory restriction",
        CancelReason::SelfMatchPrevention => "self-match prevention",
        CancelReason::SystemCancel => "system cancel",
        CancelReason::CrossCanceled => "cross canceled",
        CancelReason::MarketCollars => "market collars",
        CancelReason::Halted => "halted",
        CancelReason::OpenProtection => "open protection",
        CancelReason::Closed => "closed",
    }
}

/// The specification's meaning of an Order Rejected reason, in lower case.
pub fn reject_reason_text(reason: RejectReason) -> &'static str {
    match reason {
        RejectReason::TestMode => "test mode",
        RejectReason::Halted => "halted",
        RejectReason::SharesExceedSafetyThreshold => "shares exceed safety threshold",
        RejectReason::InvalidStock => "invalid stock",
        RejectReason::InvalidDisplayType => "invalid display type",
        RejectReason::Closed => "exchange closed",
        RejectReason::FirmNotAuthorized => "firm not authorized",
        RejectReason::OutsidePermittedTimes => "outside of permitted times",
        RejectReason::NotAllowedInCross => "not allowed in this cross",
        RejectReason::InvalidPrice => "invalid price",
        RejectReason::InvalidMinimumQuantity => "invalid minimum quantity",
        RejectReason::Other => "other",
        RejectReason::InvalidMidPointPostOnlyPrice => "invalid mid-point post-only price",
        RejectReason::RejectAllEnabled => "reject all enabled",
        RejectReason::EasyToBorrow => "easy to borrow",
        RejectReason::RestrictedSymbol => "restricted symbol",
        RejectReason::IsoRestriction => "ISO order restriction",
        RejectReason::OddLotRestriction => "odd lot restriction",
        RejectReason::MidPointRestriction => "mid-point restriction",
        RejectReason::PreMarketRestriction => "pre-market restriction",
        RejectReason::PostMarketRestriction => "post-market restriction",
        RejectReason::ShortSaleRestriction => "short sale restriction",
        RejectReason::OnOpenRestriction => "on-open restriction",
        RejectReason::OnCloseRestriction => "on-close restriction",
        RejectReason::TwoSidedQuote => "two-sided quote",
        RejectReason::ExceededSharesLimit => "exceeded shares limit",
        RejectReason::ExceededDollarValueLimit => "exceeded dollar value limit",
    }
}

/// `added liquidity`, `removed liquidity`, or the flag's code for the cross-specific ones.
pub fn liquidity_text(flag: LiquidityFlag) -> String {
    match flag {
        LiquidityFlag::Added => "added liquidity".into(),
        LiquidityFlag::Removed => "removed liquidity".into(),
        other => format!("liquidity flag {other}"),
    }
}

fn broken_reason_text(reason: BrokenTradeReason) -> &'static str {
    match reason {
        BrokenTradeReason::Erroneous => "erroneous",
        BrokenTradeReason::Consent => "consent",
        BrokenTradeReason::Supervisory => "supervisory",
        BrokenTradeReason::External => "external",
    }
}

/// ` @ 100.2500`, or ` market` for a market order.
fn at_price(price: Price) -> String {
    if price.is_market() {
        " market".into()
    } else {
        format!(" @ {}", format_price(price))
    }
}

/// Order qualifiers worth showing: ` ioc`, ` fok`, ` post-only`, ` (dead)`, and the raw
/// Time In Force when it is a number of seconds.
fn qualifiers(
    time_in_force: TimeInForce,
    minimum_quantity: u32,
    shares: u32,
    display: DisplayType,
    state: OrderState,
) -> String {
    let mut out = String::new();
    match time_in_force {
        TimeInForce::IMMEDIATE_OR_CANCEL if minimum_quantity == shares && shares > 0 => {
            out.push_str(" fok")
        }
        TimeInForce::IMMEDIATE_OR_CANCEL => out.push_str(" ioc"),
        TimeInForce::MARKET_HOURS | TimeInForce::SYSTEM_HOURS => {}
        TimeInForce(seconds) => out.push_str(&format!(" tif {seconds}s")),
    }
    if minimum_quantity != 0 && time_in_force != TimeInForce::IMMEDIATE_OR_CANCEL {
        out.push_str(&format!(" min {minimum_quantity}"));
    }
    if matches!(
        display,
        DisplayType::PostOnly | DisplayType::PostOnlyAttributable
    ) {
        out.push_str(" post-only");
    }
    if state == OrderState::Dead {
        out.push_str(" (dead)");
    }
    out
}

/// The message as one line, without the sequence number.
pub fn describe(message: &OutboundMessage) -> String {
    match message {
        OutboundMessage::SystemEvent(m) => match m.event_code {
            EventCode::StartOfDay => "system event: start of day".into(),
            EventCode::EndOfDay => "system event: end of day".into(),
        },
        OutboundMessage::OrderAccepted(m) => describe_accepted(m),
        OutboundMessage::OrderReplaced(m) => describe_replaced(m),
        OutboundMessage::OrderCanceled(m) => format!(
            "canceled {} {} ({})",
            m.order_token,
            m.decrement_shares,
            cancel_reason_text(m.reason)
        ),
        OutboundMessage::AiqCanceled(m) => format!(
            "canceled {} {} ({}); prevented {}{} ({})",
            m.order_token,
            m.decrement_shares,
            cancel_reason_text(m.reason),
            m.quantity_prevented_from_trading,
            at_price(m.execution_price),
            liquidity_text(m.liquidity_flag)
        ),
        OutboundMessage::OrderExecuted(m) => format!(
            "executed {} {}{} ({}) match {}",
            m.order_token,
            m.executed_shares,
            at_price(m.execution_price),
            liquidity_text(m.liquidity_flag),
            m.match_number
        ),
        OutboundMessage::BrokenTrade(m) => format!(
            "broken trade {} match {} ({})",
            m.order_token,
            m.match_number,
            broken_reason_text(m.reason)
        ),
        OutboundMessage::OrderRejected(m) => format!(
            "rejected {} ({})",
            m.order_token,
            reject_reason_text(m.reason)
        ),
        OutboundMessage::CancelPending(m) => format!("cancel pending {}", m.order_token),
        OutboundMessage::CancelReject(m) => format!(
            "cancel rejected {} (no such live order, or nothing to cancel)",
            m.order_token
        ),
        OutboundMessage::OrderPriorityUpdate(m) => format!(
            "priority update {}{} ref {}",
            m.order_token,
            at_price(m.price),
            m.order_reference_number
        ),
        OutboundMessage::OrderModified(m) => format!(
            "modified {} {} {}",
            m.order_token,
            side_text(m.side),
            m.shares
        ),
    }
}

fn describe_accepted(m: &OrderAccepted) -> String {
    format!(
        "accepted {} {} {} {}{}{} ref {}",
        m.order_token,
        side_text(m.side),
        m.shares,
        m.stock,
        at_price(m.price),
        qualifiers(
            m.time_in_force,
            m.minimum_quantity,
            m.shares,
            m.display,
            m.order_state
        ),
        m.order_reference_number
    )
}

fn describe_replaced(m: &OrderReplaced) -> String {
    format!(
        "replaced {} -> {} {} {} {}{}{} ref {}",
        m.previous_order_token,
        m.replacement_order_token,
        side_text(m.side),
        m.shares,
        m.stock,
        at_price(m.price),
        qualifiers(
            m.time_in_force,
            m.minimum_quantity,
            m.shares,
            m.display,
            m.order_state
        ),
        m.order_reference_number
    )
}

impl fmt::Display for ClientEvent {
    /// Messages as `#SEQ description`; connection events start with `--`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientEvent::Message { seq, message } => write!(f, "#{seq} {}", describe(message)),
            ClientEvent::Undecodable { seq, payload, error } => write!(
                f,
                "#{seq} undecodable message ({} bytes): {error}",
                payload.len()
            ),
            ClientEvent::Disconnected { endpoint, reason } => {
                write!(f, "-- disconnected from {endpoint}: {reason}")
            }
            ClientEvent::Reconnected {
                endpoint,
                session,
                next_sequence_number,
            } => write!(
                f,
                "-- reconnected to {endpoint} (session {session}), resuming at #{next_sequence_number}"
            ),
            ClientEvent::SequenceGap { expected, next } => write!(
                f,
                "-- gap: the server resumed at #{next}; messages #{expected} to #{} were not received",
                next.saturating_sub(1)
            ),
            ClientEvent::EndOfSession => f.write_str("-- end of session"),
            ClientEvent::LoggedOut => f.write_str("-- logged out"),
            ClientEvent::GaveUp { reason } => write!(f, "-- gave up reconnecting: {reason}"),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use keel_protocol::ouch::{
        BboWeightIndicator, Capacity, CrossType, IntermarketSweepEligibility, OrderAccepted,
        OrderCanceled, OrderExecuted, OrderRejected,
    };
    use keel_protocol::{Firm, OrderToken, Stock};

    #[test]
    fn lines_match_the_documented_shape() {
        let token = OrderToken::new("A1").unwrap();
        let accepted = OutboundMessage::OrderAccepted(OrderAccepted {
            timestamp: 1,
            order_token: token,
            side: BuySellIndicator::Buy,
            shares: 10,
            stock: Stock::new("BTC-PERP").unwrap(),
            price: Price(1_002_500),
            time_in_force: TimeInForce::SYSTEM_HOURS,
            firm: Firm::BLANK,
            display: DisplayType::Anonymous,
            order_reference_number: 17,
            capacity: Capacity::Agency,
            intermarket_sweep: IntermarketSweepEligibility::NotEligible,
            minimum_quantity: 0,
            cross_type: CrossType::NoCross,
            order_state: OrderState::Live,
            bbo_weight_indicator: BboWeightIndicator::Unspecified,
        });
        let event = ClientEvent::Message {
            seq: 5,
            message: accepted,
        };
        assert_eq!(
            event.to_string(),
            "#5 accepted A1 buy 10 BTC-PERP @ 100.2500 ref 17"
        );
        let executed = OutboundMessage::OrderExecuted(OrderExecuted {
            timestamp: 1,
            order_token: token,
            executed_shares: 4,
            execution_price: Price(1_002_500),
            liquidity_flag: LiquidityFlag::Removed,
            match_number: 3,
        });
        assert_eq!(
            describe(&executed),
            "executed A1 4 @ 100.2500 (removed liquidity) match 3"
        );
        let canceled = OutboundMessage::OrderCanceled(OrderCanceled {
            timestamp: 1,
            order_token: token,
            decrement_shares: 6,
            reason: CancelReason::UserRequested,
        });
        assert_eq!(describe(&canceled), "canceled A1 6 (user requested)");
        let rejected = OutboundMessage::OrderRejected(OrderRejected {
            timestamp: 1,
            order_token: OrderToken::new("B2").unwrap(),
            reason: RejectReason::InvalidStock,
        });
        assert_eq!(describe(&rejected), "rejected B2 (invalid stock)");
    }
}
