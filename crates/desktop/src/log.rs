//! The signal log: a bounded buffer of rows and a filtered view of it, kept up to date as rows
//! arrive so that drawing only ever touches the visible rows.

use std::collections::VecDeque;

use signalbox_proto::{ConnectionId, SignalError};

/// Rows kept; older ones are dropped (with [`MAX_BYTES`], whichever comes first).
pub const MAX_ROWS: usize = 100_000;
/// Bytes of row text (data, type, names) kept: 100 000 rows of 8 KiB would be 0.8 GB.
pub const MAX_BYTES: usize = 64 << 20;
/// What a row costs beyond its text.
const ROW_OVERHEAD: usize = 160;

fn cost(row: &Row) -> usize {
    ROW_OVERHEAD + row.data.len() + row.r#type.len() + row.sender.len() + row.target.len()
}

/// Whether a row was sent by us or received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Direction {
    /// Received from `from` (`None`: the relay itself).
    In {
        /// The sender.
        from: Option<ConnectionId>,
    },
    /// Sent by this app.
    Out {
        /// The app's own number for it (to match the relay's answer).
        local: u64,
    },
    /// Someone joined, left or was removed (a line of the log, not a signal).
    Presence {
        /// Who.
        who: ConnectionId,
        /// `joined` or `left`.
        event: &'static str,
    },
}

/// What became of a sent signal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// Handed to the client, not yet answered.
    Pending,
    /// The relay took it.
    Accepted,
    /// Refused, with why.
    Failed {
        /// The error's code.
        code: u16,
        /// The error text.
        message: String,
    },
}

/// One signal in the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// Increasing number of the row (survives drops of older rows).
    pub number: u64,
    /// Local time, `HH:MM:SS.mmm`.
    pub time: String,
    /// Sent or received.
    pub direction: Direction,
    /// The sender's display name.
    pub sender: String,
    /// Who it went to, for people: `everyone`, `me`, a name, or names.
    pub target: String,
    /// The type.
    pub r#type: String,
    /// The data.
    pub data: String,
    /// For sent rows: what the relay said.
    pub delivery: Option<Delivery>,
    /// The sender's seq, once known.
    pub seq: Option<u64>,
}

/// Filters; a row is shown when it matches all the non-empty ones (case-insensitive).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Substring of the type.
    pub r#type: String,
    /// Substring of the sender's name.
    pub sender: String,
    /// Substring of the data.
    pub text: String,
}

