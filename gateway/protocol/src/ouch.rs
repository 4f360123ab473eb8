//! OUCH 4.2 messages: inbound (client → exchange) and outbound (exchange → client), each
//! with a decoder and an encoder, so the server and the client library share one codec.
//!
//! Every message has a fixed length determined by its type byte; a message is exactly one
//! SoupBinTCP Unsequenced Data (inbound) or Sequenced Data (outbound) payload. Integers are
//! unsigned big-endian; *Alpha* fields are printable ASCII right-padded with spaces
//! ([`super::Alpha`]); one-byte codes are the enums below, whose `from_code` refuses any byte
//! the specification does not list.
//!
//! | Message | Type | Length | Fields (width) |
//! |---|---|---|---|
//! | Enter Order | `O` | 49 | Order Token (14), Buy/Sell Indicator (1), Shares (4), Stock (8), Price (4), Time In Force (4), Firm (4), Display (1), Capacity (1), Intermarket Sweep Eligibility (1), Minimum Quantity (4), Cross Type (1), Customer Type (1) |
//! | Replace Order | `U` | 47 | Existing Order Token (14), Replacement Order Token (14), Shares (4), Price (4), Time In Force (4), Display (1), Intermarket Sweep Eligibility (1), Minimum Quantity (4) |
//! | Cancel Order | `X` | 19 | Order Token (14), Shares (4): the new intended size, 0 cancels all |
//! | Modify Order | `M` | 20 | Order Token (14), Buy/Sell Indicator (1), Shares (4) |
//! | System Event | `S` | 10 | Timestamp (8), Event Code (1) |
//! | Order Accepted | `A` | 66 | Timestamp (8), Order Token (14), Buy/Sell Indicator (1), Shares (4), Stock (8), Price (4), Time In Force (4), Firm (4), Display (1), Order Reference Number (8), Capacity (1), Intermarket Sweep Eligibility (1), Minimum Quantity (4), Cross Type (1), Order State (1), BBO Weight Indicator (1) |
//! | Order Replaced | `U` | 80 | Timestamp (8), Replacement Order Token (14), then as Order Accepted from Buy/Sell Indicator to Order State, Previous Order Token (14), BBO Weight Indicator (1) |
//! | Order Canceled | `C` | 28 | Timestamp (8), Order Token (14), Decrement Shares (4), Reason (1) |
//! | AIQ Canceled | `D` | 37 | Timestamp (8), Order Token (14), Decrement Shares (4), Reason (1), Quantity Prevented from Trading (4), Execution Price (4), Liquidity Flag (1) |
//! | Order Executed | `E` | 40 | Timestamp (8), Order Token (14), Executed Shares (4), Execution Price (4), Liquidity Flag (1), Match Number (8) |
//! | Broken Trade | `B` | 32 | Timestamp (8), Order Token (14), Match Number (8), Reason (1) |
//! | Order Rejected | `J` | 24 | Timestamp (8), Order Token (14), Reason (1) |
//! | Cancel Pending | `P` | 23 | Timestamp (8), Order Token (14) |
//! | Cancel Reject | `I` | 23 | Timestamp (8), Order Token (14) |
//! | Order Priority Update | `T` | 36 | Timestamp (8), Order Token (14), Price (4), Display (1), Order Reference Number (8) |
//! | Order Modified | `M` | 28 | Timestamp (8), Order Token (14), Buy/Sell Indicator (1), Shares (4) |
//!
//! Timestamps are nanoseconds since midnight. Prices are [`Price`]: four implied decimals.
//! `U` and `M` each name two messages, told apart by direction (and length).
//!
//! Not implemented: the Trade Correction (`F`), Executed with Reference Price (`G`) and
//! Price Correction (`K`) messages that later revisions and other versions define; an
//! outbound decoder refuses them as unknown types.
//!
//! # Mapping to the engine
//!
//! Pure translation helpers live in [`super::mapping`]; in short:
//!
//! - **Stock** names the instrument by its configured 8-character symbol; an unknown stock is
//!   rejected with [`RejectReason::InvalidStock`] (`S`).
//! - **Price** (four implied decimals) becomes engine ticks by dividing by the instrument's
//!   price scale (OUCH units per tick); a price that is 0, above [`Price::LIMIT_MAX`]
//!   ($199,999.9900), or not a whole number of ticks is rejected with `X`.
//! - **Market orders**: OUCH 4.2 expresses a market order with the special price
//!   [`Price::MARKET`] = `0x7FFFFFFF` ($214,748.3647), which the specification defines for
//!   market orders in a cross and Wireshark shows as "Market". Keel accepts that price as a
//!   market order in continuous trading too; no other value means "market". *Ambiguity:*
//!   OUCH 5.0 uses $200,000.0000 for continuous-market market orders; in 4.2 that value is
//!   above the maximum price and is rejected with `X`.
//! - **Time In Force** `0` → IOC; `99998` (market hours) and `99999` (system hours) → rests
//!   until canceled, i.e. GTC for the life of the session; any other value (a number of
//!   seconds) is not supported and rejected with `O`. *Ambiguity:* OUCH has no reject code
//!   for an unsupported time in force; `O` (other) is the closest.
//! - **Display** `P` (post-only) and `L` (post-only, attributable) → post-only; `Y` and `A`
//!   → an ordinary displayed order; every other display type (hidden, mid-point, retail,
//!   imbalance-only, ...) is rejected with `D`, as is post-only on an IOC or market order.
//! - **Minimum Quantity** equal to Shares on an IOC order → FOK; 0 → none; anything else is
//!   rejected with `N`.
//! - **Buy/Sell Indicator** `B` → buy; `S`, `T` (short) and `E` (short exempt) → sell.
//! - **Cross Type** must be `N` (continuous market; no crosses), else rejected with `R`.
//!   **Capacity**, **Firm**, **Intermarket Sweep Eligibility** and **Customer Type** are
//!   validated, echoed in Order Accepted and otherwise ignored.
//! - **Order Token** is the order's identity within the session: a reused token is rejected
//!   with `O`. *Ambiguity:* NASDAQ silently ignores a duplicate token; the issue asks for a
//!   rejection, and OUCH has no specific code for it. Shares of 0 are also rejected with `O`.
//!   A refused Replace Order is answered with Order Rejected naming the *replacement* token
//!   (see [`peek_order_token`]).
//! - Self-trade prevention, configured per user, cancels with reason `Q`; IOC and FOK
//!   remainders cancel with `I` (OUCH has no FOK-specific reason); client cancels with
//!   `U`, and so, by default, does a mass cancel.
//! - Liquidity Flag is `A` (added) for the resting side of a trade and `R` (removed) for
//!   the incoming side; the Match Number is the engine's trade number, the same on both.

use std::fmt;

use super::framing::{self, packet_type};
use super::{Alpha, Firm, OrderToken, ProtocolError, Reader, Sink, SliceSink, Stock};

