//! The schema of an encrypted table, parsed from `CREATE VIRTUAL TABLE ... USING
//! persist(...)` arguments.
//!
//! The arguments are column definitions and at most one table-level
//! `PRIMARY KEY (...)`, in SQLite's own syntax. Supported constraints are
//! `PRIMARY KEY` (single or composite), `NOT NULL` and `NULL`; anything else
//! (UNIQUE, CHECK, DEFAULT, COLLATE, REFERENCES, generated columns) is
//! rejected with an error, because SQLite does not enforce these on virtual
//! tables and a silently ignored constraint would mislead.

use crate::affinity::Affinity;
use crate::error::ExtError;

/// Name of the hidden column that gives a row of a table without a primary
/// key its identity.
pub const ROW_KEY_COLUMN: &str = "_persist_row_key";

/// One column.
#[derive(Clone, Debug, PartialEq)]
pub struct Column {
    /// The column name as declared.
    pub name: String,
    /// The declared type, possibly empty.
    pub declared_type: String,
    /// The type affinity derived from the declared type.
    pub affinity: Affinity,
    /// Whether NULL is rejected.
    pub not_null: bool,
}

/// The schema of one encrypted table.
#[derive(Clone, Debug, PartialEq)]
pub struct Schema {
    /// The columns in declaration order.
    pub columns: Vec<Column>,
    /// Indexes into `columns` of the primary key, in key order; empty for a
    /// table without a primary key.
    pub primary_key: Vec<usize>,
}

impl Schema {
    /// Parses the module arguments.
    ///
    /// # Errors
    ///
    /// [`ExtError::Usage`] naming the argument and what is not supported.
    pub fn parse(table: &str, args: &[String]) -> Result<Self, ExtError> {
        let mut columns: Vec<Column> = Vec::new();
        let mut column_key: Option<usize> = None;
        let mut table_key: Option<Vec<String>> = None;

        for arg in args {
            let tokens = tokenize(arg).map_err(|reason| {
                ExtError::usage(format!(
                    "persist table {table}: cannot parse {arg:?}: {reason}"
                ))
            })?;
            let Some(first) = tokens.first() else {
                return Err(ExtError::usage(format!(
                    "persist table {table}: empty column definition"
                )));
            };
            let error = |reason: String| {
                ExtError::usage(format!("persist table {table}: {reason} in {arg:?}"))
            };
            let fail = |reason: String| Err(error(reason));

            let mut rest = &tokens[..];
            if first.is_keyword("CONSTRAINT") {
                rest = rest.get(2..).unwrap_or(&[]);
            }
            match rest.first() {
                Some(token) if token.is_keyword("PRIMARY") => {
                    if table_key.is_some() {
                        return fail("more than one table-level PRIMARY KEY".into());
                    }
                    table_key = Some(parse_key_list(rest).map_err(error)?);
                    continue;
                }
                Some(token)
                    if ["UNIQUE", "CHECK", "FOREIGN"]
                        .iter()
                        .any(|k| token.is_keyword(k)) =>
                {
                    return fail(format!(
                        "{} table constraints are not supported by persist tables",
                        token.text.to_uppercase()
                    ));
                }
                _ => {}
            }

            let (column, is_key) = parse_column(&tokens).map_err(error)?;
            if column.name.eq_ignore_ascii_case(ROW_KEY_COLUMN) {
                return fail(format!("the column name {ROW_KEY_COLUMN} is reserved"));
            }
            if columns
                .iter()
                .any(|known| known.name.eq_ignore_ascii_case(&column.name))
            {
                return fail(format!("duplicate column name {}", column.name));
            }
            if is_key {
                if column_key.is_some() {
                    return fail("more than one column is declared PRIMARY KEY".into());
                }
                column_key = Some(columns.len());
            }
            columns.push(column);
        }

        if columns.is_empty() {
            return Err(ExtError::usage(format!(
                "persist table {table}: no columns; declare them as in CREATE TABLE, \
                 for example USING persist(id INTEGER PRIMARY KEY, body TEXT)"
            )));
        }
        if columns.len() > persist_core::codec::MAX_COLUMNS {
            return Err(ExtError::usage(format!(
                "persist table {table}: {} columns, over the limit of {}",
                columns.len(),
                persist_core::codec::MAX_COLUMNS
            )));
        }

        let primary_key = match (column_key, table_key) {
            (Some(_), Some(_)) => {
                return Err(ExtError::usage(format!(
                    "persist table {table}: a column PRIMARY KEY and a table PRIMARY KEY \
                     are both declared"
                )));
            }
            (Some(index), None) => vec![index],
            (None, Some(names)) => names
                .iter()
                .map(|name| {
                    columns
                        .iter()
                        .position(|column| column.name.eq_ignore_ascii_case(name))
                        .ok_or_else(|| {
                            ExtError::usage(format!(
                                "persist table {table}: PRIMARY KEY names unknown column {name}"
                            ))
                        })
                })
                .collect::<Result<Vec<_>, _>>()?,
            (None, None) => Vec::new(),
        };
        let mut seen = primary_key.clone();
        seen.sort_unstable();
        seen.dedup();
        if seen.len() != primary_key.len() {
            return Err(ExtError::usage(format!(
                "persist table {table}: PRIMARY KEY names a column twice"
            )));
        }

        Ok(Self {
            columns,
            primary_key,
        })
    }