impl Filter {
    fn matches(&self, row: &Row) -> bool {
        fn has(hay: &str, needle: &str) -> bool {
            needle.is_empty() || hay.to_lowercase().contains(&needle.to_lowercase())
        }
        has(&row.r#type, &self.r#type)
            && has(&row.sender, &self.sender)
            && has(&row.data, &self.text)
    }

    /// Whether any filter is set.
    pub fn is_active(&self) -> bool {
        !(self.r#type.is_empty() && self.sender.is_empty() && self.text.is_empty())
    }
}

/// The log.
#[derive(Debug, Default)]
pub struct SignalLog {
    rows: VecDeque<Row>,
    next_number: u64,
    filter: Filter,
    /// Numbers of the rows that match the filter, ascending.
    shown: VecDeque<u64>,
    /// What the kept rows cost ([`cost`]).
    bytes: usize,
}

impl SignalLog {
    /// Adds a row (its `number` is assigned here) and returns that number.
    pub fn push(&mut self, mut row: Row) -> u64 {
        row.number = self.next_number;
        self.next_number += 1;
        let added = cost(&row);
        while (self.rows.len() >= MAX_ROWS || self.bytes + added > MAX_BYTES)
            && let Some(old) = self.rows.pop_front()
        {
            self.bytes -= cost(&old);
            if self.shown.front() == Some(&old.number) {
                self.shown.pop_front();
            }
        }
        self.bytes += added;
        if self.filter.matches(&row) {
            self.shown.push_back(row.number);
        }
        let number = row.number;
        self.rows.push_back(row);
        number
    }

    fn index_of(&self, number: u64) -> Option<usize> {
        let first = self.rows.front()?.number;
        let i = number.checked_sub(first)? as usize;
        (i < self.rows.len()).then_some(i)
    }

    /// A row by number, if still kept.
    pub fn get(&self, number: u64) -> Option<&Row> {
        self.index_of(number).map(|i| &self.rows[i])
    }

    /// A row by number, to update (its filter match must not change).
    pub fn get_mut(&mut self, number: u64) -> Option<&mut Row> {
        self.index_of(number).map(|i| &mut self.rows[i])
    }

    /// The `i`-th shown row.
    pub fn shown(&self, i: usize) -> Option<&Row> {
        self.shown.get(i).and_then(|&n| self.get(n))
    }

    /// How many rows the filter shows.
    pub fn shown_len(&self) -> usize {
        self.shown.len()
    }

    /// How many rows are kept.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether the log is empty.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The filter.
    pub fn filter(&self) -> &Filter {
        &self.filter
    }

    /// Changes the filter and recomputes what is shown.
    pub fn set_filter(&mut self, filter: Filter) {
        if filter == self.filter {
            return;
        }
        self.filter = filter;
        self.shown = self
            .rows
            .iter()
            .filter(|r| self.filter.matches(r))
            .map(|r| r.number)
            .collect();
    }

    /// Forgets every row.
    pub fn clear(&mut self) {
        self.rows.clear();
        self.shown.clear();
        self.bytes = 0;
    }

    /// What the kept rows cost, in bytes (bounded by [`MAX_BYTES`]).
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

impl SignalLog {
    /// The rows the filter shows, as JSON lines in the shape `signalbox listen --json`
    /// prints (`event` first), with the local time added.
    pub fn to_json_lines(&self) -> String {
        let mut out = String::new();
        for number in &self.shown {
            let Some(r) = self.get(*number) else { continue };
            let line = match &r.direction {
                Direction::Presence { who, event } => serde_json::json!({
                    "event": event, "connection": who, "name": r.sender, "detail": r.data,
                    "time": r.time,
                }),
                Direction::In { from } => serde_json::json!({
                    "event": "signal", "from": from, "from_name": r.sender,
                    "to_all": r.target == "everyone", "seq": r.seq, "type": r.r#type,
                    "data": r.data, "time": r.time,
                }),
                Direction::Out { .. } => serde_json::json!({
                    "event": "sent", "to": r.target, "seq": r.seq, "type": r.r#type,
                    "data": r.data, "time": r.time,
                    "accepted": matches!(r.delivery, Some(Delivery::Accepted)),
                }),
            };
            out.push_str(&line.to_string());
            out.push('\n');
        }
        out
    }
}

/// A sent signal's failure, for the log.
pub fn failed(error: &SignalError) -> Delivery {
    Delivery::Failed {
        code: error.code(),
        message: error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_is_bounded_by_bytes_too() {
        let mut log = SignalLog::default();
        let big = "x".repeat(8192);
        for _ in 0..20_000 {
            log.push(row("t", "bob", &big));
        }
        assert!(log.bytes() <= MAX_BYTES, "{}", log.bytes());
        assert!(log.len() < 20_000 && log.len() > 7_000, "{}", log.len());
        assert_eq!(log.shown_len(), log.len());
        log.clear();
        assert_eq!(log.bytes(), 0);
    }

    fn row(ty: &str, sender: &str, data: &str) -> Row {
        Row {
            number: 0,
            time: "00:00:00.000".into(),
            direction: Direction::In { from: None },
            sender: sender.into(),
            target: "everyone".into(),
            r#type: ty.into(),
            data: data.into(),
            delivery: None,
            seq: Some(1),
        }
    }

    #[test]
    fn filters_by_type_sender_and_text() {
        let mut log = SignalLog::default();
        log.push(row("chat", "Alice", "hello"));
        log.push(row("robot", "Bob", "forward"));
        log.push(row("chat", "Bob", "Hi there"));
        assert_eq!(log.shown_len(), 3);
        log.set_filter(Filter {
            r#type: "chat".into(),
            ..Filter::default()
        });
        assert_eq!(log.shown_len(), 2);
        log.set_filter(Filter {
            r#type: "chat".into(),
            sender: "bob".into(),
            text: String::new(),
        });
        assert_eq!(log.shown_len(), 1);
        assert_eq!(log.shown(0).unwrap().data, "Hi there");
        // New rows are checked as they arrive.
        log.push(row("chat", "Bobby", "again"));
        log.push(row("robot", "Bob", "nope"));
        assert_eq!(log.shown_len(), 2);
        log.set_filter(Filter {
            text: "HELLO".into(),
            ..Filter::default()
        });
        assert_eq!(log.shown(0).unwrap().sender, "Alice");
    }

    #[test]
    fn bounded_and_numbers_survive_drops() {
        let mut log = SignalLog::default();
        for i in 0..(MAX_ROWS + 10) {
            log.push(row("t", "s", &i.to_string()));
        }
        assert_eq!(log.len(), MAX_ROWS);
        assert_eq!(log.shown_len(), MAX_ROWS);
        assert_eq!(log.shown(0).unwrap().data, "10");
        assert!(log.get(0).is_none());
        assert_eq!(
            log.get(MAX_ROWS as u64 + 9).unwrap().data,
            (MAX_ROWS + 9).to_string()
        );
        log.clear();
        assert!(log.is_empty());
        assert_eq!(log.shown_len(), 0);
    }
}