/// Message type bytes.
pub mod message_type {
    /// Enter Order (inbound).
    pub const ENTER_ORDER: u8 = b'O';
    /// Replace Order (inbound).
    pub const REPLACE_ORDER: u8 = b'U';
    /// Cancel Order (inbound).
    pub const CANCEL_ORDER: u8 = b'X';
    /// Modify Order (inbound).
    pub const MODIFY_ORDER: u8 = b'M';
    /// System Event (outbound).
    pub const SYSTEM_EVENT: u8 = b'S';
    /// Order Accepted (outbound).
    pub const ORDER_ACCEPTED: u8 = b'A';
    /// Order Replaced (outbound; same byte as Replace Order).
    pub const ORDER_REPLACED: u8 = b'U';
    /// Order Canceled (outbound).
    pub const ORDER_CANCELED: u8 = b'C';
    /// AIQ Canceled (outbound).
    pub const AIQ_CANCELED: u8 = b'D';
    /// Order Executed (outbound).
    pub const ORDER_EXECUTED: u8 = b'E';
    /// Broken Trade (outbound).
    pub const BROKEN_TRADE: u8 = b'B';
    /// Order Rejected (outbound).
    pub const ORDER_REJECTED: u8 = b'J';
    /// Cancel Pending (outbound).
    pub const CANCEL_PENDING: u8 = b'P';
    /// Cancel Reject (outbound).
    pub const CANCEL_REJECT: u8 = b'I';
    /// Order Priority Update (outbound).
    pub const ORDER_PRIORITY_UPDATE: u8 = b'T';
    /// Order Modified (outbound; same byte as Modify Order).
    pub const ORDER_MODIFIED: u8 = b'M';
}

/// The longest inbound message (Enter Order).
pub use super::framing::INBOUND_MESSAGE_BYTES_MAX;
const _: () = assert!(INBOUND_MESSAGE_BYTES_MAX == EnterOrder::LEN);
/// The longest outbound message (Order Replaced).
pub const OUTBOUND_MESSAGE_BYTES_MAX: usize = OrderReplaced::LEN;

