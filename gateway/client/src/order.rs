//! Building OUCH order messages: decimal prices, an Enter Order builder for the common
//! cases, a Replace Order helper, and unique order tokens.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use super::ClientError;
use keel_protocol::ouch::{
    BuySellIndicator, Capacity, CrossType, CustomerType, DisplayType, EnterOrder,
    IntermarketSweepEligibility, Price, ReplaceOrder, TimeInForce,
};
use keel_protocol::{Firm, OrderToken, Stock};

/// Parses a decimal price with at most four decimals (`"100"`, `"100.25"`, `"0.0001"`) into
/// an OUCH [`Price`] (four implied decimals: `"100.25"` is `Price(1_002_500)`). Refuses
/// signs, exponents, more than four decimals, zero and anything above
/// [`Price::LIMIT_MAX`] ($199,999.99). Market orders are not a price: see
/// [`OrderBuilder::market`].
pub fn parse_price(text: &str) -> Result<Price, ClientError> {
    let bad = |reason: &str| ClientError::invalid("price", format!("{text:?}: {reason}"));
    let (whole, fraction) = match text.split_once('.') {
        Some((whole, fraction)) => (whole, fraction),
        None => (text, ""),
    };
    if whole.is_empty() && fraction.is_empty() {
        return Err(bad("expected a decimal number such as 100.25"));
    }
    if !whole.bytes().all(|b| b.is_ascii_digit()) || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad("expected a decimal number such as 100.25"));
    }
    if fraction.len() > Price::DECIMALS as usize {
        return Err(bad("OUCH prices have at most 4 decimals"));
    }
    let mut units: u64 = 0;
    for byte in whole.bytes() {
        units = units
            .checked_mul(10)
            .and_then(|u| u.checked_add(u64::from(byte - b'0')))
            .filter(|u| *u <= u64::from(u32::MAX))
            .ok_or_else(|| bad("too large"))?;
    }
    let mut fraction_units: u64 = 0;
    for position in 0..Price::DECIMALS as usize {
        let digit = fraction.as_bytes().get(position).map_or(0, |b| b - b'0');
        fraction_units = fraction_units * 10 + u64::from(digit);
    }
    let total = units
        .checked_mul(u64::from(Price::SCALE))
        .and_then(|u| u.checked_add(fraction_units))
        .ok_or_else(|| bad("too large"))?;
    if total == 0 {
        return Err(bad("must be above zero"));
    }
    if total > u64::from(Price::LIMIT_MAX.0) {
        return Err(bad("above the OUCH 4.2 maximum of 199999.99"));
    }
    u32::try_from(total)
        .map(Price)
        .map_err(|_| bad("too large"))
}

/// Formats a price as a decimal with four places (`100.2500`), or `market` for
/// [`Price::MARKET`].
pub fn format_price(price: Price) -> String {
    if price.is_market() {
        "market".to_string()
    } else {
        price.to_string()
    }
}

/// Makes an [`OrderToken`] from text: 1 to 14 printable ASCII characters, no spaces at
/// either end.
pub fn order_token(text: &str) -> Result<OrderToken, ClientError> {
    if text.is_empty() || text.starts_with(' ') {
        return Err(ClientError::invalid(
            "order token",
            format!("{text:?}: 1 to 14 printable characters, no surrounding spaces"),
        ));
    }
    OrderToken::new(text).map_err(|e| ClientError::invalid("order token", format!("{text:?}: {e}")))
}

/// Makes a [`Stock`] from a symbol (1 to 8 printable characters).
pub fn stock(symbol: &str) -> Result<Stock, ClientError> {
    if symbol.is_empty() || symbol.starts_with(' ') {
        return Err(ClientError::invalid(
            "stock",
            format!("{symbol:?}: 1 to 8 printable characters"),
        ));
    }
    Stock::new(symbol).map_err(|e| ClientError::invalid("stock", format!("{symbol:?}: {e}")))
}

/// How long an order lives, in the builder's terms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Lifetime {
    /// Rests until canceled (Time In Force 99999, system hours).
    Day,
    /// Immediate or cancel (Time In Force 0).
    Ioc,
    /// Fill or kill: IOC with Minimum Quantity equal to Shares.
    Fok,
    /// An explicit Time In Force and Minimum Quantity.
    Explicit(TimeInForce, u32),
}

