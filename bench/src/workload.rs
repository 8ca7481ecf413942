//! The benchmark data: deterministic rows of about 200 bytes and the table
//! that contains them, in a plaintext and a `persist` declaration.

/// Columns of the `items` table, shared by both declarations.
const ITEM_COLUMNS: &str = "id INTEGER PRIMARY KEY, name TEXT NOT NULL, email TEXT NOT NULL, \
     city TEXT, amount REAL, quantity INTEGER, note TEXT";

/// Returns the plaintext (and SQLCipher) declaration of `items`.
pub fn plain_items_sql() -> String {
    format!("CREATE TABLE items({ITEM_COLUMNS})")
}

/// Returns the encrypted declaration of `items`.
pub fn persist_items_sql() -> String {
    format!("CREATE VIRTUAL TABLE items USING persist({ITEM_COLUMNS})")
}

/// Inserts one row; the parameters follow [`Item`]'s fields.
pub const INSERT_ITEM: &str = "INSERT INTO items(id, name, email, city, amount, quantity, note) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";

/// Reads every column but the key of one row.
pub const LOOKUP_ITEM: &str =
    "SELECT name, email, city, amount, quantity, note FROM items WHERE id = ?1";

/// Reads every row once and aggregates. Amounts are summed in integer cents,
/// so the result does not depend on the order in which rows are read (the
/// encrypted table returns them in random rowid order).
pub const SCAN_ITEMS: &str = "SELECT count(*), sum(CAST(round(amount * 100) AS INTEGER)), \
     sum(quantity), sum(length(note)), min(email), max(name) FROM items";

/// A SplitMix64 generator: small, fast and the same on every machine.
pub struct SplitMix(u64);

impl SplitMix {
    /// Creates a generator from a seed.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// Returns the next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..bound`; `bound` must be above 0.
    pub fn below(&mut self, bound: u64) -> u64 {
        self.next_u64() % bound
    }
}

const FIRST_NAMES: [&str; 16] = [
    "Alice", "Bruno", "Chiara", "Dmitri", "Elena", "Farid", "Greta", "Hiro", "Ines", "Jonas",
    "Kamala", "Luis", "Mei", "Nadia", "Oskar", "Priya",
];
const LAST_NAMES: [&str; 16] = [
    "Andersen",
    "Bianchi",
    "Castillo",
    "Dubois",
    "Eriksson",
    "Fischer",
    "Gonzalez",
    "Horvat",
    "Ivanova",
    "Jansen",
    "Kowalski",
    "Lindqvist",
    "Moreau",
    "Novak",
    "Okafor",
    "Petrov",
];
const CITIES: [&str; 8] = [
    "Lisbon", "Tallinn", "Osaka", "Montreal", "Nairobi", "Lyon", "Krakow", "Recife",
];
const WORDS: [&str; 24] = [
    "order",
    "shipped",
    "invoice",
    "customer",
    "requested",
    "delivery",
    "window",
    "pallet",
    "returned",
    "damaged",
    "express",
    "warehouse",
    "note",
    "call",
    "before",
    "arrival",
    "fragile",
    "signed",
    "partial",
    "refund",
    "pending",
    "priority",
    "label",
    "courier",
];

/// Length of the generated note, chosen so that a row's values take about
/// 200 bytes.
const NOTE_LEN: usize = 120;

/// One generated row.
#[derive(Clone, Debug, PartialEq)]
pub struct Item {
    /// The primary key.
    pub id: i64,
    /// A person's name, 9 to 16 bytes.
    pub name: String,
    /// An e-mail address, about 30 bytes.
    pub email: String,
    /// A city name.
    pub city: &'static str,
    /// A price with two decimals.
    pub amount: f64,
    /// A small count.
    pub quantity: i64,
    /// Free text of [`NOTE_LEN`] bytes.
    pub note: String,
}

/// Generates the row with primary key `id`. The same `id` always gives the
/// same row.
pub fn item(id: i64) -> Item {
    let mut random = SplitMix::new(0x5EED_0000_0000_0000 ^ id as u64);
    let first = FIRST_NAMES[random.below(16) as usize];
    let last = LAST_NAMES[random.below(16) as usize];
    let city = CITIES[random.below(8) as usize];
    let cents = random.below(100_000) as i64;
    let quantity = 1 + random.below(20) as i64;
    let mut note = String::with_capacity(NOTE_LEN + 12);
    while note.len() < NOTE_LEN {
        if !note.is_empty() {
            note.push(' ');
        }
        note.push_str(WORDS[random.below(24) as usize]);
    }
    note.truncate(NOTE_LEN);
    Item {
        id,
        name: format!("{first} {last}"),
        email: format!(
            "{}.{}{id}@example.org",
            first.to_lowercase(),
            last.to_lowercase()
        ),
        city,
        amount: cents as f64 / 100.0,
        quantity,
        note,
    }
}

/// Approximate stored size of an item's values in bytes: 8 for each number
/// and the length of each text.
pub fn item_value_bytes(item: &Item) -> usize {
    8 * 3 + item.name.len() + item.email.len() + item.city.len() + item.note.len()
}

/// `count` primary keys drawn uniformly from `1..=rows`, the same for every
/// engine.
pub fn lookup_keys(rows: usize, count: usize) -> Vec<i64> {
    let mut random = SplitMix::new(0x10C4_u64);
    (0..count)
        .map(|_| 1 + random.below(rows as u64) as i64)
        .collect()
}

/// A 64-bit FNV-1a hash, used to compare query results across engines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Checksum(pub u64);

impl Default for Checksum {
    fn default() -> Self {
        Self(0xCBF2_9CE4_8422_2325)
    }
}

impl Checksum {
    /// Mixes `bytes` in, followed by a separator so that ("ab", "c") and
    /// ("a", "bc") differ.
    pub fn add(&mut self, bytes: &[u8]) {
        for byte in bytes.iter().chain(&[0xFF]) {
            self.0 ^= u64::from(*byte);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01B3);
        }
    }
}

/// Splits `sql/chinook/queries.sql` into (name, text) pairs. Each query
/// follows a line `-- query: <name>`.
pub fn chinook_queries(text: &str) -> Vec<(String, String)> {
    let mut queries: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        if let Some(name) = line.strip_prefix("-- query: ") {
            queries.push((name.trim().to_owned(), String::new()));
        } else if let Some((_, body)) = queries.last_mut() {
            body.push_str(line);
            body.push('\n');
        }
    }
    queries
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_are_deterministic_and_about_200_bytes() {
        assert_eq!(item(42), item(42));
        assert_ne!(item(42), item(43));
        for id in 1..1000 {
            let size = item_value_bytes(&item(id));
            assert!((180..=230).contains(&size), "item {id} has {size} bytes");
        }
    }

    #[test]
    fn lookup_keys_stay_in_range() {
        let keys = lookup_keys(10, 1000);
        assert!(keys.iter().all(|key| (1..=10).contains(key)));
    }

    #[test]
    fn chinook_queries_are_split_by_marker() {
        let text = "-- header\n-- query: a\nSELECT 1;\n\n-- query: b\nSELECT 2;\n";
        let queries = chinook_queries(text);
        assert_eq!(queries.len(), 2);
        assert_eq!(queries[0].0, "a");
        assert!(queries[1].1.contains("SELECT 2"));
    }
}