macro_rules! code_enum {
    (
        $(#[$meta:meta])*
        $name:ident, $field:literal {
            $( $(#[$vmeta:meta])* $variant:ident = $code:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )+
        }

        impl $name {
            /// Every value, in the specification's order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The code byte.
            pub const fn code(self) -> u8 {
                match self {
                    $( $name::$variant => $code, )+
                }
            }

            /// Reads a code byte; any byte the specification does not list is an error.
            pub fn from_code(byte: u8) -> Result<$name, ProtocolError> {
                match byte {
                    $( $code => Ok($name::$variant), )+
                    _ => Err(ProtocolError::InvalidCode { field: $field, byte }),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", char::from(self.code()))
            }
        }
    };
}

code_enum! {
    /// Buy/Sell Indicator.
    BuySellIndicator, "Buy/Sell Indicator" {
        /// `B`
        Buy = b'B',
        /// `S`
        Sell = b'S',
        /// `T`: sell short.
        SellShort = b'T',
        /// `E`: sell short exempt.
        SellShortExempt = b'E',
    }
}

code_enum! {
    /// Display (order display type). `Z` appears only in outbound messages.
    DisplayType, "Display" {
        /// `A`: attributable, price to display.
        Attributable = b'A',
        /// `I`: imbalance only.
        ImbalanceOnly = b'I',
        /// `L`: post-only and attributable, price to display.
        PostOnlyAttributable = b'L',
        /// `M`: mid-point peg.
        MidPointPeg = b'M',
        /// `N`: non-display.
        NonDisplay = b'N',
        /// `O`: retail order type 1.
        RetailOrderType1 = b'O',
        /// `P`: post-only.
        PostOnly = b'P',
        /// `Q`: retail price improvement order.
        RetailPriceImprovement = b'Q',
        /// `R`: round-lot only.
        RoundLotOnly = b'R',
        /// `T`: retail order type 2.
        RetailOrderType2 = b'T',
        /// `W`: mid-point peg post-only.
        MidPointPegPostOnly = b'W',
        /// `Y`: anonymous, price to comply.
        Anonymous = b'Y',
        /// `Z`: entered as displayed but changed to non-displayed (priced to comply).
        ChangedToNonDisplayed = b'Z',
    }
}

code_enum! {
    /// Capacity.
    Capacity, "Capacity" {
        /// `A`
        Agency = b'A',
        /// `O`
        Other = b'O',
        /// `P`
        Principal = b'P',
        /// `R`: riskless principal.
        Riskless = b'R',
    }
}

code_enum! {
    /// Intermarket Sweep Eligibility.
    IntermarketSweepEligibility, "Intermarket Sweep Eligibility" {
        /// `Y`
        Eligible = b'Y',
        /// `N`
        NotEligible = b'N',
    }
}

code_enum! {
    /// Cross Type.
    CrossType, "Cross Type" {
        /// `N`: continuous market.
        NoCross = b'N',
        /// `O`
        OpeningCross = b'O',
        /// `C`
        ClosingCross = b'C',
        /// `I`: intraday cross (listed by older revisions).
        IntradayCross = b'I',
        /// `H`: halt/IPO cross.
        HaltIpoCross = b'H',
        /// `R`: retail.
        Retail = b'R',
        /// `S`: supplemental order.
        Supplemental = b'S',
    }
}

code_enum! {
    /// Customer Type.
    CustomerType, "Customer Type" {
        /// `R`: retail designated order.
        RetailDesignated = b'R',
        /// `N`: not a retail designated order.
        NotRetailDesignated = b'N',
        /// space: the port's configured default.
        PortDefault = b' ',
    }
}

code_enum! {
    /// System Event code.
    EventCode, "Event Code" {
        /// `S`: start of day; the system is accepting orders.
        StartOfDay = b'S',
        /// `E`: end of day; no more orders.
        EndOfDay = b'E',
    }
}

code_enum! {
    /// Order State in Order Accepted / Order Replaced.
    OrderState, "Order State" {
        /// `L`: the order is live.
        Live = b'L',
        /// `D`: the order is dead (e.g. an IOC that will be canceled at once).
        Dead = b'D',
    }
}

code_enum! {
    /// BBO Weight Indicator.
    BboWeightIndicator, "BBO Weight Indicator" {
        /// `0`: 0–0.2%.
        Weight0 = b'0',
        /// `1`: 0.2–1%.
        Weight1 = b'1',
        /// `2`: 1–2%.
        Weight2 = b'2',
        /// `3`: greater than 2%.
        Weight3 = b'3',
        /// space: unspecified.
        Unspecified = b' ',
        /// `S`: sets the QBBO while joining the NBBO.
        SetsQbbo = b'S',
        /// `N`: improves the NBBO upon entry.
        ImprovesNbbo = b'N',
    }
}

code_enum! {
    /// Order Canceled reason.
    CancelReason, "Cancel Reason" {
        /// `U`: user requested cancel.
        UserRequested = b'U',
        /// `I`: immediate or cancel order (remainder).
        ImmediateOrCancel = b'I',
        /// `T`: timeout (time in force expired).
        Timeout = b'T',
        /// `S`: supervisory (exchange operator).
        Supervisory = b'S',
        /// `D`: regulatory restriction.
        RegulatoryRestriction = b'D',
        /// `Q`: self-match prevention.
        SelfMatchPrevention = b'Q',
        /// `Z`: system cancel.
        SystemCancel = b'Z',
        /// `C`: cross canceled.
        CrossCanceled = b'C',
        /// `K`: market collars.
        MarketCollars = b'K',
        /// `H`: halted.
        Halted = b'H',
        /// `X`: open protection.
        OpenProtection = b'X',
        /// `E`: closed.
        Closed = b'E',
    }
}

code_enum! {
    /// Order Rejected reason.
    RejectReason, "Reject Reason" {
        /// `T`: test mode.
        TestMode = b'T',
        /// `H`: halted.
        Halted = b'H',
        /// `Z`: shares exceed the configured safety threshold.
        SharesExceedSafetyThreshold = b'Z',
        /// `S`: invalid stock.
        InvalidStock = b'S',
        /// `D`: invalid display type.
        InvalidDisplayType = b'D',
        /// `C`: the exchange is closed.
        Closed = b'C',
        /// `L`: requested firm not authorized for requested clearing type on this account.
        FirmNotAuthorized = b'L',
        /// `M`: outside of permitted times for requested clearing type.
        OutsidePermittedTimes = b'M',
        /// `R`: order not allowed in this type of cross.
        NotAllowedInCross = b'R',
        /// `X`: invalid price.
        InvalidPrice = b'X',
        /// `N`: invalid minimum quantity.
        InvalidMinimumQuantity = b'N',
        /// `O`: other.
        Other = b'O',
        /// `W`: invalid mid-point post-only price.
        InvalidMidPointPostOnlyPrice = b'W',
        /// `a`: reject-all enabled.
        RejectAllEnabled = b'a',
        /// `b`: easy-to-borrow reject.
        EasyToBorrow = b'b',
        /// `c`: restricted symbol list reject.
        RestrictedSymbol = b'c',
        /// `d`: ISO order restriction.
        IsoRestriction = b'd',
        /// `e`: odd lot order restriction.
        OddLotRestriction = b'e',
        /// `f`: mid-point order restriction.
        MidPointRestriction = b'f',
        /// `g`: pre-market order restriction.
        PreMarketRestriction = b'g',
        /// `h`: post-market order restriction.
        PostMarketRestriction = b'h',
        /// `i`: short sale order restriction.
        ShortSaleRestriction = b'i',
        /// `j`: on-open order restriction.
        OnOpenRestriction = b'j',
        /// `k`: on-close order restriction.
        OnCloseRestriction = b'k',
        /// `l`: two-sided quote reject.
        TwoSidedQuote = b'l',
        /// `m`: exceeded shares limit.
        ExceededSharesLimit = b'm',
        /// `n`: exceeded dollar value limit.
        ExceededDollarValueLimit = b'n',
    }
}

code_enum! {
    /// Liquidity Flag of an execution.
    LiquidityFlag, "Liquidity Flag" {
        /// `A`: added liquidity.
        Added = b'A',
        /// `R`: removed liquidity.
        Removed = b'R',
        /// `O`: opening cross.
        OpeningCross = b'O',
        /// `M`: opening cross (imbalance only).
        OpeningCrossImbalanceOnly = b'M',
        /// `C`: closing cross.
        ClosingCross = b'C',
        /// `L`: closing cross (imbalance only).
        ClosingCrossImbalanceOnly = b'L',
        /// `H`: halt/IPO cross.
        HaltIpoCross = b'H',
        /// `K`: halt cross.
        HaltCross = b'K',
        /// `I`: intraday/post-market cross.
        IntradayCross = b'I',
        /// `J`: non-displayed, adding liquidity.
        NonDisplayedAdded = b'J',
        /// `N`: halt cross in a pilot symbol during an LULD trading pause.
        HaltCrossLuldPause = b'N',
        /// `W`: added post-only.
        AddedPostOnly = b'W',
        /// `0`: supplemental order execution.
        Supplemental = b'0',
        /// `4`: added displayed liquidity in a Group A symbol.
        AddedDisplayedGroupA = b'4',
        /// `5`: added non-displayed liquidity in a Group A symbol.
        AddedNonDisplayedGroupA = b'5',
        /// `6`: removed liquidity in a Group A symbol.
        RemovedGroupA = b'6',
        /// `7`: displayed, liquidity-adding order improves the NBBO.
        ImprovesNbbo = b'7',
        /// `8`: displayed, liquidity-adding order sets the QBBO while joining the NBBO.
        SetsQbbo = b'8',
        /// `a`: added displayed liquidity in a SCIP symbol.
        AddedDisplayedScip = b'a',
        /// `b`: improves the NBBO in a pilot symbol during the LULD pricing pilot.
        ImprovesNbboLuldPilot = b'b',
        /// `c`: added displayed liquidity in a pilot symbol during the LULD pricing pilot.
        AddedDisplayedLuldPilot = b'c',
        /// `d`: retail designated execution that removed liquidity.
        RetailRemoved = b'd',
        /// `e`: retail designated execution that added displayed liquidity.
        RetailAddedDisplayed = b'e',
        /// `f`: retail designated execution that added non-displayed liquidity.
        RetailAddedNonDisplayed = b'f',
        /// `g`: added non-displayed mid-point liquidity in a Group A symbol.
        AddedMidPointGroupA = b'g',
        /// `h`: removed liquidity in a pilot symbol during the LULD pricing pilot.
        RemovedLuldPilot = b'h',
        /// `j`: RPI (retail price improving) order provides liquidity.
        RpiAdded = b'j',
        /// `k`: added liquidity via a mid-point order.
        AddedMidPoint = b'k',
        /// `m`: removed liquidity at a mid-point.
        RemovedMidPoint = b'm',
        /// `r`: retail order removes RPI liquidity.
        RetailRemovesRpi = b'r',
        /// `t`: retail order removes price-improving non-displayed liquidity other than RPI.
        RetailRemovesNonDisplayed = b't',
        /// `x`: improves the NBBO in a SCIP symbol.
        ImprovesNbboScip = b'x',
        /// `y`: sets the QBBO while joining the NBBO in a SCIP symbol.
        SetsQbboScip = b'y',
    }
}

code_enum! {
    /// Broken Trade reason.
    BrokenTradeReason, "Broken Trade Reason" {
        /// `E`: erroneous.
        Erroneous = b'E',
        /// `C`: consent.
        Consent = b'C',
        /// `S`: supervisory.
        Supervisory = b'S',
        /// `X`: external.
        External = b'X',
    }
}

/// An OUCH price: an unsigned integer with four implied decimal places (`Price(1_000_100)`
/// is $100.0100). The codec carries any value; [`super::mapping`] decides which are valid.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Price(pub u32);

impl Price {
    /// Implied decimal places.
    pub const DECIMALS: u32 = 4;
    /// OUCH units per whole currency unit.
    pub const SCALE: u32 = 10_000;
    /// The highest limit price OUCH 4.2 allows: $199,999.9900 (`0x7735939C`).
    pub const LIMIT_MAX: Price = Price(1_999_999_900);
    /// The special price marking a market order: $214,748.3647 (`0x7FFFFFFF`).
    pub const MARKET: Price = Price(0x7fff_ffff);

    /// Whether this is [`Price::MARKET`].
    pub const fn is_market(self) -> bool {
        self.0 == Price::MARKET.0
    }
}

impl fmt::Display for Price {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_market() {
            f.write_str("MARKET")
        } else {
            write!(f, "{}.{:04}", self.0 / Price::SCALE, self.0 % Price::SCALE)
        }
    }
}

/// Time In Force: seconds the order lives, or one of the special values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TimeInForce(pub u32);

impl TimeInForce {
    /// `0`: immediate or cancel.
    pub const IMMEDIATE_OR_CANCEL: TimeInForce = TimeInForce(0);
    /// `99998`: until the end of market hours.
    pub const MARKET_HOURS: TimeInForce = TimeInForce(99_998);
    /// `99999`: until the end of system hours.
    pub const SYSTEM_HOURS: TimeInForce = TimeInForce(99_999);
}

/// Enter Order (`O`, 49 bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EnterOrder {
    /// Client's identity for the order; not blank.
    pub order_token: OrderToken,
    /// Side.
    pub side: BuySellIndicator,
    /// Quantity.
    pub shares: u32,
    /// Instrument symbol; not blank.
    pub stock: Stock,
    /// Limit price, or [`Price::MARKET`].
    pub price: Price,
    /// Time in force.
    pub time_in_force: TimeInForce,
    /// Firm; blank for the account's default.
    pub firm: Firm,
    /// Display type.
    pub display: DisplayType,
    /// Capacity.
    pub capacity: Capacity,
    /// Intermarket sweep eligibility.
    pub intermarket_sweep: IntermarketSweepEligibility,
    /// Minimum quantity; 0 for none.
    pub minimum_quantity: u32,
    /// Cross type.
    pub cross_type: CrossType,
    /// Customer type.
    pub customer_type: CustomerType,
}

/// Replace Order (`U`, 47 bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplaceOrder {
    /// The order being replaced; not blank.
    pub existing_order_token: OrderToken,
    /// The new order's token; not blank.
    pub replacement_order_token: OrderToken,
    /// New total quantity.
    pub shares: u32,
    /// New price.
    pub price: Price,
    /// New time in force.
    pub time_in_force: TimeInForce,
    /// New display type.
    pub display: DisplayType,
    /// New intermarket sweep eligibility.
    pub intermarket_sweep: IntermarketSweepEligibility,
    /// New minimum quantity.
    pub minimum_quantity: u32,
}

/// Cancel Order (`X`, 19 bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CancelOrder {
    /// The order; not blank.
    pub order_token: OrderToken,
    /// The new intended size: 0 cancels the whole order.
    pub shares: u32,
}

