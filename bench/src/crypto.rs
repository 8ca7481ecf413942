//! Envelope seal and open rates next to `openssl speed` for AES-256-GCM.
//!
//! Both sides are rated per second of CPU time, because this is how
//! `openssl speed` divides by default (user CPU time), and CPU time is less
//! disturbed than wall-clock time by other processes on the machine. The
//! Persist side counts user plus system time, so the `getrandom` system call
//! for each nonce is included.

use std::collections::HashMap;
use std::hint::black_box;
use std::process::Command;

use persist_core::{Cipher, Keyring, Location, Padding, Purpose};

use crate::Ctx;
use crate::error::{BenchError, Context, Result};
use crate::measure::{median, process_cpu_seconds};
use crate::report::{self, Table, Target};
use crate::sqlite::Section;

/// The timed crypto operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Operation {
    /// Cipher::seal, or openssl speed's encryption.
    Seal,
    /// Cipher::open, or openssl speed -decrypt.
    Open,
}

/// The `openssl speed` loop compared with Persist.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum OpensslMode {
    /// `openssl speed -evp aes-256-gcm`: one long stream of updates on one
    /// context, with no per-message IV, AAD or tag.
    Stream,
    /// `openssl speed -aead -evp aes-256-gcm`: per message a new IV, 13 bytes
    /// of AAD, the update and the tag, as TLS records do.
    Aead,
}

/// A 16-byte record id, as the extension passes for a row.
const RECORD_ID: [u8; 16] = *b"bench record id.";

fn location() -> Location<'static> {
    Location {
        purpose: Purpose::Row,
        table: "bench",
        record_id: &RECORD_ID,
        context: b"",
    }
}

/// Creates a cipher with a fresh keyring.
///
/// # Errors
///
/// When the operating system provides no randomness.
pub fn new_cipher() -> Result<Cipher> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs());
    Ok(Cipher::new(Keyring::generate(now)?))
}

/// Runs `count` seals (or opens) of a `size`-byte value.
///
/// # Errors
///
/// persist-core's errors; a failed open is an error.
pub fn run_operations(
    cipher: &Cipher,
    operation: Operation,
    size: usize,
    count: u64,
) -> Result<()> {
    let location = location();
    let plaintext = vec![0x5Au8; size];
    match operation {
        Operation::Seal => {
            for _ in 0..count {
                black_box(cipher.seal(&location, black_box(&plaintext), Padding::None)?);
            }
        }
        Operation::Open => {
            let envelope = cipher.seal(&location, &plaintext, Padding::None)?;
            for _ in 0..count {
                black_box(cipher.open(&location, black_box(&envelope))?);
            }
        }
    }
    Ok(())
}

/// Operations per CPU second of `operation` on `size` bytes, running for at
/// least `min_seconds` of CPU time.
fn persist_rate(
    cipher: &Cipher,
    operation: Operation,
    size: usize,
    min_seconds: f64,
) -> Result<f64> {
    let start = process_cpu_seconds();
    let mut count = 0u64;
    let mut batch = 64u64;
    loop {
        run_operations(cipher, operation, size, batch)?;
        count += batch;
        let elapsed = process_cpu_seconds() - start;
        if elapsed >= min_seconds {
            return Ok(count as f64 / elapsed);
        }
        batch = (batch * 2).min(1 << 20);
    }
}

/// Checks that open returns what seal was given, for every size.
fn check_round_trip(cipher: &Cipher, sizes: &[usize]) -> Result<()> {
    let location = location();
    for &size in sizes {
        let plaintext: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
        let envelope = cipher.seal(&location, &plaintext, Padding::None)?;
        let opened = cipher.open(&location, &envelope)?;
        if opened.as_slice() != plaintext.as_slice() {
            return Err(BenchError::new(format!(
                "an envelope of {size} bytes opened to different bytes"
            )));
        }
    }
    Ok(())
}