    /// The CREATE TABLE statement declared to SQLite for this schema.
    pub fn declaration(&self) -> String {
        let columns: Vec<String> = self
            .columns
            .iter()
            .map(|column| {
                let name = crate::db::quote_identifier(&column.name);
                if column.declared_type.is_empty() {
                    name
                } else {
                    format!("{name} {}", column.declared_type)
                }
            })
            .collect();
        format!("CREATE TABLE x({})", columns.join(", "))
    }

    /// Tells whether the table's key is a single INTEGER column, which gets
    /// the next free value when NULL is inserted, as an INTEGER PRIMARY KEY
    /// does in an ordinary table.
    pub fn has_integer_key(&self) -> bool {
        match self.primary_key.as_slice() {
            [index] => self.columns[*index]
                .declared_type
                .eq_ignore_ascii_case("INTEGER"),
            _ => false,
        }
    }

    /// The index of column `name`, if the table has it.
    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|column| column.name == name)
    }
}

fn parse_column(tokens: &[Token]) -> Result<(Column, bool), String> {
    let name = tokens[0]
        .identifier()
        .ok_or_else(|| format!("expected a column name, found {:?}", tokens[0].text))?;
    if name.len() > persist_core::codec::MAX_NAME_LEN {
        return Err(format!(
            "column name of {} bytes is over the limit of {} bytes",
            name.len(),
            persist_core::codec::MAX_NAME_LEN
        ));
    }

    let mut index = 1;
    let mut type_parts: Vec<&str> = Vec::new();
    while let Some(token) = tokens.get(index) {
        if token.is_constraint_start() {
            break;
        }
        match token.kind {
            TokenKind::Word | TokenKind::Group => type_parts.push(&token.text),
            _ => return Err(format!("unexpected {:?} in the type name", token.text)),
        }
        index += 1;
    }
    let declared_type = join_type(&type_parts);

    let mut not_null = false;
    let mut is_key = false;
    while let Some(token) = tokens.get(index) {
        index += 1;
        if token.is_keyword("CONSTRAINT") {
            index += 1;
        } else if token.is_keyword("PRIMARY") {
            if !tokens.get(index).is_some_and(|t| t.is_keyword("KEY")) {
                return Err("expected KEY after PRIMARY".into());
            }
            index += 1;
            while tokens
                .get(index)
                .is_some_and(|t| t.is_keyword("ASC") || t.is_keyword("DESC"))
            {
                index += 1;
            }
            if tokens
                .get(index)
                .is_some_and(|t| t.is_keyword("AUTOINCREMENT"))
            {
                return Err("AUTOINCREMENT is not supported by persist tables".into());
            }
            is_key = true;
        } else if token.is_keyword("NOT") {
            if !tokens.get(index).is_some_and(|t| t.is_keyword("NULL")) {
                return Err("expected NULL after NOT".into());
            }
            index += 1;
            not_null = true;
        } else if token.is_keyword("NULL") {
            // An explicit NULL constraint allows NULL, which is the default.
        } else if token.is_keyword("ON") {
            return Err(
                "ON CONFLICT clauses in the table definition are not supported; \
                 use INSERT OR REPLACE, OR IGNORE and so on in the statement"
                    .into(),
            );
        } else {
            return Err(format!(
                "{} is not supported by persist tables; only PRIMARY KEY, NOT NULL \
                 and NULL are",
                token.text.to_uppercase()
            ));
        }
    }

    Ok((
        Column {
            affinity: Affinity::from_declared_type(&declared_type),
            name,
            declared_type,
            not_null,
        },
        is_key,
    ))
}

