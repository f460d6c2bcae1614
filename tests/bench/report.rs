//! The printed report: plain-text tables with figures and targets side by
//! side, and the statistics they hold.
pub struct Report {
    text: String,
}

impl Report {
    pub fn new() -> Report {
        Report {
            text: String::new(),
        }
    }

    pub fn line(&mut self, line: impl AsRef<str>) {
        self.text.push_str(line.as_ref());
        self.text.push('\n');
    }

    /// A table: the first column left-aligned, the others right-aligned.
    pub fn table(&mut self, header: &[&str], rows: &[Vec<String>]) {
        let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
        for row in rows {
            for (i, cell) in row.iter().enumerate() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        let fmt = |cells: Vec<String>| {
            let mut line = String::new();
            for (i, cell) in cells.iter().enumerate() {
                let pad = widths[i] - cell.chars().count();
                if i == 0 {
                    line.push_str(cell);
                    line.push_str(&" ".repeat(pad));
                } else {
                    line.push_str("  ");
                    line.push_str(&" ".repeat(pad));
                    line.push_str(cell);
                }
            }
            line.trim_end().to_string()
        };
        self.line(fmt(header.iter().map(|h| h.to_string()).collect()));
        self.line(
            widths
                .iter()
                .map(|w| "-".repeat(*w))
                .collect::<Vec<_>>()
                .join("  "),
        );
        for row in rows {
            self.line(fmt(row.clone()));
        }
    }

    pub fn text(&self) -> &str {
        &self.text
    }
}

/// The median of the samples (mean of the middle two for an even count).
pub fn median(samples: &[f64]) -> f64 {
    let mut s = samples.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    match s.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => s[n / 2],
        n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}

/// "met" or "missed", for a target beside its figure.
/// The mean of the middle half of `samples` (the lowest and highest
/// quarters left out): robust to a sample the VM's phase change moved, as
/// the median is, and finer than the median when the samples are whole ns
/// (the kernel's figures are): their spread dithers the mean between them.
pub fn middle_mean(samples: &[f64]) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let cut = sorted.len() / 4;
    let middle = &sorted[cut..sorted.len() - cut];
    if middle.is_empty() {
        return f64::NAN;
    }
    middle.iter().sum::<f64>() / middle.len() as f64
}

pub fn verdict(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "MISSED"
    }
}

/// Each sample's own difference, `a[i] - b[i]`, of two series taken side by
/// side (their medians move with the VM's phases, a sample's difference far
/// less).
pub fn differences(a: &[f64], b: &[f64]) -> Vec<f64> {
    a.iter().zip(b).map(|(x, y)| x - y).collect()
}
