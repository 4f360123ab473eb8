//! Pure translation between OUCH 4.2 fields and the engine's vocabulary, as documented in
//! [`super::ouch`] ("Mapping to the engine"). No state: the session resolves the Stock to an
//! instrument, allocates order ids and remembers tokens; these functions only decide what an
//! order *means* and which OUCH code answers an engine outcome.

use keel_engine::{
    AccountId, CancelReason as EngineCancelReason, InstrumentId, NewOrder, OrderId, Qty,
    RejectReason as EngineRejectReason, SelfTradePrevention, Side, TimeInForce as EngineTif,
};

use super::ouch::{
    BuySellIndicator, CancelOrder, CancelReason, CrossType, DisplayType, EnterOrder, LiquidityFlag,
    ModifyOrder, Price, RejectReason, ReplaceOrder, TimeInForce,
};

/// How an instrument's OUCH prices (four implied decimals) relate to engine ticks: the
/// number of OUCH price units in one tick. `1` makes a tick $0.0001; `100` a cent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PriceScale {
    units_per_tick: u32,
}

impl Default for PriceScale {
    /// One tick per OUCH unit.
    fn default() -> PriceScale {
        PriceScale { units_per_tick: 1 }
    }
}

impl PriceScale {
    /// A scale of `units_per_tick` OUCH units per tick; `None` for 0.
    pub const fn new(units_per_tick: u32) -> Option<PriceScale> {
        if units_per_tick == 0 {
            None
        } else {
            Some(PriceScale { units_per_tick })
        }
    }

    /// OUCH units per tick.
    pub const fn units_per_tick(&self) -> u32 {
        self.units_per_tick
    }

    /// A limit price in ticks, or `None` for [`Price::MARKET`]. Refuses (with `X`, invalid
    /// price) 0, anything above [`Price::LIMIT_MAX`] other than the market price, and prices
    /// that are not a whole number of ticks.
    pub fn to_ticks(&self, price: Price) -> Result<Option<i64>, RejectReason> {
        if price.is_market() {
            return Ok(None);
        }
        if price.0 == 0 || price > Price::LIMIT_MAX || price.0 % self.units_per_tick != 0 {
            return Err(RejectReason::InvalidPrice);
        }
        Ok(Some(i64::from(price.0 / self.units_per_tick)))
    }

    /// The OUCH price of `ticks`, or `None` if it is not a valid limit price
    /// (`1..=`[`Price::LIMIT_MAX`]).
    pub fn to_price(&self, ticks: i64) -> Option<Price> {
        let units = u64::try_from(ticks)
            .ok()?
            .checked_mul(u64::from(self.units_per_tick))?;
        let units = u32::try_from(units).ok()?;
        let price = Price(units);
        (units >= 1 && price <= Price::LIMIT_MAX).then_some(price)
    }
}

/// The engine side of a Buy/Sell Indicator: `B` buys; `S`, `T` and `E` sell.
pub fn side(indicator: BuySellIndicator) -> Side {
    match indicator {
        BuySellIndicator::Buy => Side::Buy,
        BuySellIndicator::Sell
        | BuySellIndicator::SellShort
        | BuySellIndicator::SellShortExempt => Side::Sell,
    }
}

/// What the session knows about an Enter Order beyond its fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OrderContext {
    /// The engine order id the session allocated for this token.
    pub order_id: OrderId,
    /// The user's account.
    pub account: AccountId,
    /// The instrument the Stock resolved to.
    pub instrument: InstrumentId,
    /// The instrument's price scale.
    pub scale: PriceScale,
    /// The user's configured self-trade prevention.
    pub stp: SelfTradePrevention,
}