/// Parses `PRIMARY KEY (a, b DESC, ...)`.
fn parse_key_list(tokens: &[Token]) -> Result<Vec<String>, String> {
    let group = match tokens {
        [primary, key, group, ..]
            if primary.is_keyword("PRIMARY")
                && key.is_keyword("KEY")
                && group.kind == TokenKind::Group =>
        {
            group
        }
        _ => return Err("expected PRIMARY KEY (column, ...)".into()),
    };
    if tokens.len() > 3 {
        return Err(format!(
            "unexpected {:?} after the PRIMARY KEY column list",
            tokens[3].text
        ));
    }
    let inner = &group.text[1..group.text.len() - 1];
    let mut names = Vec::new();
    for part in split_top_level(inner) {
        let part_tokens = tokenize(&part)?;
        let Some(first) = part_tokens.first() else {
            return Err("empty name in the PRIMARY KEY column list".into());
        };
        let name = first
            .identifier()
            .ok_or_else(|| format!("expected a column name, found {:?}", first.text))?;
        for extra in &part_tokens[1..] {
            if !(extra.is_keyword("ASC") || extra.is_keyword("DESC")) {
                return Err(format!(
                    "{:?} is not supported in a PRIMARY KEY column list",
                    extra.text
                ));
            }
        }
        names.push(name);
    }
    if names.is_empty() {
        return Err("the PRIMARY KEY column list is empty".into());
    }
    Ok(names)
}

fn join_type(parts: &[&str]) -> String {
    let mut out = String::new();
    for part in parts {
        if !out.is_empty() && !part.starts_with('(') {
            out.push(' ');
        }
        out.push_str(part);
    }
    out
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TokenKind {
    Word,
    Quoted,
    Group,
    StringLiteral,
    Punct,
}

#[derive(Clone, Debug)]
struct Token {
    kind: TokenKind,
    text: String,
}

impl Token {
    fn is_keyword(&self, keyword: &str) -> bool {
        self.kind == TokenKind::Word && self.text.eq_ignore_ascii_case(keyword)
    }

    fn is_constraint_start(&self) -> bool {
        [
            "CONSTRAINT",
            "PRIMARY",
            "NOT",
            "NULL",
            "UNIQUE",
            "CHECK",
            "DEFAULT",
            "COLLATE",
            "REFERENCES",
            "GENERATED",
            "AS",
            "ON",
        ]
        .iter()
        .any(|keyword| self.is_keyword(keyword))
    }

    /// The identifier this token names, with quotes removed.
    fn identifier(&self) -> Option<String> {
        match self.kind {
            TokenKind::Word => Some(self.text.clone()),
            TokenKind::Quoted => {
                let quote = self.text.chars().next()?;
                let inner = &self.text[1..self.text.len() - 1];
                Some(match quote {
                    '"' => inner.replace("\"\"", "\""),
                    '`' => inner.replace("``", "`"),
                    _ => inner.to_owned(),
                })
            }
            _ => None,
        }
    }
}

fn tokenize(text: &str) -> Result<Vec<Token>, String> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let start = i;
        let kind = match c {
            '"' | '`' | '[' | '\'' => {
                let close = if c == '[' { ']' } else { c };
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return Err(format!("unterminated {c}")),
                        Some(&next) if next == close => {
                            // A doubled quote inside a quoted name is an
                            // escaped quote; brackets have no escape.
                            if close != ']' && chars.get(i + 1) == Some(&close) {
                                i += 2;
                            } else {
                                i += 1;
                                break;
                            }
                        }
                        Some(_) => i += 1,
                    }
                }
                if c == '\'' {
                    TokenKind::StringLiteral
                } else {
                    TokenKind::Quoted
                }
            }
            '(' => {
                let mut depth = 0usize;
                loop {
                    match chars.get(i) {
                        None => return Err("unbalanced parentheses".into()),
                        Some('(') => depth += 1,
                        Some(')') => {
                            depth -= 1;
                            if depth == 0 {
                                i += 1;
                                break;
                            }
                        }
                        Some(_) => {}
                    }
                    i += 1;
                }
                TokenKind::Group
            }
            c if c.is_alphanumeric()
                || c == '_'
                || c == '$'
                || c == '+'
                || c == '-'
                || c == '.' =>
            {
                while chars.get(i).is_some_and(|c| {
                    c.is_alphanumeric() || matches!(c, '_' | '$' | '+' | '-' | '.')
                }) {
                    i += 1;
                }
                TokenKind::Word
            }
            _ => {
                i += 1;
                TokenKind::Punct
            }
        };
        tokens.push(Token {
            kind,
            text: chars[start..i].iter().collect(),
        });
    }
    Ok(tokens)
}

