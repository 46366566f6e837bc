//! Training progress for people: indicatif's bar when stderr is a terminal, and
//! otherwise (a file, a pipe, a CI log) a plain log line every tenth of the run
//! or every minute, whichever comes first. A bar redrawn with carriage returns
//! is unreadable in a file, and indicatif draws nothing at all off a terminal,
//! which leaves a long run silent.
//!
//! [`Progress`] has the methods of `indicatif::ProgressBar` the training loop
//! calls, so the loop does not care which one it drives. A plain line is
//! written when the message of a due step is set ([`Progress::set_message`]),
//! so it carries that step's numbers.

use std::borrow::Cow;
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tracing::info;

/// Plain lines per run, at most (plus one per [`MAX_SILENCE`]).
const LINES_PER_RUN: u64 = 10;
/// Longest time without a plain line while steps complete.
pub const MAX_SILENCE: Duration = Duration::from_secs(60);

/// A progress display: a bar or plain periodic lines.
#[derive(Debug)]
pub struct Progress(Mode);

#[derive(Debug)]
enum Mode {
    Bar(ProgressBar),
    Lines(Mutex<Lines>),
}

/// State of the plain-line display.
#[derive(Debug)]
struct Lines {
    len: u64,
    start: u64,
    pos: u64,
    every: u64,
    started: Instant,
    last_pos: u64,
    last_time: Instant,
}

impl Progress {
    /// A bar from `pos` to `len` if stderr is a terminal, plain lines otherwise.
    pub fn new(len: u64, pos: u64) -> Self {
        if std::io::stderr().is_terminal() {
            Self::bar(len, pos)
        } else {
            Self::lines(len, pos)
        }
    }

    /// indicatif's bar on stderr.
    pub fn bar(len: u64, pos: u64) -> Self {
        let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.set_position(pos);
        Progress(Mode::Bar(bar))
    }

    /// Plain `tracing` lines.
    pub fn lines(len: u64, pos: u64) -> Self {
        Progress(Mode::Lines(Mutex::new(Lines::new(
            len,
            pos,
            Instant::now(),
        ))))
    }

    /// Moves to step `pos`.
    pub fn set_position(&self, pos: u64) {
        match &self.0 {
            Mode::Bar(b) => b.set_position(pos),
            Mode::Lines(l) => {
                if let Ok(mut l) = l.lock() {
                    l.pos = pos;
                }
            }
        }
    }

    /// Sets the text after the bar (loss, speed); with plain lines, writes a
    /// line with it when one is due.
    pub fn set_message(&self, msg: impl Into<Cow<'static, str>>) {
        match &self.0 {
            Mode::Bar(b) => b.set_message(msg),
            Mode::Lines(l) => {
                let line = l
                    .lock()
                    .ok()
                    .and_then(|mut l| l.line_if_due(&msg.into(), Instant::now()));
                if let Some(line) = line {
                    info!("{line}");
                }
            }
        }
    }

    /// Runs `f` with the bar hidden, so a log line written by `f` is not torn.
    pub fn suspend<F: FnOnce() -> R, R>(&self, f: F) -> R {
        match &self.0 {
            Mode::Bar(b) => b.suspend(f),
            Mode::Lines(_) => f(),
        }
    }

    /// Stops, leaving the bar as it is (after an error).
    pub fn abandon(&self) {
        if let Mode::Bar(b) = &self.0 {
            b.abandon();
        }
    }

    /// Stops and removes the bar.
    pub fn finish_and_clear(&self) {
        if let Mode::Bar(b) = &self.0 {
            b.finish_and_clear();
        }
    }
}

impl Lines {
    fn new(len: u64, pos: u64, now: Instant) -> Self {
        Lines {
            len,
            start: pos,
            pos,
            every: len.saturating_sub(pos).div_ceil(LINES_PER_RUN).max(1),
            started: now,
            last_pos: pos,
            last_time: now,
        }
    }

    /// The line for the current step if one is due: the last step, a tenth
    /// of the run since the last line, or [`MAX_SILENCE`] since it.
    fn line_if_due(&mut self, msg: &str, now: Instant) -> Option<String> {
        if self.pos <= self.last_pos {
            return None;
        }
        let due = self.pos >= self.len
            || self.pos - self.last_pos >= self.every
            || now.duration_since(self.last_time) >= MAX_SILENCE;
        if !due {
            return None;
        }
        self.last_pos = self.pos;
        self.last_time = now;
        let elapsed = now.duration_since(self.started);
        let done = (self.pos - self.start) as f64;
        let left = self.len.saturating_sub(self.pos) as f64;
        let eta = Duration::from_secs_f64(elapsed.as_secs_f64() / done.max(1.0) * left);
        let pct = 100.0 * self.pos as f64 / self.len.max(1) as f64;
        Some(format!(
            "step {}/{} ({pct:.0}%) {msg}  elapsed {} eta {}",
            self.pos,
            self.len,
            clock(elapsed),
            clock(eta)
        ))
    }
}

/// `h:mm:ss`.
fn clock(d: Duration) -> String {
    let s = d.as_secs();
    format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Steps at which a line is written when each step takes `step_secs`.
    fn lines_at(len: u64, start: u64, step_secs: u64) -> Vec<u64> {
        let t0 = Instant::now();
        let mut l = Lines::new(len, start, t0);
        let mut at = Vec::new();
        for pos in start + 1..=len {
            l.pos = pos;
            let now = t0 + Duration::from_secs(step_secs * (pos - start));
            if l.line_if_due("loss 1.0", now).is_some() {
                at.push(pos);
            }
        }
        at
    }

    #[test]
    fn a_line_every_tenth_of_the_run_and_at_the_end() {
        assert_eq!(
            lines_at(100, 0, 0),
            [10, 20, 30, 40, 50, 60, 70, 80, 90, 100]
        );
        // A resumed run counts its tenths from where it resumed.
        assert_eq!(lines_at(25, 20, 0), [21, 22, 23, 24, 25]);
        assert_eq!(lines_at(3, 0, 0), [1, 2, 3]);
    }

    #[test]
    fn slow_steps_give_a_line_at_least_every_minute() {
        // 1000 steps of 20 s: a tenth is 100 steps (33 min); a line every 3 steps.
        let at = lines_at(1000, 0, 20);
        assert_eq!(&at[..3], [3, 6, 9]);
        assert_eq!(at.last(), Some(&1000));
    }

    #[test]
    fn the_line_says_where_the_run_is() {
        let t0 = Instant::now();
        let mut l = Lines::new(200, 0, t0);
        l.pos = 20;
        let line = l
            .line_if_due("loss 2.5000  900 tok/s", t0 + Duration::from_secs(30))
            .unwrap();
        assert_eq!(
            line,
            "step 20/200 (10%) loss 2.5000  900 tok/s  elapsed 0:00:30 eta 0:04:30"
        );
        // The same step again writes nothing.
        assert!(l.line_if_due("x", t0 + Duration::from_secs(500)).is_none());
    }
}