/// Modify Order (`M`, 20 bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ModifyOrder {
    /// The order; not blank.
    pub order_token: OrderToken,
    /// New side (only changes among `S`, `T` and `E` are meaningful).
    pub side: BuySellIndicator,
    /// The new intended size.
    pub shares: u32,
}

/// System Event (`S`, 10 bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SystemEvent {
    /// Nanoseconds since midnight.
    pub timestamp: u64,
    /// What happened.
    pub event_code: EventCode,
}

/// Order Accepted (`A`, 66 bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OrderAccepted {
    /// Nanoseconds since midnight.
    pub timestamp: u64,
    /// The client's token.
    pub order_token: OrderToken,
    /// Side.
    pub side: BuySellIndicator,
    /// Accepted quantity.
    pub shares: u32,
    /// Instrument symbol.
    pub stock: Stock,
    /// Accepted price.
    pub price: Price,
    /// Accepted time in force.
    pub time_in_force: TimeInForce,
    /// Firm.
    pub firm: Firm,
    /// Accepted display type.
    pub display: DisplayType,
    /// The exchange's day-unique reference for the order.
    pub order_reference_number: u64,
    /// Capacity.
    pub capacity: Capacity,
    /// Intermarket sweep eligibility.
    pub intermarket_sweep: IntermarketSweepEligibility,
    /// Minimum quantity.
    pub minimum_quantity: u32,
    /// Cross type.
    pub cross_type: CrossType,
    /// Whether the order is live.
    pub order_state: OrderState,
    /// BBO weight indicator.
    pub bbo_weight_indicator: BboWeightIndicator,
}

/// Order Replaced (`U`, 80 bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OrderReplaced {
    /// Nanoseconds since midnight.
    pub timestamp: u64,
    /// The new order's token.
    pub replacement_order_token: OrderToken,
    /// Side.
    pub side: BuySellIndicator,
    /// New quantity.
    pub shares: u32,
    /// Instrument symbol.
    pub stock: Stock,
    /// New price.
    pub price: Price,
    /// Time in force.
    pub time_in_force: TimeInForce,
    /// Firm.
    pub firm: Firm,
    /// Display type.
    pub display: DisplayType,
    /// The exchange's reference for the new order.
    pub order_reference_number: u64,
    /// Capacity.
    pub capacity: Capacity,
    /// Intermarket sweep eligibility.
    pub intermarket_sweep: IntermarketSweepEligibility,
    /// Minimum quantity.
    pub minimum_quantity: u32,
    /// Cross type.
    pub cross_type: CrossType,
    /// Whether the new order is live.
    pub order_state: OrderState,
    /// The replaced order's token.
    pub previous_order_token: OrderToken,
    /// BBO weight indicator.
    pub bbo_weight_indicator: BboWeightIndicator,
}

/// Order Canceled (`C`, 28 bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OrderCanceled {
    /// Nanoseconds since midnight.
    pub timestamp: u64,
    /// The order.
    pub order_token: OrderToken,
    /// Shares just removed (incremental, not cumulative).
    pub decrement_shares: u32,
    /// Why.
    pub reason: CancelReason,
}

/// AIQ Canceled (`D`, 37 bytes): a cancel caused by self-match prevention, with the trade
/// that was prevented.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AiqCanceled {
    /// Nanoseconds since midnight.
    pub timestamp: u64,
    /// The order.
    pub order_token: OrderToken,
    /// Shares just removed.
    pub decrement_shares: u32,
    /// Why (normally [`CancelReason::SelfMatchPrevention`]).
    pub reason: CancelReason,
    /// Shares that would have traded.
    pub quantity_prevented_from_trading: u32,
    /// Price they would have traded at.
    pub execution_price: Price,
    /// Liquidity the order would have had.
    pub liquidity_flag: LiquidityFlag,
}

/// Order Executed (`E`, 40 bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OrderExecuted {
    /// Nanoseconds since midnight.
    pub timestamp: u64,
    /// The order.
    pub order_token: OrderToken,
    /// Shares traded.
    pub executed_shares: u32,
    /// Trade price.
    pub execution_price: Price,
    /// Added or removed liquidity.
    pub liquidity_flag: LiquidityFlag,
    /// The trade's number: day-unique, the same on both sides.
    pub match_number: u64,
}

/// Broken Trade (`B`, 32 bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BrokenTrade {
    /// Nanoseconds since midnight.
    pub timestamp: u64,
    /// The order.
    pub order_token: OrderToken,
    /// The broken trade's match number.
    pub match_number: u64,
    /// Why.
    pub reason: BrokenTradeReason,
}

/// Order Rejected (`J`, 24 bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OrderRejected {
    /// Nanoseconds since midnight.
    pub timestamp: u64,
    /// The token of the refused Enter Order (or the replacement token of a refused replace).
    pub order_token: OrderToken,
    /// Why.
    pub reason: RejectReason,
}

/// Cancel Pending (`P`, 23 bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CancelPending {
    /// Nanoseconds since midnight.
    pub timestamp: u64,
    /// The order.
    pub order_token: OrderToken,
}

/// Cancel Reject (`I`, 23 bytes): a cancel that could not be applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CancelReject {
    /// Nanoseconds since midnight.
    pub timestamp: u64,
    /// The order named by the cancel.
    pub order_token: OrderToken,
}

/// Order Priority Update (`T`, 36 bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OrderPriorityUpdate {
    /// Nanoseconds since midnight.
    pub timestamp: u64,
    /// The order.
    pub order_token: OrderToken,
    /// Its price now.
    pub price: Price,
    /// Its display type now.
    pub display: DisplayType,
    /// Its (new) reference number.
    pub order_reference_number: u64,
}

