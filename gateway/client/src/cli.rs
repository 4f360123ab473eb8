//! `keel client`: one-shot or scripted orders for a human at a terminal, on top of
//! [`super::Client`].
//!
//! ```text
//! keel client --user alice buy BTC-PERP 10 @ 100.25          # rests; prints accepted
//! keel client --user bob sell BTC-PERP 4 @ 100.25 --ioc       # crosses; prints executed
//! keel client --user alice buy BTC-PERP 10 market
//! keel client --user alice cancel TOKEN [SHARES]
//! keel client --user alice replace TOKEN NEWTOKEN 5 @ 100.30
//! keel client --user alice watch --from 1                     # the stream, then live
//! keel client --user alice script orders.txt                  # one command per line
//! ```
//!
//! One-shot commands log in asking only for new messages, send the command, print every
//! message that arrives until the order is done (rejected, filled, canceled; a cancel or
//! replace answered) or the stream has been quiet for `--quiet` seconds, then log out.
//! Messages go to standard output, one line each (see [`super::display`]); connection
//! events and notes go to standard error.
//!
//! Scripts hold one command per line in the same syntax (`buy BTC-PERP 10 @ 100.25 --ioc
//! --token A1`, `cancel A1`, `replace …`), plus `sleep SECONDS`; blank lines and lines
//! starting with `#` are skipped. The whole file is checked before anything is sent. Each
//! command waits for its first response before the next is sent.
//!
//! The password comes from `--password`, else `KEEL_PASSWORD`, else (for the embedded demo
//! configuration's users) the demo password, else a prompt when standard input is a
//! terminal.

use std::io::{self, BufRead, IsTerminal, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Parser;

use super::{
    order_token, parse_price, Client, ClientError, ClientEvent, ClientOptions, OrderBuilder,
};
use keel_protocol::ouch::{BuySellIndicator, OutboundMessage, Price};
use keel_protocol::OrderToken;

/// `keel client` options and command.
#[derive(Clone, Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    keel client --user alice buy BTC-PERP 10 @ 100.25\n  \
    keel client --user bob sell BTC-PERP 4 @ 100.25 --ioc\n  \
    keel client --user alice cancel TOKEN\n  \
    keel client --user alice watch --from 1\n\n\
    Prices are decimals with up to 4 places. Messages print one per line as\n\
    `#SEQ what`; connection events go to standard error.")]
pub struct Args {
    /// User name (up to 6 characters).
    #[arg(long, short = 'u', global = true)]
    pub user: Option<String>,
    /// Password; else $KEEL_PASSWORD; else the demo password of a demo user; else a prompt.
    #[arg(long, global = true)]
    pub password: Option<String>,
    /// Server endpoints (host:port), comma-separated, tried in order.
    #[arg(
        long,
        global = true,
        value_delimiter = ',',
        default_value = "127.0.0.1:9000"
    )]
    pub server: Vec<String>,
    /// Seconds to wait for the first response to a command.
    #[arg(long, global = true, default_value_t = 5.0, value_name = "SECONDS")]
    pub wait: f64,
    /// Seconds without messages after which a one-shot command (or a script) finishes.
    #[arg(long, global = true, default_value_t = 1.0, value_name = "SECONDS")]
    pub quiet: f64,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// A `keel client` command (also the syntax of a script line).
#[derive(Clone, Debug, clap::Subcommand)]
pub enum Command {
    /// Enter a buy order: `buy STOCK QTY @ PRICE` or `buy STOCK QTY market`.
    Buy(OrderArgs),
    /// Enter a sell order: `sell STOCK QTY @ PRICE` or `sell STOCK QTY market`.
    Sell(OrderArgs),
    /// Cancel an order, or reduce it so that at most SHARES remain.
    Cancel {
        /// The order's token.
        token: String,
        /// New intended size (0, the default, cancels the whole order).
        shares: Option<u32>,
    },
    /// Replace an order: `replace TOKEN NEWTOKEN QTY @ PRICE`.
    Replace {
        /// The order's current token.
        token: String,
        /// The replacement's token.
        new_token: String,
        /// New total quantity.
        shares: u32,
        /// `@ PRICE` (or just `PRICE`).
        #[arg(num_args = 1..=2, required = true, value_name = "@ PRICE")]
        price: Vec<String>,
    },
    /// Print the user's stream from sequence number N, then follow it live (Ctrl-C stops).
    Watch {
        /// First sequence number to print (0: only new messages).
        #[arg(long, default_value_t = 1, value_name = "N")]
        from: u64,
    },
    /// Run the commands in FILE, one per line, printing responses as they come.
    Script {
        /// The script (`-` for standard input).
        file: PathBuf,
    },
}