/// Translates an Enter Order into an engine order, or the OUCH reason to reject it with.
pub fn enter_order_to_new_order(
    msg: &EnterOrder,
    ctx: &OrderContext,
) -> Result<NewOrder, RejectReason> {
    if msg.shares == 0 {
        return Err(RejectReason::Other);
    }
    if msg.cross_type != CrossType::NoCross {
        return Err(RejectReason::NotAllowedInCross);
    }
    let price = ctx.scale.to_ticks(msg.price)?;
    let ioc = match msg.time_in_force {
        TimeInForce::IMMEDIATE_OR_CANCEL => true,
        TimeInForce::MARKET_HOURS | TimeInForce::SYSTEM_HOURS => false,
        _ => return Err(RejectReason::Other),
    };
    let post_only = match msg.display {
        DisplayType::Anonymous | DisplayType::Attributable => false,
        DisplayType::PostOnly | DisplayType::PostOnlyAttributable => true,
        _ => return Err(RejectReason::InvalidDisplayType),
    };
    if post_only && (ioc || price.is_none()) {
        return Err(RejectReason::InvalidDisplayType);
    }
    let tif = match msg.minimum_quantity {
        0 if ioc => EngineTif::Ioc,
        0 => EngineTif::Gtc,
        min if ioc && min == msg.shares => EngineTif::Fok,
        _ => return Err(RejectReason::InvalidMinimumQuantity),
    };
    Ok(NewOrder {
        order_id: ctx.order_id,
        account: ctx.account,
        instrument: ctx.instrument,
        side: side(msg.side),
        price,
        qty: Qty::from(msg.shares),
        tif,
        post_only,
        stp: ctx.stp,
    })
}

/// What a Replace Order asks of the engine: a new limit price in ticks and a new quantity.
/// Market prices, a zero quantity, and changes of time in force, display or minimum quantity
/// away from plain values are refused (the engine's replace changes price and size only).
pub fn replace_order_price_qty(
    msg: &ReplaceOrder,
    scale: PriceScale,
) -> Result<(i64, Qty), RejectReason> {
    if msg.shares == 0 {
        return Err(RejectReason::Other);
    }
    let price = scale
        .to_ticks(msg.price)?
        .ok_or(RejectReason::InvalidPrice)?;
    if !matches!(
        msg.time_in_force,
        TimeInForce::MARKET_HOURS | TimeInForce::SYSTEM_HOURS
    ) {
        return Err(RejectReason::Other);
    }
    if !matches!(
        msg.display,
        DisplayType::Anonymous | DisplayType::Attributable
    ) {
        return Err(RejectReason::InvalidDisplayType);
    }
    if msg.minimum_quantity != 0 {
        return Err(RejectReason::InvalidMinimumQuantity);
    }
    Ok((price, Qty::from(msg.shares)))
}

/// What a Cancel Order (or a Modify Order's size) asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CancelIntent {
    /// Shares 0: cancel the whole order.
    CancelAll,
    /// Reduce the order so that at most this many shares can still execute.
    ReduceTo(Qty),
}

/// The intent of a Cancel Order: Shares is the new intended size, 0 meaning cancel all.
pub fn cancel_intent(msg: &CancelOrder) -> CancelIntent {
    size_intent(msg.shares)
}

/// The intent of a Modify Order on an order currently on `current` side: `None` when the
/// requested side change is not one the specification allows (only among `S`, `T` and `E`,
/// or no change); otherwise the size intent. Short-sale flavours do not matter to the engine.
pub fn modify_intent(msg: &ModifyOrder, current: BuySellIndicator) -> Option<CancelIntent> {
    (side(msg.side) == side(current)).then(|| size_intent(msg.shares))
}

fn size_intent(shares: u32) -> CancelIntent {
    if shares == 0 {
        CancelIntent::CancelAll
    } else {
        CancelIntent::ReduceTo(Qty::from(shares))
    }
}

/// The OUCH reason for an engine rejection.
pub fn reject_reason(reason: EngineRejectReason) -> RejectReason {
    match reason {
        EngineRejectReason::UnknownInstrument => RejectReason::InvalidStock,
        EngineRejectReason::DuplicateOrderId
        | EngineRejectReason::Invalid
        | EngineRejectReason::PostOnly => RejectReason::Other,
    }
}

/// The OUCH reason for an engine cancel. A mass cancel is reported as user requested; a
/// session canceling on disconnect or an operator action may prefer
/// [`CancelReason::SystemCancel`] or [`CancelReason::Supervisory`].
pub fn cancel_reason(reason: EngineCancelReason) -> CancelReason {
    match reason {
        EngineCancelReason::User | EngineCancelReason::Mass => CancelReason::UserRequested,
        EngineCancelReason::Ioc | EngineCancelReason::Fok => CancelReason::ImmediateOrCancel,
        EngineCancelReason::Stp => CancelReason::SelfMatchPrevention,
    }
}