/// A new order in the common shapes, turned into an OUCH [`EnterOrder`] by
/// [`OrderBuilder::build`] (or sent by [`super::Client::submit`]).
///
/// Defaults: Time In Force 99999 (rests until canceled), Display `Y` (anonymous), Capacity
/// `A`, Intermarket Sweep `N`, Minimum Quantity 0, Cross Type `N`, Customer Type space, blank
/// Firm, and no token (the client generates one).
///
/// ```
/// use keel_client::{parse_price, OrderBuilder};
/// let order = OrderBuilder::buy("BTC-PERP", 10, parse_price("100.25")?)?.ioc();
/// # Ok::<(), keel_client::ClientError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OrderBuilder {
    token: Option<OrderToken>,
    side: BuySellIndicator,
    shares: u32,
    stock: Stock,
    price: Price,
    lifetime: Lifetime,
    display: DisplayType,
    firm: Firm,
    capacity: Capacity,
    intermarket_sweep: IntermarketSweepEligibility,
    customer_type: CustomerType,
}

impl OrderBuilder {
    /// A limit order resting until canceled.
    pub fn limit(
        side: BuySellIndicator,
        symbol: &str,
        shares: u32,
        price: Price,
    ) -> Result<OrderBuilder, ClientError> {
        if shares == 0 {
            return Err(ClientError::invalid("shares", "must be at least 1"));
        }
        Ok(OrderBuilder {
            token: None,
            side,
            shares,
            stock: stock(symbol)?,
            price,
            lifetime: Lifetime::Day,
            display: DisplayType::Anonymous,
            firm: Firm::BLANK,
            capacity: Capacity::Agency,
            intermarket_sweep: IntermarketSweepEligibility::NotEligible,
            customer_type: CustomerType::PortDefault,
        })
    }

    /// A market order: price [`Price::MARKET`], immediate or cancel (a market order never
    /// rests).
    pub fn market(
        side: BuySellIndicator,
        symbol: &str,
        shares: u32,
    ) -> Result<OrderBuilder, ClientError> {
        Ok(OrderBuilder::limit(side, symbol, shares, Price::MARKET)?.ioc())
    }

    /// A limit buy.
    pub fn buy(symbol: &str, shares: u32, price: Price) -> Result<OrderBuilder, ClientError> {
        OrderBuilder::limit(BuySellIndicator::Buy, symbol, shares, price)
    }

    /// A limit sell.
    pub fn sell(symbol: &str, shares: u32, price: Price) -> Result<OrderBuilder, ClientError> {
        OrderBuilder::limit(BuySellIndicator::Sell, symbol, shares, price)
    }

    /// Immediate or cancel: Time In Force 0.
    pub fn ioc(mut self) -> OrderBuilder {
        self.lifetime = Lifetime::Ioc;
        self
    }

    /// Fill or kill: Time In Force 0 with Minimum Quantity equal to Shares.
    pub fn fok(mut self) -> OrderBuilder {
        self.lifetime = Lifetime::Fok;
        self
    }

    /// Post-only: Display `P`.
    pub fn post_only(mut self) -> OrderBuilder {
        self.display = DisplayType::PostOnly;
        self
    }

    /// Uses this token instead of a generated one.
    pub fn token(mut self, token: OrderToken) -> OrderBuilder {
        self.token = Some(token);
        self
    }

    /// Sets Time In Force and Minimum Quantity explicitly.
    pub fn time_in_force(mut self, time_in_force: TimeInForce, minimum_quantity: u32) -> Self {
        self.lifetime = Lifetime::Explicit(time_in_force, minimum_quantity);
        self
    }

    /// Sets the Display field.
    pub fn display(mut self, display: DisplayType) -> OrderBuilder {
        self.display = display;
        self
    }

    /// Sets the Firm field.
    pub fn firm(mut self, firm: Firm) -> OrderBuilder {
        self.firm = firm;
        self
    }