/// `STOCK QTY @ PRICE | STOCK QTY market` and order flags.
#[derive(Clone, Debug, clap::Args)]
pub struct OrderArgs {
    /// Instrument symbol (OUCH Stock), e.g. BTC-PERP.
    pub stock: String,
    /// Quantity.
    pub shares: u32,
    /// `@ PRICE`, `PRICE`, or `market`.
    #[arg(num_args = 1..=2, required = true, value_name = "@ PRICE|market")]
    pub price: Vec<String>,
    /// Immediate or cancel.
    #[arg(long)]
    pub ioc: bool,
    /// Fill or kill.
    #[arg(long, conflicts_with = "ioc")]
    pub fok: bool,
    /// Post-only (never takes liquidity).
    #[arg(long)]
    pub post_only: bool,
    /// Order token (default: a unique generated one).
    #[arg(long, value_name = "T")]
    pub token: Option<String>,
}

/// One script line.
#[derive(Debug, Parser)]
#[command(name = "script line", no_binary_name = true, disable_help_flag = true)]
struct ScriptLine {
    #[command(subcommand)]
    command: Command,
}

/// A script step.
#[derive(Debug)]
enum Step {
    Send(Command),
    Sleep(Duration),
}

/// Runs `keel client`, printing to standard output and standard error.
pub fn run(args: Args) -> Result<(), ClientError> {
    let stdout = io::stdout();
    let stderr = io::stderr();
    let mut out = stdout.lock();
    let mut err = stderr.lock();
    run_with(&args, &mut out, &mut err)
}

/// Runs `keel client` with the given outputs (messages to `out`, notes to `err`).
pub fn run_with(args: &Args, out: &mut dyn Write, err: &mut dyn Write) -> Result<(), ClientError> {
    let user = args
        .user
        .clone()
        .ok_or_else(|| ClientError::Usage("--user is required".into()))?;
    let wait = seconds("--wait", args.wait)?;
    let quiet = seconds("--quiet", args.quiet)?;
    // Check everything the command line or the script says before connecting.
    let steps = match &args.command {
        Command::Script { file } => Some(read_script(file)?),
        Command::Watch { .. } => None,
        other => {
            check(other)?;
            None
        }
    };
    let endpoints = resolve(&args.server)?;
    let password = password(&user, args.password.as_deref(), err)?;
    let options = ClientOptions {
        requested_sequence_number: match args.command {
            Command::Watch { from } => from,
            _ => 0,
        },
        ..ClientOptions::default()
    };
    let client = Client::connect(&endpoints, &user, &password, options)?;
    let mut session = Session {
        client: &client,
        out,
        err,
        wait,
        quiet,
    };
    let result = match (&args.command, steps) {
        (Command::Watch { .. }, _) => session.watch(),
        (_, Some(steps)) => session.script(&steps),
        (command, None) => session.one_shot(command),
    };
    let finished = session.finish();
    result.and(finished)
}

fn seconds(name: &str, value: f64) -> Result<Duration, ClientError> {
    Duration::try_from_secs_f64(value)
        .ok()
        .filter(|d| *d <= Duration::from_secs(86_400))
        .ok_or_else(|| ClientError::Usage(format!("{name}: expected seconds, got {value}")))
}

