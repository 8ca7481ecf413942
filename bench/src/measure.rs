//! Timing: wall-clock and CPU time of a step, medians and engine order.

use std::time::Instant;

/// Wall-clock and CPU time of one measured step, in seconds.
#[derive(Clone, Copy, Debug, Default)]
pub struct Sample {
    /// Elapsed real time.
    pub wall: f64,
    /// User plus system CPU time of this process.
    pub cpu: f64,
}

/// User plus system CPU time consumed by this process so far, in seconds.
pub fn process_cpu_seconds() -> f64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes a complete rusage into the buffer it is given,
    // which is valid and large enough; RUSAGE_SELF is always a valid target.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) };
    if rc != 0 {
        return 0.0;
    }
    // SAFETY: getrusage returned 0, so it initialized the struct.
    let usage = unsafe { usage.assume_init() };
    let seconds = |time: libc::timeval| time.tv_sec as f64 + time.tv_usec as f64 / 1e6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

/// A running measurement of wall-clock and CPU time.
pub struct Stopwatch {
    wall: Instant,
    cpu: f64,
}

impl Stopwatch {
    /// Starts measuring.
    pub fn start() -> Self {
        Self {
            wall: Instant::now(),
            cpu: process_cpu_seconds(),
        }
    }

    /// Returns the time since the start.
    pub fn stop(&self) -> Sample {
        Sample {
            wall: self.wall.elapsed().as_secs_f64(),
            cpu: process_cpu_seconds() - self.cpu,
        }
    }
}

/// Runs `body` and returns its result with the time it took.
pub fn timed<T>(body: impl FnOnce() -> T) -> (T, Sample) {
    let watch = Stopwatch::start();
    let value = body();
    (value, watch.stop())
}

/// Returns the median of `values`: the mean of the two middle values for an
/// even count, and 0 for none.
pub fn median(values: &[f64]) -> f64 {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    if sorted.is_empty() {
        return 0.0;
    }
    sorted.sort_by(f64::total_cmp);
    let middle = sorted.len() / 2;
    if sorted.len() % 2 == 1 {
        sorted[middle]
    } else {
        (sorted[middle - 1] + sorted[middle]) / 2.0
    }
}

/// Medians of the wall-clock and CPU times of `samples`.
pub fn median_sample(samples: &[Sample]) -> Sample {
    let walls: Vec<f64> = samples.iter().map(|s| s.wall).collect();
    let cpus: Vec<f64> = samples.iter().map(|s| s.cpu).collect();
    Sample {
        wall: median(&walls),
        cpu: median(&cpus),
    }
}

/// `items` rotated left by `repetition`, so that each item runs first in
/// turn and no case always pays for a cold cache or profits from a warm one.
pub fn rotated<T: Copy>(items: &[T], repetition: usize) -> Vec<T> {
    let mut order = items.to_vec();
    if !order.is_empty() {
        let shift = repetition % order.len();
        order.rotate_left(shift);
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median(&[]), 0.0);
    }

    #[test]
    fn rotation_puts_each_item_first() {
        assert_eq!(rotated(&[1, 2, 3], 0), vec![1, 2, 3]);
        assert_eq!(rotated(&[1, 2, 3], 1), vec![2, 3, 1]);
        assert_eq!(rotated(&[1, 2, 3], 5), vec![3, 1, 2]);
    }
}