/// Order Modified (`M`, 28 bytes): the answer to Modify Order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OrderModified {
    /// Nanoseconds since midnight.
    pub timestamp: u64,
    /// The order.
    pub order_token: OrderToken,
    /// Its side now.
    pub side: BuySellIndicator,
    /// Its open shares now.
    pub shares: u32,
}

/// A message a client sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InboundMessage {
    /// `O`
    EnterOrder(EnterOrder),
    /// `U`
    ReplaceOrder(ReplaceOrder),
    /// `X`
    CancelOrder(CancelOrder),
    /// `M`
    ModifyOrder(ModifyOrder),
}

/// A message the exchange sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutboundMessage {
    /// `S`
    SystemEvent(SystemEvent),
    /// `A`
    OrderAccepted(OrderAccepted),
    /// `U`
    OrderReplaced(OrderReplaced),
    /// `C`
    OrderCanceled(OrderCanceled),
    /// `D`
    AiqCanceled(AiqCanceled),
    /// `E`
    OrderExecuted(OrderExecuted),
    /// `B`
    BrokenTrade(BrokenTrade),
    /// `J`
    OrderRejected(OrderRejected),
    /// `P`
    CancelPending(CancelPending),
    /// `I`
    CancelReject(CancelReject),
    /// `T`
    OrderPriorityUpdate(OrderPriorityUpdate),
    /// `M`
    OrderModified(OrderModified),
}