/// Splits on commas that are outside parentheses and quotes.
fn split_top_level(text: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut depth = 0usize;
    let mut quote: Option<char> = None;
    let mut current = String::new();
    for c in text.chars() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None => match c {
                '"' | '\'' | '`' => quote = Some(c),
                '[' => quote = Some(']'),
                '(' => depth += 1,
                ')' => depth = depth.saturating_sub(1),
                ',' if depth == 0 => {
                    parts.push(std::mem::take(&mut current));
                    continue;
                }
                _ => {}
            },
        }
        current.push(c);
    }
    parts.push(current);
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Schema, ExtError> {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        Schema::parse("t", &args)
    }

    #[test]
    fn column_primary_key() {
        let schema = parse(&["id INTEGER PRIMARY KEY", "title TEXT NOT NULL", "body"]).unwrap();
        assert_eq!(schema.primary_key, vec![0]);
        assert!(schema.columns[1].not_null);
        assert_eq!(schema.columns[2].declared_type, "");
        assert_eq!(schema.columns[2].affinity, Affinity::Blob);
        assert!(schema.has_integer_key());
        assert_eq!(
            schema.declaration(),
            "CREATE TABLE x(\"id\" INTEGER, \"title\" TEXT, \"body\")"
        );
    }

    #[test]
    fn table_primary_key_and_quoted_names() {
        let schema = parse(&[
            "\"play list\" INTEGER",
            "[track] INTEGER",
            "price NUMERIC(10, 2)",
            "PRIMARY KEY (\"play list\", track DESC)",
        ])
        .unwrap();
        assert_eq!(schema.primary_key, vec![0, 1]);
        assert_eq!(schema.columns[0].name, "play list");
        assert_eq!(schema.columns[2].declared_type, "NUMERIC(10, 2)");
        assert_eq!(schema.columns[2].affinity, Affinity::Numeric);
        assert!(!schema.has_integer_key());
    }

    #[test]
    fn no_primary_key() {
        let schema = parse(&["a TEXT", "b BLOB"]).unwrap();
        assert!(schema.primary_key.is_empty());
    }

    #[test]
    fn unsupported_constraints_are_rejected() {
        for (args, expected) in [
            (vec!["a TEXT UNIQUE"], "UNIQUE is not supported"),
            (vec!["a TEXT DEFAULT 'x'"], "DEFAULT is not supported"),
            (vec!["a TEXT COLLATE NOCASE"], "COLLATE is not supported"),
            (
                vec!["a INTEGER REFERENCES b(id)"],
                "REFERENCES is not supported",
            ),
            (vec!["a INTEGER CHECK (a > 0)"], "CHECK is not supported"),
            (vec!["a INTEGER PRIMARY KEY AUTOINCREMENT"], "AUTOINCREMENT"),
            (vec!["a", "UNIQUE (a)"], "UNIQUE table constraints"),
            (vec!["a", "a"], "duplicate column name"),
            (
                vec!["a PRIMARY KEY", "b PRIMARY KEY"],
                "more than one column",
            ),
            (
                vec!["a PRIMARY KEY", "PRIMARY KEY (a)"],
                "are both declared",
            ),
            (vec!["a", "PRIMARY KEY (b)"], "unknown column b"),
            (vec!["a", "PRIMARY KEY (a, a)"], "names a column twice"),
            (vec!["_persist_row_key"], "reserved"),
            (vec![], "no columns"),
        ] {
            let err = parse(&args).unwrap_err().to_string();
            assert!(err.contains(expected), "{args:?}: {err}");
        }
    }
}