fn resolve(servers: &[String]) -> Result<Vec<SocketAddr>, ClientError> {
    let mut endpoints = Vec::new();
    for server in servers.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
        let addrs = server.to_socket_addrs().map_err(|e| {
            ClientError::invalid("--server", format!("{server:?}: {e} (expected host:port)"))
        })?;
        for addr in addrs {
            if !endpoints.contains(&addr) {
                endpoints.push(addr);
            }
        }
    }
    if endpoints.is_empty() {
        return Err(ClientError::Usage("--server: no endpoint given".into()));
    }
    Ok(endpoints)
}

fn password(user: &str, given: Option<&str>, err: &mut dyn Write) -> Result<String, ClientError> {
    if let Some(password) = given {
        return Ok(password.to_string());
    }
    if let Ok(password) = std::env::var("KEEL_PASSWORD") {
        return Ok(password);
    }
    if let Some((_, password)) = crate::DEMO_USERS
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(user))
    {
        writeln!(
            err,
            "keel client: no --password or KEEL_PASSWORD; using the demo password of {user}"
        )?;
        return Ok((*password).to_string());
    }
    if io::stdin().is_terminal() {
        write!(err, "password for {user}: ")?;
        err.flush()?;
        let mut line = String::new();
        io::stdin().lock().read_line(&mut line)?;
        return Ok(line.trim_end_matches(['\r', '\n']).to_string());
    }
    Err(ClientError::Usage(
        "no password: give --password or set KEEL_PASSWORD".into(),
    ))
}

/// `@ PRICE`, `@PRICE`, `PRICE` or `market`.
fn parse_price_words(words: &[String]) -> Result<Price, ClientError> {
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    let text = match words.as_slice() {
        ["@", price] => *price,
        [single] if single.len() > 1 && single.starts_with('@') => &single[1..],
        [single] => *single,
        _ => {
            return Err(ClientError::Usage(format!(
                "expected `@ PRICE` or `market`, got `{}`",
                words.join(" ")
            )))
        }
    };
    if text.eq_ignore_ascii_case("market") || text.eq_ignore_ascii_case("mkt") {
        return Ok(Price::MARKET);
    }
    parse_price(text)
}

/// What a command sends, fully checked.
enum Request {
    Order(OrderBuilder),
    Cancel(OrderToken, u32),
    Replace(OrderToken, OrderToken, u32, Price),
}

fn request(command: &Command) -> Result<Request, ClientError> {
    match command {
        Command::Buy(order) | Command::Sell(order) => {
            let side = if matches!(command, Command::Buy(_)) {
                BuySellIndicator::Buy
            } else {
                BuySellIndicator::Sell
            };
            let price = parse_price_words(&order.price)?;
            let mut builder = if price.is_market() {
                if order.post_only {
                    return Err(ClientError::Usage(
                        "a market order cannot be post-only".into(),
                    ));
                }
                OrderBuilder::market(side, &order.stock, order.shares)?
            } else {
                OrderBuilder::limit(side, &order.stock, order.shares, price)?
            };
            if order.ioc {
                builder = builder.ioc();
            }
            if order.fok {
                builder = builder.fok();
            }
            if order.post_only {
                builder = builder.post_only();
            }
            if let Some(token) = &order.token {
                builder = builder.token(order_token(token)?);
            }
            Ok(Request::Order(builder))
        }
        Command::Cancel { token, shares } => {
            Ok(Request::Cancel(order_token(token)?, shares.unwrap_or(0)))
        }
        Command::Replace {
            token,
            new_token,
            shares,
            price,
        } => {
            let price = parse_price_words(price)?;
            if price.is_market() {
                return Err(ClientError::Usage(
                    "a replacement needs a limit price".into(),
                ));
            }
            if *shares == 0 {
                return Err(ClientError::Usage(
                    "a replacement needs a quantity above 0 (use cancel to cancel)".into(),
                ));
            }
            Ok(Request::Replace(
                order_token(token)?,
                order_token(new_token)?,
                *shares,
                price,
            ))
        }
        Command::Watch { .. } | Command::Script { .. } => Err(ClientError::Usage(
            "watch and script cannot be used inside a script".into(),
        )),
    }
}