/// One message's layout: its type byte, fixed length and field codec.
trait Layout: Sized {
    const TYPE: u8;
    const LEN: usize;
    /// Reads the fields after the type byte.
    fn read(r: &mut Reader<'_>) -> Result<Self, ProtocolError>;
    /// Writes the fields after the type byte.
    fn write<S: Sink>(&self, out: &mut S);
}

fn token(r: &mut Reader<'_>, field: &'static str) -> Result<OrderToken, ProtocolError> {
    Alpha::from_wire_non_blank(r.array()?, field)
}

/// Decodes `bytes` as exactly one `T`, type byte included.
fn decode_exact<T: Layout>(bytes: &[u8]) -> Result<T, ProtocolError> {
    if bytes.len() != T::LEN {
        return Err(ProtocolError::BadMessageLength {
            message_type: T::TYPE,
            len: bytes.len(),
            expected: T::LEN,
        });
    }
    let mut r = Reader::new(bytes.get(1..).unwrap_or(&[]));
    T::read(&mut r)
}

fn write_with_type<T: Layout, S: Sink>(msg: &T, out: &mut S) {
    out.put_u8(T::TYPE);
    msg.write(out);
}

macro_rules! layout_consts {
    ($($ty:ident),+) => {
        $(
            impl $ty {
                /// Message length in bytes, type byte included.
                pub const LEN: usize = <$ty as Layout>::LEN;
                /// The message type byte.
                pub const TYPE: u8 = <$ty as Layout>::TYPE;
            }
        )+
    };
}

layout_consts!(
    EnterOrder,
    ReplaceOrder,
    CancelOrder,
    ModifyOrder,
    SystemEvent,
    OrderAccepted,
    OrderReplaced,
    OrderCanceled,
    AiqCanceled,
    OrderExecuted,
    BrokenTrade,
    OrderRejected,
    CancelPending,
    CancelReject,
    OrderPriorityUpdate,
    OrderModified
);

impl Layout for EnterOrder {
    const TYPE: u8 = message_type::ENTER_ORDER;
    const LEN: usize = 49;
    fn read(r: &mut Reader<'_>) -> Result<Self, ProtocolError> {
        Ok(EnterOrder {
            order_token: token(r, "Order Token")?,
            side: BuySellIndicator::from_code(r.u8()?)?,
            shares: r.u32()?,
            stock: Alpha::from_wire_non_blank(r.array()?, "Stock")?,
            price: Price(r.u32()?),
            time_in_force: TimeInForce(r.u32()?),
            firm: Alpha::from_wire(r.array()?, "Firm")?,
            display: DisplayType::from_code(r.u8()?)?,
            capacity: Capacity::from_code(r.u8()?)?,
            intermarket_sweep: IntermarketSweepEligibility::from_code(r.u8()?)?,
            minimum_quantity: r.u32()?,
            cross_type: CrossType::from_code(r.u8()?)?,
            customer_type: CustomerType::from_code(r.u8()?)?,
        })
    }
    fn write<S: Sink>(&self, out: &mut S) {
        out.put(self.order_token.wire());
        out.put_u8(self.side.code());
        out.put_u32(self.shares);
        out.put(self.stock.wire());
        out.put_u32(self.price.0);
        out.put_u32(self.time_in_force.0);
        out.put(self.firm.wire());
        out.put_u8(self.display.code());
        out.put_u8(self.capacity.code());
        out.put_u8(self.intermarket_sweep.code());
        out.put_u32(self.minimum_quantity);
        out.put_u8(self.cross_type.code());
        out.put_u8(self.customer_type.code());
    }
}

impl Layout for ReplaceOrder {
    const TYPE: u8 = message_type::REPLACE_ORDER;
    const LEN: usize = 47;
    fn read(r: &mut Reader<'_>) -> Result<Self, ProtocolError> {
        Ok(ReplaceOrder {
            existing_order_token: token(r, "Existing Order Token")?,
            replacement_order_token: token(r, "Replacement Order Token")?,
            shares: r.u32()?,
            price: Price(r.u32()?),
            time_in_force: TimeInForce(r.u32()?),
            display: DisplayType::from_code(r.u8()?)?,
            intermarket_sweep: IntermarketSweepEligibility::from_code(r.u8()?)?,
            minimum_quantity: r.u32()?,
        })
    }
    fn write<S: Sink>(&self, out: &mut S) {
        out.put(self.existing_order_token.wire());
        out.put(self.replacement_order_token.wire());
        out.put_u32(self.shares);
        out.put_u32(self.price.0);
        out.put_u32(self.time_in_force.0);
        out.put_u8(self.display.code());
        out.put_u8(self.intermarket_sweep.code());
        out.put_u32(self.minimum_quantity);
    }
}

impl Layout for CancelOrder {
    const TYPE: u8 = message_type::CANCEL_ORDER;
    const LEN: usize = 19;
    fn read(r: &mut Reader<'_>) -> Result<Self, ProtocolError> {
        Ok(CancelOrder {
            order_token: token(r, "Order Token")?,
            shares: r.u32()?,
        })
    }
    fn write<S: Sink>(&self, out: &mut S) {
        out.put(self.order_token.wire());
        out.put_u32(self.shares);
    }
}

impl Layout for ModifyOrder {
    const TYPE: u8 = message_type::MODIFY_ORDER;
    const LEN: usize = 20;
    fn read(r: &mut Reader<'_>) -> Result<Self, ProtocolError> {
        Ok(ModifyOrder {
            order_token: token(r, "Order Token")?,
            side: BuySellIndicator::from_code(r.u8()?)?,
            shares: r.u32()?,
        })
    }
    fn write<S: Sink>(&self, out: &mut S) {
        out.put(self.order_token.wire());
        out.put_u8(self.side.code());
        out.put_u32(self.shares);
    }
}

impl Layout for SystemEvent {
    const TYPE: u8 = message_type::SYSTEM_EVENT;
    const LEN: usize = 10;
    fn read(r: &mut Reader<'_>) -> Result<Self, ProtocolError> {
        Ok(SystemEvent {
            timestamp: r.u64()?,
            event_code: EventCode::from_code(r.u8()?)?,
        })
    }
    fn write<S: Sink>(&self, out: &mut S) {
        out.put_u64(self.timestamp);
        out.put_u8(self.event_code.code());
    }
}

impl Layout for OrderAccepted {
    const TYPE: u8 = message_type::ORDER_ACCEPTED;
    const LEN: usize = 66;
    fn read(r: &mut Reader<'_>) -> Result<Self, ProtocolError> {
        Ok(OrderAccepted {
            timestamp: r.u64()?,
            order_token: token(r, "Order Token")?,
            side: BuySellIndicator::from_code(r.u8()?)?,
            shares: r.u32()?,
            stock: Alpha::from_wire_non_blank(r.array()?, "Stock")?,
            price: Price(r.u32()?),
            time_in_force: TimeInForce(r.u32()?),
            firm: Alpha::from_wire(r.array()?, "Firm")?,
            display: DisplayType::from_code(r.u8()?)?,
            order_reference_number: r.u64()?,
            capacity: Capacity::from_code(r.u8()?)?,
            intermarket_sweep: IntermarketSweepEligibility::from_code(r.u8()?)?,
            minimum_quantity: r.u32()?,
            cross_type: CrossType::from_code(r.u8()?)?,
            order_state: OrderState::from_code(r.u8()?)?,
            bbo_weight_indicator: BboWeightIndicator::from_code(r.u8()?)?,
        })
    }
    fn write<S: Sink>(&self, out: &mut S) {
        out.put_u64(self.timestamp);
        out.put(self.order_token.wire());
        out.put_u8(self.side.code());
        out.put_u32(self.shares);
        out.put(self.stock.wire());
        out.put_u32(self.price.0);
        out.put_u32(self.time_in_force.0);
        out.put(self.firm.wire());
        out.put_u8(self.display.code());
        out.put_u64(self.order_reference_number);
        out.put_u8(self.capacity.code());
        out.put_u8(self.intermarket_sweep.code());
        out.put_u32(self.minimum_quantity);
        out.put_u8(self.cross_type.code());
        out.put_u8(self.order_state.code());
        out.put_u8(self.bbo_weight_indicator.code());
    }
}

impl Layout for OrderReplaced {
    const TYPE: u8 = message_type::ORDER_REPLACED;
    const LEN: usize = 80;
    fn read(r: &mut Reader<'_>) -> Result<Self, ProtocolError> {
        Ok(OrderReplaced {
            timestamp: r.u64()?,
            replacement_order_token: token(r, "Replacement Order Token")?,
            side: BuySellIndicator::from_code(r.u8()?)?,
            shares: r.u32()?,
            stock: Alpha::from_wire_non_blank(r.array()?, "Stock")?,
            price: Price(r.u32()?),
            time_in_force: TimeInForce(r.u32()?),
            firm: Alpha::from_wire(r.array()?, "Firm")?,
            display: DisplayType::from_code(r.u8()?)?,
            order_reference_number: r.u64()?,
            capacity: Capacity::from_code(r.u8()?)?,
            intermarket_sweep: IntermarketSweepEligibility::from_code(r.u8()?)?,
            minimum_quantity: r.u32()?,
            cross_type: CrossType::from_code(r.u8()?)?,
            order_state: OrderState::from_code(r.u8()?)?,
            previous_order_token: token(r, "Previous Order Token")?,
            bbo_weight_indicator: BboWeightIndicator::from_code(r.u8()?)?,
        })
    }
    fn write<S: Sink>(&self, out: &mut S) {
        out.put_u64(self.timestamp);
        out.put(self.replacement_order_token.wire());
        out.put_u8(self.side.code());
        out.put_u32(self.shares);
        out.put(self.stock.wire());
        out.put_u32(self.price.0);
        out.put_u32(self.time_in_force.0);
        out.put(self.firm.wire());
        out.put_u8(self.display.code());
        out.put_u64(self.order_reference_number);
        out.put_u8(self.capacity.code());
        out.put_u8(self.intermarket_sweep.code());
        out.put_u32(self.minimum_quantity);
        out.put_u8(self.cross_type.code());
        out.put_u8(self.order_state.code());
        out.put(self.previous_order_token.wire());
        out.put_u8(self.bbo_weight_indicator.code());
    }
}

impl Layout for OrderCanceled {
    const TYPE: u8 = message_type::ORDER_CANCELED;
    const LEN: usize = 28;
    fn read(r: &mut Reader<'_>) -> Result<Self, ProtocolError> {
        Ok(OrderCanceled {
            timestamp: r.u64()?,
            order_token: token(r, "Order Token")?,
            decrement_shares: r.u32()?,
            reason: CancelReason::from_code(r.u8()?)?,
        })
    }
    fn write<S: Sink>(&self, out: &mut S) {
        out.put_u64(self.timestamp);
        out.put(self.order_token.wire());
        out.put_u32(self.decrement_shares);
        out.put_u8(self.reason.code());
    }
}

impl Layout for AiqCanceled {
    const TYPE: u8 = message_type::AIQ_CANCELED;
    const LEN: usize = 37;
    fn read(r: &mut Reader<'_>) -> Result<Self, ProtocolError> {
        Ok(AiqCanceled {
            timestamp: r.u64()?,
            order_token: token(r, "Order Token")?,
            decrement_shares: r.u32()?,
            reason: CancelReason::from_code(r.u8()?)?,
            quantity_prevented_from_trading: r.u32()?,
            execution_price: Price(r.u32()?),
            liquidity_flag: LiquidityFlag::from_code(r.u8()?)?,
        })
    }
    fn write<S: Sink>(&self, out: &mut S) {
        out.put_u64(self.timestamp);
        out.put(self.order_token.wire());
        out.put_u32(self.decrement_shares);
        out.put_u8(self.reason.code());
        out.put_u32(self.quantity_prevented_from_trading);
        out.put_u32(self.execution_price.0);
        out.put_u8(self.liquidity_flag.code());
    }
}

impl Layout for OrderExecuted {
    const TYPE: u8 = message_type::ORDER_EXECUTED;
    const LEN: usize = 40;
    fn read(r: &mut Reader<'_>) -> Result<Self, ProtocolError> {
        Ok(OrderExecuted {
            timestamp: r.u64()?,
            order_token: token(r, "Order Token")?,
            executed_shares: r.u32()?,
            execution_price: Price(r.u32()?),
            liquidity_flag: LiquidityFlag::from_code(r.u8()?)?,
            match_number: r.u64()?,
        })
    }
    fn write<S: Sink>(&self, out: &mut S) {
        out.put_u64(self.timestamp);
        out.put(self.order_token.wire());
        out.put_u32(self.executed_shares);
        out.put_u32(self.execution_price.0);
        out.put_u8(self.liquidity_flag.code());
        out.put_u64(self.match_number);
    }
}

impl Layout for BrokenTrade {
    const TYPE: u8 = message_type::BROKEN_TRADE;
    const LEN: usize = 32;
    fn read(r: &mut Reader<'_>) -> Result<Self, ProtocolError> {
        Ok(BrokenTrade {
            timestamp: r.u64()?,
            order_token: token(r, "Order Token")?,
            match_number: r.u64()?,
            reason: BrokenTradeReason::from_code(r.u8()?)?,
        })
    }
    fn write<S: Sink>(&self, out: &mut S) {
        out.put_u64(self.timestamp);
        out.put(self.order_token.wire());
        out.put_u64(self.match_number);
        out.put_u8(self.reason.code());
    }
}

impl Layout for OrderRejected {
    const TYPE: u8 = message_type::ORDER_REJECTED;
    const LEN: usize = 24;
    fn read(r: &mut Reader<'_>) -> Result<Self, ProtocolError> {
        Ok(OrderRejected {
            timestamp: r.u64()?,
            order_token: token(r, "Order Token")?,
            reason: RejectReason::from_code(r.u8()?)?,
        })
    }
    fn write<S: Sink>(&self, out: &mut S) {
        out.put_u64(self.timestamp);
        out.put(self.order_token.wire());
        out.put_u8(self.reason.code());
    }
}

impl Layout for CancelPending {
    const TYPE: u8 = message_type::CANCEL_PENDING;
    const LEN: usize = 23;
    fn read(r: &mut Reader<'_>) -> Result<Self, ProtocolError> {
        Ok(CancelPending {
            timestamp: r.u64()?,
            order_token: token(r, "Order Token")?,
        })
    }
    fn write<S: Sink>(&self, out: &mut S) {
        out.put_u64(self.timestamp);
        out.put(self.order_token.wire());
    }
}

impl Layout for CancelReject {
    const TYPE: u8 = message_type::CANCEL_REJECT;
    const LEN: usize = 23;
    fn read(r: &mut Reader<'_>) -> Result<Self, ProtocolError> {
        Ok(CancelReject {
            timestamp: r.u64()?,
            order_token: token(r, "Order Token")?,
        })
    }
    fn write<S: Sink>(&self, out: &mut S) {
        out.put_u64(self.timestamp);
        out.put(self.order_token.wire());
    }
}

impl Layout for OrderPriorityUpdate {
    const TYPE: u8 = message_type::ORDER_PRIORITY_UPDATE;
    const LEN: usize = 36;
    fn read(r: &mut Reader<'_>) -> Result<Self, ProtocolError> {
        Ok(OrderPriorityUpdate {
            timestamp: r.u64()?,
            order_token: token(r, "Order Token")?,
            price: Price(r.u32()?),
            display: DisplayType::from_code(r.u8()?)?,
            order_reference_number: r.u64()?,
        })
    }
    fn write<S: Sink>(&self, out: &mut S) {
        out.put_u64(self.timestamp);
        out.put(self.order_token.wire());
        out.put_u32(self.price.0);
        out.put_u8(self.display.code());
        out.put_u64(self.order_reference_number);
    }
}

impl Layout for OrderModified {
    const TYPE: u8 = message_type::ORDER_MODIFIED;
    const LEN: usize = 28;
    fn read(r: &mut Reader<'_>) -> Result<Self, ProtocolError> {
        Ok(OrderModified {
            timestamp: r.u64()?,
            order_token: token(r, "Order Token")?,
            side: BuySellIndicator::from_code(r.u8()?)?,
            shares: r.u32()?,
        })
    }
    fn write<S: Sink>(&self, out: &mut S) {
        out.put_u64(self.timestamp);
        out.put(self.order_token.wire());
        out.put_u8(self.side.code());
        out.put_u32(self.shares);
    }
}

impl InboundMessage {
    /// Decodes one inbound message: `bytes` must be exactly the message (an Unsequenced
    /// Data payload). Unknown types, wrong lengths, blank tokens or stock, non-printable
    /// text and unlisted codes are errors.
    pub fn decode(bytes: &[u8]) -> Result<InboundMessage, ProtocolError> {
        let (&message_type, _) = bytes.split_first().ok_or(ProtocolError::EmptyMessage)?;
        Ok(match message_type {
            message_type::ENTER_ORDER => InboundMessage::EnterOrder(decode_exact(bytes)?),
            message_type::REPLACE_ORDER => InboundMessage::ReplaceOrder(decode_exact(bytes)?),
            message_type::CANCEL_ORDER => InboundMessage::CancelOrder(decode_exact(bytes)?),
            message_type::MODIFY_ORDER => InboundMessage::ModifyOrder(decode_exact(bytes)?),
            other => return Err(ProtocolError::UnknownMessageType(other)),
        })
    }