    /// Sets the Capacity field.
    pub fn capacity(mut self, capacity: Capacity) -> OrderBuilder {
        self.capacity = capacity;
        self
    }

    /// The token given with [`OrderBuilder::token`], if any.
    pub fn given_token(&self) -> Option<OrderToken> {
        self.token
    }

    /// The Enter Order, using the builder's token if it has one, else `token`.
    pub fn build(&self, token: OrderToken) -> EnterOrder {
        let (time_in_force, minimum_quantity) = match self.lifetime {
            Lifetime::Day => (TimeInForce::SYSTEM_HOURS, 0),
            Lifetime::Ioc => (TimeInForce::IMMEDIATE_OR_CANCEL, 0),
            Lifetime::Fok => (TimeInForce::IMMEDIATE_OR_CANCEL, self.shares),
            Lifetime::Explicit(tif, min) => (tif, min),
        };
        EnterOrder {
            order_token: self.token.unwrap_or(token),
            side: self.side,
            shares: self.shares,
            stock: self.stock,
            price: self.price,
            time_in_force,
            firm: self.firm,
            display: self.display,
            capacity: self.capacity,
            intermarket_sweep: self.intermarket_sweep,
            minimum_quantity,
            cross_type: CrossType::NoCross,
            customer_type: self.customer_type,
        }
    }
}

/// A Replace Order with the plain values Keel accepts for the rest: Time In Force 99999,
/// Display `Y`, Intermarket Sweep `N`, Minimum Quantity 0.
pub fn replace_request(
    existing: OrderToken,
    replacement: OrderToken,
    shares: u32,
    price: Price,
) -> ReplaceOrder {
    ReplaceOrder {
        existing_order_token: existing,
        replacement_order_token: replacement,
        shares,
        price,
        time_in_force: TimeInForce::SYSTEM_HOURS,
        display: DisplayType::Anonymous,
        intermarket_sweep: IntermarketSweepEligibility::NotEligible,
        minimum_quantity: 0,
    }
}

/// Generates order tokens unique to one client: a prefix and a counter in base 36
/// (`prefix1`, `prefix2`, … `prefixz`, `prefix10`, …). Thread-safe.
///
/// Keel remembers every token a user has used for the whole session (across restarts), so
/// prefixes must not repeat between runs: [`TokenGenerator::unique`] derives one from the
/// clock and the process id.
#[derive(Debug)]
pub struct TokenGenerator {
    prefix: String,
    counter: AtomicU64,
}

const BASE36: &[u8; 36] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";

fn base36(mut value: u64) -> String {
    let mut digits = Vec::new();
    loop {
        digits.push(BASE36[(value % 36) as usize]);
        value /= 36;
        if value == 0 {
            break;
        }
    }
    digits.reverse();
    String::from_utf8(digits).unwrap_or_default()
}