/// Runs `openssl speed` for one size and returns operations per CPU second.
fn openssl_rate(mode: OpensslMode, operation: Operation, size: usize, seconds: u32) -> Result<f64> {
    let mut command = Command::new("openssl");
    command.args(["speed", "-mr", "-seconds", &seconds.to_string()]);
    command.args(["-bytes", &size.to_string()]);
    if mode == OpensslMode::Aead {
        command.arg("-aead");
    }
    if operation == Operation::Open {
        command.arg("-decrypt");
    }
    command.args(["-evp", "aes-256-gcm"]);
    let output = command
        .output()
        .context("running openssl speed (install the Debian package openssl)")?;
    let text = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        return Err(BenchError::new(format!(
            "openssl speed exited with {}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    let rates = parse_openssl_speed(&text)?;
    let bytes_per_second = rates.get(&size).copied().ok_or_else(|| {
        BenchError::new(format!(
            "openssl speed reported no rate for {size} bytes; it reported sizes {:?}",
            rates.keys().collect::<Vec<_>>()
        ))
    })?;
    Ok(bytes_per_second / size as f64)
}

/// Parses the `-mr` output of `openssl speed`: the `+H:` line lists the
/// buffer sizes and the `+F:` line the bytes per second for each.
fn parse_openssl_speed(text: &str) -> Result<HashMap<usize, f64>> {
    let mut sizes: Vec<usize> = Vec::new();
    let mut rates = HashMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("+H:") {
            sizes = rest
                .split(':')
                .filter_map(|field| field.trim().parse().ok())
                .collect();
        } else if let Some(rest) = line.strip_prefix("+F:") {
            // +F:<index>:<algorithm>:<bytes/s for each size>...
            let values: Vec<f64> = rest
                .split(':')
                .skip(2)
                .filter_map(|field| field.trim().parse().ok())
                .collect();
            for (size, value) in sizes.iter().zip(values) {
                rates.insert(*size, value);
            }
        }
    }
    if rates.is_empty() {
        return Err(BenchError::new(format!(
            "cannot parse the output of openssl speed -mr: {}",
            text.chars().take(300).collect::<String>()
        )));
    }
    Ok(rates)
}

/// The version line of the openssl command.
pub fn openssl_version() -> String {
    Command::new("openssl")
        .arg("version")
        .output()
        .ok()
        .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_owned())
        .filter(|version| !version.is_empty())
        .unwrap_or_else(|| "not installed".to_owned())
}

type Key = (Operation, usize);

/// Runs the crypto benchmarks.
///
/// # Errors
///
/// persist-core's errors and a missing or failing openssl.
pub fn run(ctx: &Ctx) -> Result<Section> {
    let sizes = &ctx.sizes;
    let cipher = new_cipher()?;
    check_round_trip(&cipher, &sizes.crypto_sizes)?;

    let mut persist: HashMap<Key, Vec<f64>> = HashMap::new();
    let mut openssl: HashMap<(OpensslMode, Operation, usize), Vec<f64>> = HashMap::new();
    let operations = [Operation::Seal, Operation::Open];
    for _ in 0..sizes.repetitions {
        for &size in &sizes.crypto_sizes {
            for operation in operations {
                let rate = persist_rate(&cipher, operation, size, sizes.crypto_seconds)?;
                persist.entry((operation, size)).or_default().push(rate);
                if !sizes.openssl_sizes.contains(&size) {
                    continue;
                }
                for mode in [OpensslMode::Stream, OpensslMode::Aead] {
                    let rate = openssl_rate(mode, operation, size, sizes.openssl_seconds)?;
                    openssl
                        .entry((mode, operation, size))
                        .or_default()
                        .push(rate);
                }
            }
        }
    }

    let mut markdown = format!(
        "## Crypto\n\n`persist_core::Cipher` with `Padding::None` and `Purpose::Row` \
         (16-byte record id, empty context), against `{}`. Each figure is operations \
         per second of CPU time: `openssl speed` divides by user CPU time, Persist by \
         user plus system time of this process (the nonce comes from the `getrandom` \
         system call). `openssl speed -evp aes-256-gcm` encrypts one long stream on one \
         context with no per-message nonce, AAD or tag; `-aead` adds the per-message \
         nonce, 13 bytes of AAD and the tag, which is the work of one envelope. Sizes \
         are given to openssl with `-bytes`, so both sides use the same sizes. \
         Persist runs at least {:.2} s of CPU time per figure, openssl {} s. \
         {}\n\n",
        openssl_version(),
        sizes.crypto_seconds,
        sizes.openssl_seconds,
        report::repetitions(sizes.repetitions)
    );
    let mut targets = Vec::new();
    for operation in operations {
        let (title, verb, flag) = match operation {
            Operation::Seal => ("Seal (encrypt)", "seal", ""),
            Operation::Open => ("Open (decrypt)", "open", " -decrypt"),
        };
        markdown.push_str(&format!("### {title}\n\n"));
        let mut table = Table::new(&[
            "size",
            &format!("Persist {verb}/s"),
            "Persist MB/s",
            &format!("openssl speed{flag} /s"),
            &format!("openssl speed -aead{flag} /s"),
            "Persist vs openssl",
            "Persist vs openssl -aead",
        ]);
        for &size in &sizes.crypto_sizes {
            let ours = median(&persist[&(operation, size)]);
            let stream = openssl
                .get(&(OpensslMode::Stream, operation, size))
                .map(|rates| median(rates));
            let aead = openssl
                .get(&(OpensslMode::Aead, operation, size))
                .map(|rates| median(rates));
            let cell = |rate: Option<f64>| rate.map_or("not run".to_owned(), report::rate);
            let versus = |rate: Option<f64>| {
                rate.map_or("not run".to_owned(), |rate| report::ratio(ours / rate))
            };
            table.row(vec![
                report::size(size),
                report::rate(ours),
                report::megabytes_per_second(ours * size as f64),
                cell(stream),
                cell(aead),
                versus(stream),
                versus(aead),
            ]);
            if size == 256
                && let Some(stream) = stream
            {
                let versus = ours / stream;
                targets.push(Target {
                    name: format!("{verb} 256 B: Persist vs openssl speed{flag} -evp aes-256-gcm"),
                    required: "within 2x (≥ 0.5x)".to_owned(),
                    measured: format!(
                        "{} ({}/s vs {}/s)",
                        report::ratio(versus),
                        report::rate(ours),
                        report::rate(stream)
                    ),
                    attainment: versus / 0.5,
                    profile_case: match operation {
                        Operation::Seal => "seal",
                        Operation::Open => "open",
                    },
                });
            }
        }
        markdown.push_str(&table.render());
        markdown.push('\n');
    }
    Ok(Section { markdown, targets })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_machine_readable_speed_output() {
        let text = "+DT:AES-256-GCM:1:256\n+R:1750339:AES-256-GCM:0.590000\n\
                    +H:256\n+F:25:AES-256-GCM:759469125.42\n";
        let rates = parse_openssl_speed(text).unwrap_or_default();
        assert_eq!(rates.get(&256).copied(), Some(759_469_125.42));
    }

    #[test]
    fn parses_several_sizes() {
        let text = "+H:16:64:256\n+F:25:AES-256-GCM:1.0:2.0:3.0\n";
        let rates = parse_openssl_speed(text).unwrap_or_default();
        assert_eq!(rates.len(), 3);
        assert_eq!(rates.get(&64).copied(), Some(2.0));
    }

    #[test]
    fn rejects_output_without_rates() {
        assert!(parse_openssl_speed("Usage: speed").is_err());
    }
}