    /// The message type byte.
    pub fn message_type(&self) -> u8 {
        match self {
            InboundMessage::EnterOrder(_) => EnterOrder::TYPE,
            InboundMessage::ReplaceOrder(_) => ReplaceOrder::TYPE,
            InboundMessage::CancelOrder(_) => CancelOrder::TYPE,
            InboundMessage::ModifyOrder(_) => ModifyOrder::TYPE,
        }
    }

    /// The encoded length, type byte included.
    pub fn encoded_len(&self) -> usize {
        match self {
            InboundMessage::EnterOrder(_) => EnterOrder::LEN,
            InboundMessage::ReplaceOrder(_) => ReplaceOrder::LEN,
            InboundMessage::CancelOrder(_) => CancelOrder::LEN,
            InboundMessage::ModifyOrder(_) => ModifyOrder::LEN,
        }
    }

    fn write<S: Sink>(&self, out: &mut S) {
        match self {
            InboundMessage::EnterOrder(m) => write_with_type(m, out),
            InboundMessage::ReplaceOrder(m) => write_with_type(m, out),
            InboundMessage::CancelOrder(m) => write_with_type(m, out),
            InboundMessage::ModifyOrder(m) => write_with_type(m, out),
        }
    }

    /// Appends the message.
    pub fn encode(&self, out: &mut Vec<u8>) {
        self.write(out);
    }

    /// Writes the message at the start of `out`, returning the bytes written.
    pub fn encode_into(&self, out: &mut [u8]) -> Result<usize, ProtocolError> {
        let mut sink = SliceSink::new(out, self.encoded_len())?;
        self.write(&mut sink);
        Ok(sink.written())
    }

    /// Appends the message framed as one SoupBinTCP Unsequenced Data packet.
    pub fn encode_unsequenced(&self, out: &mut Vec<u8>) {
        // Every inbound message is at most 49 bytes, far below the packet payload limit.
        let _ = framing::put_header(out, packet_type::UNSEQUENCED_DATA, self.encoded_len());
        self.write(out);
    }
}

impl OutboundMessage {
    /// Decodes one outbound message: `bytes` must be exactly the message (a Sequenced Data
    /// payload). Unknown types, wrong lengths, blank tokens or stock, non-printable text and
    /// unlisted codes are errors.
    pub fn decode(bytes: &[u8]) -> Result<OutboundMessage, ProtocolError> {
        use message_type as t;
        let (&message_type, _) = bytes.split_first().ok_or(ProtocolError::EmptyMessage)?;
        Ok(match message_type {
            t::SYSTEM_EVENT => OutboundMessage::SystemEvent(decode_exact(bytes)?),
            t::ORDER_ACCEPTED => OutboundMessage::OrderAccepted(decode_exact(bytes)?),
            t::ORDER_REPLACED => OutboundMessage::OrderReplaced(decode_exact(bytes)?),
            t::ORDER_CANCELED => OutboundMessage::OrderCanceled(decode_exact(bytes)?),
            t::AIQ_CANCELED => OutboundMessage::AiqCanceled(decode_exact(bytes)?),
            t::ORDER_EXECUTED => OutboundMessage::OrderExecuted(decode_exact(bytes)?),
            t::BROKEN_TRADE => OutboundMessage::BrokenTrade(decode_exact(bytes)?),
            t::ORDER_REJECTED => OutboundMessage::OrderRejected(decode_exact(bytes)?),
            t::CANCEL_PENDING => OutboundMessage::CancelPending(decode_exact(bytes)?),
            t::CANCEL_REJECT => OutboundMessage::CancelReject(decode_exact(bytes)?),
            t::ORDER_PRIORITY_UPDATE => OutboundMessage::OrderPriorityUpdate(decode_exact(bytes)?),
            t::ORDER_MODIFIED => OutboundMessage::OrderModified(decode_exact(bytes)?),
            other => return Err(ProtocolError::UnknownMessageType(other)),
        })
    }