impl TokenGenerator {
    /// A generator with this prefix: 1 to 13 printable ASCII characters without spaces.
    /// Tokens are at most 14 characters, so a long prefix leaves few counter digits.
    pub fn new(prefix: &str) -> Result<TokenGenerator, ClientError> {
        if prefix.is_empty() || prefix.len() > 13 || !prefix.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ClientError::invalid(
                "token prefix",
                format!("{prefix:?}: 1 to 13 printable ASCII characters without spaces"),
            ));
        }
        Ok(TokenGenerator {
            prefix: prefix.to_string(),
            counter: AtomicU64::new(0),
        })
    }

    /// A generator whose 9-character prefix comes from the current time in milliseconds and
    /// the process id, leaving 5 base-36 digits (60 million tokens).
    pub fn unique() -> TokenGenerator {
        let millis = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        // 36^8 ms is about 89 years: the time part stays 8 characters until 2059.
        let time = base36(millis % 36u64.pow(8));
        let pid = base36(u64::from(std::process::id()) % 36);
        TokenGenerator {
            prefix: format!("{time:0>8}{pid}"),
            counter: AtomicU64::new(0),
        }
    }

    /// The prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The next token, or an error once the counter no longer fits 14 characters.
    pub fn next_token(&self) -> Result<OrderToken, ClientError> {
        let n = self.counter.fetch_add(1, Ordering::Relaxed) + 1;
        let text = format!("{}{}", self.prefix, base36(n));
        if text.len() > OrderToken::WIDTH {
            return Err(ClientError::invalid(
                "order token",
                format!("the generator with prefix {:?} is exhausted", self.prefix),
            ));
        }
        order_token(&text)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn prices_parse_with_four_implied_decimals() {
        assert_eq!(parse_price("100.25").unwrap(), Price(1_002_500));
        assert_eq!(parse_price("100").unwrap(), Price(1_000_000));
        assert_eq!(parse_price("100.").unwrap(), Price(1_000_000));
        assert_eq!(parse_price("0.0001").unwrap(), Price(1));
        assert_eq!(parse_price(".5").unwrap(), Price(5_000));
        assert_eq!(parse_price("199999.99").unwrap(), Price::LIMIT_MAX);
        for bad in [
            "",
            ".",
            "0",
            "0.0000",
            "-1",
            "+1",
            "1e3",
            "1.00001",
            "199999.9901",
            "99999999999999999999",
            "1,5",
            " 1",
            "1.2.3",
        ] {
            assert!(parse_price(bad).is_err(), "{bad:?}");
        }
        assert_eq!(format_price(Price(1_002_500)), "100.2500");
        assert_eq!(format_price(Price::MARKET), "market");
    }

    #[test]
    fn builder_shapes() {
        let token = order_token("T1").unwrap();
        let order = OrderBuilder::buy("BTC-PERP", 10, Price(1_002_500))
            .unwrap()
            .build(token);
        assert_eq!(order.time_in_force, TimeInForce::SYSTEM_HOURS);
        assert_eq!(order.minimum_quantity, 0);
        assert_eq!(order.display, DisplayType::Anonymous);
        assert_eq!(order.order_token, token);
        let fok = OrderBuilder::sell("BTC-PERP", 7, Price(1)).unwrap().fok();
        let fok = fok.build(token);
        assert_eq!(fok.time_in_force, TimeInForce::IMMEDIATE_OR_CANCEL);
        assert_eq!(fok.minimum_quantity, 7);
        let market = OrderBuilder::market(BuySellIndicator::Buy, "ETH-PERP", 3).unwrap();
        assert_eq!(market.build(token).price, Price::MARKET);
        assert_eq!(
            market.build(token).time_in_force,
            TimeInForce::IMMEDIATE_OR_CANCEL
        );
        let own = order_token("MINE").unwrap();
        let post = OrderBuilder::buy("X", 1, Price(100))
            .unwrap()
            .post_only()
            .token(own);
        assert_eq!(post.build(token).order_token, own);
        assert_eq!(post.build(token).display, DisplayType::PostOnly);
        assert!(OrderBuilder::buy("TOOLONGSYM", 1, Price(1)).is_err());
        assert!(OrderBuilder::buy("X", 0, Price(1)).is_err());
    }

    #[test]
    fn tokens_are_unique_and_bounded() {
        let generator = TokenGenerator::new("ABCDEFGHIJKL").unwrap();
        let tokens: Vec<String> = (0..36 + 5)
            .filter_map(|_| generator.next_token().ok())
            .map(|t| t.as_str().to_string())
            .collect();
        // 12-character prefix: 35 one-digit counters fit, two-digit ones too (14 chars).
        assert_eq!(tokens[0], "ABCDEFGHIJKL1");
        assert_eq!(tokens[35], "ABCDEFGHIJKL10");
        let mut sorted = tokens.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), tokens.len());
        let long = TokenGenerator::new("ABCDEFGHIJKLM").unwrap();
        for _ in 0..35 {
            long.next_token().unwrap();
        }
        assert!(long.next_token().is_err());
        assert!(TokenGenerator::new("").is_err());
        assert!(TokenGenerator::new("A B").is_err());
        let unique = TokenGenerator::unique();
        assert_eq!(unique.prefix().len(), 9);
        assert!(unique.next_token().unwrap().as_str().len() <= 14);
        assert!(order_token("").is_err());
        assert!(order_token("ABCDEFGHIJKLMNO").is_err());
    }
}
