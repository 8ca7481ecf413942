//! Markdown output: tables, number formatting and the list of targets.

use std::fmt::Write as _;

/// A Markdown table. By default the first column is left-aligned and the
/// others right-aligned, because they hold numbers.
pub struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
    all_left: bool,
}

impl Table {
    /// Creates a table with the given column headers.
    pub fn new(headers: &[&str]) -> Self {
        Self {
            headers: headers.iter().map(|h| (*h).to_owned()).collect(),
            rows: Vec::new(),
            all_left: false,
        }
    }

    /// Left-aligns every column, for tables of text.
    pub fn left_aligned(mut self) -> Self {
        self.all_left = true;
        self
    }

    /// Appends a row; missing cells are left empty.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// Renders the table as GitHub-flavoured Markdown.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let escape = |cell: &str| cell.replace('|', "\\|");
        out.push('|');
        for header in &self.headers {
            let _ = write!(out, " {} |", escape(header));
        }
        out.push_str("\n|");
        for index in 0..self.headers.len() {
            out.push_str(if index == 0 || self.all_left {
                "---|"
            } else {
                "---:|"
            });
        }
        out.push('\n');
        for row in &self.rows {
            out.push('|');
            for index in 0..self.headers.len() {
                let cell = row.get(index).map_or("", String::as_str);
                let _ = write!(out, " {} |", escape(cell));
            }
            out.push('\n');
        }
        out
    }
}

/// "Median of N repetitions." or "One repetition." for `count`.
pub fn repetitions(count: usize) -> String {
    if count == 1 {
        "One repetition.".to_owned()
    } else {
        format!("Median of {count} repetitions.")
    }
}

/// Formats an integer with a comma every three digits: 1,234,567.
pub fn thousands(value: u64) -> String {
    let digits = value.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// Formats a rate (per second) rounded to an integer with separators.
pub fn rate(value: f64) -> String {
    if value.is_finite() && value >= 0.0 {
        thousands(value.round() as u64)
    } else {
        "n/a".to_owned()
    }
}

/// Formats seconds with three significant digits and a unit that fits.
pub fn seconds(value: f64) -> String {
    if !value.is_finite() {
        return "n/a".to_owned();
    }
    if value >= 1.0 {
        format!("{value:.2} s")
    } else if value >= 1e-3 {
        format!("{:.1} ms", value * 1e3)
    } else {
        format!("{:.1} µs", value * 1e6)
    }
}

/// Formats a ratio as `0.42x`.
pub fn ratio(value: f64) -> String {
    if value.is_finite() {
        format!("{value:.2}x")
    } else {
        "n/a".to_owned()
    }
}

/// Formats bytes per second as MB/s (10^6 bytes).
pub fn megabytes_per_second(bytes_per_second: f64) -> String {
    format!("{:.0}", bytes_per_second / 1e6)
}

/// Formats a size in bytes as `64 B`, `4 KiB` or `64 KiB`.
pub fn size(bytes: usize) -> String {
    if bytes >= 1024 && bytes.is_multiple_of(1024) {
        format!("{} KiB", bytes / 1024)
    } else {
        format!("{bytes} B")
    }
}

/// One performance target and what this run measured for it.
pub struct Target {
    /// Name of the measured quantity, such as "lookup by primary key".
    pub name: String,
    /// The requirement in words, such as "≥ 0.7x plaintext".
    pub required: String,
    /// The measured value, formatted.
    pub measured: String,
    /// Measured value divided by the required one: 1 or more meets it.
    pub attainment: f64,
    /// The `persist-bench profile` case that shows where the time goes.
    pub profile_case: &'static str,
}

impl Target {
    /// Returns whether the measured value meets the requirement.
    pub fn met(&self) -> bool {
        self.attainment >= 1.0
    }
}

/// Renders the targets table.
pub fn targets_table(targets: &[Target]) -> String {
    let mut table = Table::new(&["target", "required", "measured", "result"]).left_aligned();
    for target in targets {
        let result = if target.met() {
            "met".to_owned()
        } else {
            format!(
                "missed: at {:.1}% of the target, needs {:.2}x more",
                target.attainment * 100.0,
                1.0 / target.attainment
            )
        };
        table.row(vec![
            target.name.clone(),
            target.required.clone(),
            target.measured.clone(),
            result,
        ]);
    }
    table.render()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }

    #[test]
    fn table_renders_alignment_and_escapes() {
        let mut table = Table::new(&["case", "rows/s"]);
        table.row(vec!["a|b".into(), "1".into()]);
        assert_eq!(
            table.render(),
            "| case | rows/s |\n|---|---:|\n| a\\|b | 1 |\n"
        );
    }
}