    /// The message type byte.
    pub fn message_type(&self) -> u8 {
        match self {
            OutboundMessage::SystemEvent(_) => SystemEvent::TYPE,
            OutboundMessage::OrderAccepted(_) => OrderAccepted::TYPE,
            OutboundMessage::OrderReplaced(_) => OrderReplaced::TYPE,
            OutboundMessage::OrderCanceled(_) => OrderCanceled::TYPE,
            OutboundMessage::AiqCanceled(_) => AiqCanceled::TYPE,
            OutboundMessage::OrderExecuted(_) => OrderExecuted::TYPE,
            OutboundMessage::BrokenTrade(_) => BrokenTrade::TYPE,
            OutboundMessage::OrderRejected(_) => OrderRejected::TYPE,
            OutboundMessage::CancelPending(_) => CancelPending::TYPE,
            OutboundMessage::CancelReject(_) => CancelReject::TYPE,
            OutboundMessage::OrderPriorityUpdate(_) => OrderPriorityUpdate::TYPE,
            OutboundMessage::OrderModified(_) => OrderModified::TYPE,
        }
    }

    /// The encoded length, type byte included.
    pub fn encoded_len(&self) -> usize {
        match self {
            OutboundMessage::SystemEvent(_) => SystemEvent::LEN,
            OutboundMessage::OrderAccepted(_) => OrderAccepted::LEN,
            OutboundMessage::OrderReplaced(_) => OrderReplaced::LEN,
            OutboundMessage::OrderCanceled(_) => OrderCanceled::LEN,
            OutboundMessage::AiqCanceled(_) => AiqCanceled::LEN,
            OutboundMessage::OrderExecuted(_) => OrderExecuted::LEN,
            OutboundMessage::BrokenTrade(_) => BrokenTrade::LEN,
            OutboundMessage::OrderRejected(_) => OrderRejected::LEN,
            OutboundMessage::CancelPending(_) => CancelPending::LEN,
            OutboundMessage::CancelReject(_) => CancelReject::LEN,
            OutboundMessage::OrderPriorityUpdate(_) => OrderPriorityUpdate::LEN,
            OutboundMessage::OrderModified(_) => OrderModified::LEN,
        }
    }

    /// The order token the message is about, if any (all but System Event; the replacement
    /// token for Order Replaced).
    pub fn order_token(&self) -> Option<OrderToken> {
        match self {
            OutboundMessage::SystemEvent(_) => None,
            OutboundMessage::OrderAccepted(m) => Some(m.order_token),
            OutboundMessage::OrderReplaced(m) => Some(m.replacement_order_token),
            OutboundMessage::OrderCanceled(m) => Some(m.order_token),
            OutboundMessage::AiqCanceled(m) => Some(m.order_token),
            OutboundMessage::OrderExecuted(m) => Some(m.order_token),
            OutboundMessage::BrokenTrade(m) => Some(m.order_token),
            OutboundMessage::OrderRejected(m) => Some(m.order_token),
            OutboundMessage::CancelPending(m) => Some(m.order_token),
            OutboundMessage::CancelReject(m) => Some(m.order_token),
            OutboundMessage::OrderPriorityUpdate(m) => Some(m.order_token),
            OutboundMessage::OrderModified(m) => Some(m.order_token),
        }
    }

    fn write<S: Sink>(&self, out: &mut S) {
        match self {
            OutboundMessage::SystemEvent(m) => write_with_type(m, out),
            OutboundMessage::OrderAccepted(m) => write_with_type(m, out),
            OutboundMessage::OrderReplaced(m) => write_with_type(m, out),
            OutboundMessage::OrderCanceled(m) => write_with_type(m, out),
            OutboundMessage::AiqCanceled(m) => write_with_type(m, out),
            OutboundMessage::OrderExecuted(m) => write_with_type(m, out),
            OutboundMessage::BrokenTrade(m) => write_with_type(m, out),
            OutboundMessage::OrderRejected(m) => write_with_type(m, out),
            OutboundMessage::CancelPending(m) => write_with_type(m, out),
            OutboundMessage::CancelReject(m) => write_with_type(m, out),
            OutboundMessage::OrderPriorityUpdate(m) => write_with_type(m, out),
            OutboundMessage::OrderModified(m) => write_with_type(m, out),
        }
    }

    /// Appends the message.
    pub fn encode(&self, out: &mut Vec<u8>) {
        self.write(out);
    }

    /// Writes the message at the start of `out`, returning the bytes written.
    pub fn encode_into(&self, out: &mut [u8]) -> Result<usize, ProtocolError> {
        let mut sink = SliceSink::new(out, self.encoded_len())?;
        self.write(&mut sink);
        Ok(sink.written())
    }

    /// Appends the message framed as one SoupBinTCP Sequenced Data packet.
    pub fn encode_sequenced(&self, out: &mut Vec<u8>) {
        // Every outbound message is at most 80 bytes, far below the packet payload limit.
        let _ = framing::put_header(out, packet_type::SEQUENCED_DATA, self.encoded_len());
        self.write(out);
    }

    /// Writes the message framed as one Sequenced Data packet at the start of `out`,
    /// returning the bytes written ([`framing::HEADER_LEN`] + [`Self::encoded_len`]).
    pub fn encode_sequenced_into(&self, out: &mut [u8]) -> Result<usize, ProtocolError> {
        let mut sink = SliceSink::new(out, framing::HEADER_LEN + self.encoded_len())?;
        framing::put_header(&mut sink, packet_type::SEQUENCED_DATA, self.encoded_len())?;
        self.write(&mut sink);
        Ok(sink.written())
    }
}

/// The order token a response to an undecodable inbound message should name, when the
/// message has a known type, the right length and a readable token: the Order Token of an
/// Enter, Cancel or Modify Order, the Replacement Order Token of a Replace Order. Lets a
/// session answer a message with, say, an unlisted Display code with Order Rejected instead
/// of dropping it silently.
pub fn peek_order_token(bytes: &[u8]) -> Option<OrderToken> {
    let (&message_type, _) = bytes.split_first()?;
    let (len, offset) = match message_type {
        message_type::ENTER_ORDER => (EnterOrder::LEN, 1),
        message_type::REPLACE_ORDER => (ReplaceOrder::LEN, 15),
        message_type::CANCEL_ORDER => (CancelOrder::LEN, 1),
        message_type::MODIFY_ORDER => (ModifyOrder::LEN, 1),
        _ => return None,
    };
    if bytes.len() != len {
        return None;
    }
    let wire: &[u8; 14] = bytes.get(offset..offset + 14)?.try_into().ok()?;
    Alpha::from_wire_non_blank(wire, "Order Token").ok()
}