fn check(command: &Command) -> Result<(), ClientError> {
    request(command).map(|_| ())
}

fn read_script(path: &PathBuf) -> Result<Vec<Step>, ClientError> {
    let text = if path.as_os_str() == "-" {
        let mut text = String::new();
        for line in io::stdin().lock().lines() {
            text.push_str(&line?);
            text.push('\n');
        }
        text
    } else {
        std::fs::read_to_string(path).map_err(|e| {
            ClientError::Usage(format!("cannot read script {}: {e}", path.display()))
        })?
    };
    let mut steps = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let at = |message: String| {
            ClientError::Usage(format!("{}:{}: {message}", path.display(), index + 1))
        };
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.first() == Some(&"sleep") {
            let secs = match words.as_slice() {
                [_, secs] => secs.parse::<f64>().ok(),
                _ => None,
            };
            let duration = secs
                .and_then(|s| Duration::try_from_secs_f64(s).ok())
                .ok_or_else(|| at("expected `sleep SECONDS`".into()))?;
            steps.push(Step::Sleep(duration));
            continue;
        }
        let parsed = ScriptLine::try_parse_from(&words).map_err(|e| {
            let text = e.to_string();
            let first = text
                .lines()
                .next()
                .unwrap_or("")
                .trim_start_matches("error: ");
            at(first.to_string())
        })?;
        request(&parsed.command).map_err(|e| at(e.to_string()))?;
        steps.push(Step::Send(parsed.command));
    }
    Ok(steps)
}

/// What a sent command waits for.
#[derive(Debug)]
enum Expect {
    /// A new order: answered by Accepted or Rejected, done when nothing remains open.
    Order {
        token: OrderToken,
        open: Option<u64>,
        answered: bool,
        done: bool,
    },
    /// A cancel: answered (and done) by Canceled, Modified or Cancel Reject.
    Cancel { token: OrderToken, done: bool },
    /// A replace: answered (and done) by Replaced or Rejected.
    Replace {
        existing: OrderToken,
        replacement: OrderToken,
        done: bool,
    },
    /// Nothing in particular (the end of a script).
    Nothing,
}

impl Expect {
    fn observe(&mut self, message: &OutboundMessage) {
        match self {
            Expect::Order {
                token,
                open,
                answered,
                done,
            } => match message {
                OutboundMessage::OrderAccepted(m) if m.order_token == *token => {
                    *answered = true;
                    *open = Some(u64::from(m.shares));
                }
                OutboundMessage::OrderRejected(m) if m.order_token == *token => {
                    *answered = true;
                    *done = true;
                }
                OutboundMessage::OrderExecuted(m) if m.order_token == *token => {
                    *open = open.map(|o| o.saturating_sub(u64::from(m.executed_shares)));
                }
                OutboundMessage::OrderCanceled(m) if m.order_token == *token => {
                    *open = open.map(|o| o.saturating_sub(u64::from(m.decrement_shares)));
                }
                OutboundMessage::AiqCanceled(m) if m.order_token == *token => {
                    *open = open.map(|o| o.saturating_sub(u64::from(m.decrement_shares)));
                }
                OutboundMessage::OrderReplaced(m) if m.previous_order_token == *token => {
                    *token = m.replacement_order_token;
                    *open = Some(u64::from(m.shares));
                }
                _ => {}
            },
            Expect::Cancel { token, done } => match message {
                OutboundMessage::OrderCanceled(m) if m.order_token == *token => *done = true,
                OutboundMessage::AiqCanceled(m) if m.order_token == *token => *done = true,
                OutboundMessage::OrderModified(m) if m.order_token == *token => *done = true,
                OutboundMessage::CancelReject(m) if m.order_token == *token => *done = true,
                _ => {}
            },
            Expect::Replace {
                existing,
                replacement,
                done,
            } => match message {
                OutboundMessage::OrderReplaced(m)
                    if m.previous_order_token == *existing
                        && m.replacement_order_token == *replacement =>
                {
                    *done = true
                }
                OutboundMessage::OrderRejected(m) if m.order_token == *replacement => *done = true,
                _ => {}
            },
            Expect::Nothing => {}
        }
        if let Expect::Order {
            open: Some(0),
            done,
            ..
        } = self
        {
            *done = true;
        }
    }