/// The liquidity flag of one side of a trade: the incoming (taker) order removed liquidity,
/// the resting (maker) order added it.
pub fn liquidity_flag(is_taker: bool) -> LiquidityFlag {
    if is_taker {
        LiquidityFlag::Removed
    } else {
        LiquidityFlag::Added
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ouch::{Capacity, CustomerType, IntermarketSweepEligibility};
    use crate::{Firm, OrderToken, Stock};

    fn enter(price: Price, tif: TimeInForce, display: DisplayType, min: u32) -> EnterOrder {
        EnterOrder {
            order_token: OrderToken::new("T1").unwrap(),
            side: BuySellIndicator::Buy,
            shares: 100,
            stock: Stock::new("BTC-PERP").unwrap(),
            price,
            time_in_force: tif,
            firm: Firm::BLANK,
            display,
            capacity: Capacity::Agency,
            intermarket_sweep: IntermarketSweepEligibility::NotEligible,
            minimum_quantity: min,
            cross_type: CrossType::NoCross,
            customer_type: CustomerType::PortDefault,
        }
    }

    const CTX: OrderContext = OrderContext {
        order_id: 7,
        account: 3,
        instrument: 1,
        scale: PriceScale {
            units_per_tick: 100,
        },
        stp: SelfTradePrevention::CancelNewest,
    };

    #[test]
    fn gtc_limit() {
        let o = enter(
            Price(1_002_500),
            TimeInForce::SYSTEM_HOURS,
            DisplayType::Anonymous,
            0,
        );
        let n = enter_order_to_new_order(&o, &CTX).unwrap();
        assert_eq!(n.price, Some(10_025));
        assert_eq!(n.tif, EngineTif::Gtc);
        assert_eq!(n.qty, 100);
        assert_eq!(n.side, Side::Buy);
        assert!(!n.post_only);
        assert_eq!(n.stp, SelfTradePrevention::CancelNewest);
        assert_eq!((n.order_id, n.account, n.instrument), (7, 3, 1));
    }

    #[test]
    fn ioc_fok_market_post_only() {
        let ioc = enter(
            Price(100),
            TimeInForce::IMMEDIATE_OR_CANCEL,
            DisplayType::Anonymous,
            0,
        );
        assert_eq!(
            enter_order_to_new_order(&ioc, &CTX).unwrap().tif,
            EngineTif::Ioc
        );
        let fok = enter(
            Price(100),
            TimeInForce::IMMEDIATE_OR_CANCEL,
            DisplayType::Anonymous,
            100,
        );
        assert_eq!(
            enter_order_to_new_order(&fok, &CTX).unwrap().tif,
            EngineTif::Fok
        );
        let market = enter(
            Price::MARKET,
            TimeInForce::IMMEDIATE_OR_CANCEL,
            DisplayType::Anonymous,
            0,
        );
        assert_eq!(enter_order_to_new_order(&market, &CTX).unwrap().price, None);
        let post = enter(
            Price(100),
            TimeInForce::MARKET_HOURS,
            DisplayType::PostOnly,
            0,
        );
        assert!(enter_order_to_new_order(&post, &CTX).unwrap().post_only);
    }

    #[test]
    fn rejections_use_spec_codes() {
        let cases = [
            (
                enter(
                    Price(150),
                    TimeInForce::SYSTEM_HOURS,
                    DisplayType::Anonymous,
                    0,
                ),
                RejectReason::InvalidPrice,
            ),
            (
                enter(
                    Price(0),
                    TimeInForce::SYSTEM_HOURS,
                    DisplayType::Anonymous,
                    0,
                ),
                RejectReason::InvalidPrice,
            ),
            (
                enter(
                    Price(2_000_000_000),
                    TimeInForce::SYSTEM_HOURS,
                    DisplayType::Anonymous,
                    0,
                ),
                RejectReason::InvalidPrice,
            ),
            (
                enter(Price(100), TimeInForce(60), DisplayType::Anonymous, 0),
                RejectReason::Other,
            ),
            (
                enter(
                    Price(100),
                    TimeInForce::SYSTEM_HOURS,
                    DisplayType::MidPointPeg,
                    0,
                ),
                RejectReason::InvalidDisplayType,
            ),
            (
                enter(
                    Price(100),
                    TimeInForce::IMMEDIATE_OR_CANCEL,
                    DisplayType::PostOnly,
                    0,
                ),
                RejectReason::InvalidDisplayType,
            ),
            (
                enter(
                    Price(100),
                    TimeInForce::SYSTEM_HOURS,
                    DisplayType::Anonymous,
                    100,
                ),
                RejectReason::InvalidMinimumQuantity,
            ),
            (
                enter(
                    Price(100),
                    TimeInForce::IMMEDIATE_OR_CANCEL,
                    DisplayType::Anonymous,
                    50,
                ),
                RejectReason::InvalidMinimumQuantity,
            ),
        ];
        for (order, reason) in cases {
            assert_eq!(
                enter_order_to_new_order(&order, &CTX),
                Err(reason),
                "{order:?}"
            );
        }
        let mut crossing = enter(
            Price(100),
            TimeInForce::SYSTEM_HOURS,
            DisplayType::Anonymous,
            0,
        );
        crossing.cross_type = CrossType::OpeningCross;
        assert_eq!(
            enter_order_to_new_order(&crossing, &CTX),
            Err(RejectReason::NotAllowedInCross)
        );
        crossing.cross_type = CrossType::NoCross;
        crossing.shares = 0;
        assert_eq!(
            enter_order_to_new_order(&crossing, &CTX),
            Err(RejectReason::Other)
        );
    }

    #[test]
    fn price_scale_round_trips() {
        let scale = PriceScale::new(100).unwrap();
        assert_eq!(scale.to_price(10_025), Some(Price(1_002_500)));
        assert_eq!(scale.to_ticks(Price(1_002_500)), Ok(Some(10_025)));
        assert_eq!(scale.to_price(0), None);
        assert_eq!(scale.to_price(-1), None);
        assert_eq!(scale.to_price(i64::MAX), None);
        assert_eq!(
            PriceScale::default().to_price(1_999_999_900),
            Some(Price::LIMIT_MAX)
        );
        assert_eq!(PriceScale::default().to_price(1_999_999_901), None);
        assert_eq!(PriceScale::new(0), None);
    }

    #[test]
    fn sides_intents_and_reasons() {
        assert_eq!(side(BuySellIndicator::SellShortExempt), Side::Sell);
        let token = OrderToken::new("T1").unwrap();
        assert_eq!(
            cancel_intent(&CancelOrder {
                order_token: token,
                shares: 0
            }),
            CancelIntent::CancelAll
        );
        assert_eq!(
            cancel_intent(&CancelOrder {
                order_token: token,
                shares: 5
            }),
            CancelIntent::ReduceTo(5)
        );
        let modify = ModifyOrder {
            order_token: token,
            side: BuySellIndicator::SellShort,
            shares: 3,
        };
        assert_eq!(
            modify_intent(&modify, BuySellIndicator::Sell),
            Some(CancelIntent::ReduceTo(3))
        );
        assert_eq!(modify_intent(&modify, BuySellIndicator::Buy), None);
        assert_eq!(
            cancel_reason(EngineCancelReason::Stp),
            CancelReason::SelfMatchPrevention
        );
        assert_eq!(
            cancel_reason(EngineCancelReason::Fok),
            CancelReason::ImmediateOrCancel
        );
        assert_eq!(
            reject_reason(EngineRejectReason::UnknownInstrument),
            RejectReason::InvalidStock
        );
        assert_eq!(liquidity_flag(true), LiquidityFlag::Removed);
        assert_eq!(liquidity_flag(false), LiquidityFlag::Added);
    }

    #[test]
    fn replace_checks() {
        let scale = PriceScale::default();
        let mut r = ReplaceOrder {
            existing_order_token: OrderToken::new("A").unwrap(),
            replacement_order_token: OrderToken::new("B").unwrap(),
            shares: 10,
            price: Price(500),
            time_in_force: TimeInForce::SYSTEM_HOURS,
            display: DisplayType::Anonymous,
            intermarket_sweep: IntermarketSweepEligibility::NotEligible,
            minimum_quantity: 0,
        };
        assert_eq!(replace_order_price_qty(&r, scale), Ok((500, 10)));
        r.price = Price::MARKET;
        assert_eq!(
            replace_order_price_qty(&r, scale),
            Err(RejectReason::InvalidPrice)
        );
        r.price = Price(500);
        r.time_in_force = TimeInForce::IMMEDIATE_OR_CANCEL;
        assert_eq!(replace_order_price_qty(&r, scale), Err(RejectReason::Other));
    }
}