    fn answered(&self) -> bool {
        match self {
            Expect::Order { answered, .. } => *answered,
            Expect::Cancel { done, .. } | Expect::Replace { done, .. } => *done,
            Expect::Nothing => true,
        }
    }

    fn done(&self) -> bool {
        match self {
            Expect::Order { done, .. }
            | Expect::Cancel { done, .. }
            | Expect::Replace { done, .. } => *done,
            Expect::Nothing => false,
        }
    }
}

/// How long to keep reading after a command is done, for messages of the same batch.
const GRACE: Duration = Duration::from_millis(200);

struct Session<'a> {
    client: &'a Client,
    out: &'a mut dyn Write,
    err: &'a mut dyn Write,
    wait: Duration,
    quiet: Duration,
}

impl Session<'_> {
    /// Prints an event; an error for the events that end the client.
    fn print(&mut self, event: &ClientEvent) -> Result<(), ClientError> {
        match event {
            ClientEvent::Message { .. } | ClientEvent::Undecodable { .. } => {
                writeln!(self.out, "{event}")?;
                self.out.flush()?;
            }
            ClientEvent::LoggedOut => {}
            ClientEvent::GaveUp { reason } => {
                writeln!(self.err, "keel client: {event}")?;
                return Err(ClientError::NoResponse(format!(
                    "connection lost for good: {reason}"
                )));
            }
            _ => writeln!(self.err, "keel client: {event}")?,
        }
        Ok(())
    }

    /// Sends a command, retrying once after a reconnect if the client was between
    /// connections.
    fn send(&mut self, command: &Command) -> Result<Expect, ClientError> {
        let request = request(command)?;
        for attempt in 0..2 {
            let sent = match &request {
                Request::Order(order) => self.client.submit(order).map(|token| Expect::Order {
                    token,
                    open: None,
                    answered: false,
                    done: false,
                }),
                Request::Cancel(token, shares) => {
                    self.client
                        .cancel_order(*token, *shares)
                        .map(|()| Expect::Cancel {
                            token: *token,
                            done: false,
                        })
                }
                Request::Replace(existing, replacement, shares, price) => self
                    .client
                    .replace(*existing, Some(*replacement), *shares, *price)
                    .map(|_| Expect::Replace {
                        existing: *existing,
                        replacement: *replacement,
                        done: false,
                    }),
            };
            match sent {
                Err(ClientError::NotConnected) if attempt == 0 => {
                    if !self.client.wait_connected(self.wait) {
                        return Err(ClientError::NotConnected);
                    }
                }
                other => return other,
            }
        }
        Err(ClientError::NotConnected)
    }

    /// Prints events until `expect` is done (plus a short grace), or answered and then
    /// quiet for `--quiet`; `until_answered` returns as soon as it is answered.
    fn follow(&mut self, expect: &mut Expect, until_answered: bool) -> Result<(), ClientError> {
        let start = Instant::now();
        let mut last = Instant::now();
        loop {
            let deadline = if expect.done() {
                last + GRACE.min(self.quiet)
            } else if expect.answered() {
                if until_answered {
                    return Ok(());
                }
                last + self.quiet
            } else {
                start + self.wait
            };
            let now = Instant::now();
            if now >= deadline {
                if expect.answered() || expect.done() {
                    return Ok(());
                }
                return Err(ClientError::NoResponse(format!(
                    "no response within {:?}",
                    self.wait
                )));
            }
            match self.client.next_event(deadline - now) {
                Some(event) => {
                    if let ClientEvent::Message { message, .. } = &event {
                        expect.observe(message);
                        last = Instant::now();
                    }
                    self.print(&event)?;
                    if matches!(event, ClientEvent::LoggedOut) {
                        return Ok(());
                    }
                }
                None if self.client.is_finished() => {
                    return Err(ClientError::NoResponse(
                        "the connection ended before the response".into(),
                    ))
                }
                None => {}
            }
        }
    }

    fn one_shot(&mut self, command: &Command) -> Result<(), ClientError> {
        let mut expect = self.send(command)?;
        self.follow(&mut expect, false)
    }

    fn script(&mut self, steps: &[Step]) -> Result<(), ClientError> {
        for step in steps {
            match step {
                Step::Sleep(duration) => {
                    let deadline = Instant::now() + *duration;
                    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
                        if left.is_zero() {
                            break;
                        }
                        if let Some(event) = self.client.next_event(left) {
                            self.print(&event)?;
                        }
                    }
                }
                Step::Send(command) => {
                    let mut expect = self.send(command)?;
                    if let Err(error) = self.follow(&mut expect, true) {
                        if !matches!(error, ClientError::NoResponse(_)) || self.client.is_finished()
                        {
                            return Err(error);
                        }
                        writeln!(self.err, "keel client: {error}; going on")?;
                    }
                    while let Some(event) = self.client.try_next_event() {
                        self.print(&event)?;
                    }
                }
            }
        }
        self.follow(&mut Expect::Nothing, false)
    }

    fn watch(&mut self) -> Result<(), ClientError> {
        loop {
            match self.client.next_event(Duration::from_secs(1)) {
                Some(event) => self.print(&event)?,
                None if self.client.is_finished() => return Ok(()),
                None => {}
            }
        }
    }

    /// Logs out and prints what arrives until the server closes.
    fn finish(&mut self) -> Result<(), ClientError> {
        if self.client.is_finished() {
            return Ok(());
        }
        self.client.logout()?;
        let deadline = Instant::now() + Duration::from_secs(5);
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.client.next_event(left) {
                Some(ClientEvent::LoggedOut) | None => break,
                Some(event) => {
                    // A loss while logging out is no error: the command already ran.
                    let _ = self.print(&event);
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    fn words(text: &str) -> Vec<String> {
        text.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn price_words() {
        assert_eq!(
            parse_price_words(&words("@ 100.25")).unwrap(),
            Price(1_002_500)
        );
        assert_eq!(
            parse_price_words(&words("@100.25")).unwrap(),
            Price(1_002_500)
        );
        assert_eq!(parse_price_words(&words("7")).unwrap(), Price(70_000));
        assert_eq!(parse_price_words(&words("market")).unwrap(), Price::MARKET);
        assert!(parse_price_words(&words("@")).is_err());
        assert!(parse_price_words(&words("at 5")).is_err());
    }

    #[test]
    fn script_lines_parse_like_the_command_line() {
        let line =
            ScriptLine::try_parse_from(words("buy BTC-PERP 10 @ 100.25 --ioc --token A1")).unwrap();
        let Command::Buy(order) = &line.command else {
            panic!("not a buy: {line:?}");
        };
        assert!(order.ioc);
        assert_eq!(order.token.as_deref(), Some("A1"));
        assert!(matches!(request(&line.command), Ok(Request::Order(_))));
        let line = ScriptLine::try_parse_from(words("replace A1 A2 5 @ 101")).unwrap();
        assert!(matches!(
            request(&line.command),
            Ok(Request::Replace(_, _, 5, Price(1_010_000)))
        ));
        let line = ScriptLine::try_parse_from(words("cancel A1")).unwrap();
        assert!(matches!(request(&line.command), Ok(Request::Cancel(_, 0))));
        assert!(ScriptLine::try_parse_from(words("buy BTC-PERP ten @ 1")).is_err());
        let line = ScriptLine::try_parse_from(words("watch")).unwrap();
        assert!(request(&line.command).is_err());
        let line = ScriptLine::try_parse_from(words("buy BTC-PERP 1 @ 1.00001")).unwrap();
        assert!(request(&line.command).is_err());
    }
}
