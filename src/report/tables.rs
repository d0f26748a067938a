//! Tables a paper can take: the report's questions and configurations (and a sweep's trends)
//! under `tables/`, each as CSV for scripts and as a LaTeX `tabular` (booktabs rules) to
//! `\input` into a paper. Numbers are rounded as report.md rounds them, so the three agree.

use std::path::Path;

use crate::analysis::stats::{show_p, Estimate};
use crate::analysis::summary::Summary;
use crate::analysis::sweep::SweepAnalysis;
use crate::config::ExperimentConfig;
use crate::error::Result;
use crate::util::write_atomic;

/// The folder under a run folder (or a sweep's top folder) that holds the tables.
pub const DIR: &str = "tables";

/// The tables' names: `questions` and `configs` in a group's folder, `trends` in a sweep's.
pub const NAMES: &[&str] = &["questions", "configs", "trends"];

/// Whether `name` (a file in `tables/`) is one of the tables a report writes.
pub fn is_table_file(name: &str) -> bool {
    name.rsplit_once('.').is_some_and(|(stem, ext)| NAMES.contains(&stem) && (ext == "csv" || ext == "tex"))
}

/// One cell: text (escaped for LaTeX), a number already rounded (set in math mode, so its
/// minus sign is a minus), or nothing (empty in CSV, an en dash in LaTeX).
#[derive(Clone, Debug, PartialEq)]
enum Cell {
    Text(String),
    Num(String),
    Missing,
}

impl Cell {
    fn csv(&self) -> String {
        match self {
            Cell::Text(t) | Cell::Num(t) => csv_field(t),
            Cell::Missing => String::new(),
        }
    }

    fn tex(&self) -> String {
        match self {
            Cell::Text(t) => tex_escape(t),
            Cell::Num(n) => format!("${}$", n.replace('<', "<\\,")),
            Cell::Missing => "--".into(),
        }
    }
}

/// A table: CSV column names, LaTeX column heads (already LaTeX) with their alignment, and
/// rows. A LaTeX column may stand for several CSV columns (a mean and its interval).
struct Table {
    csv_head: Vec<&'static str>,
    csv_rows: Vec<Vec<Cell>>,
    tex_head: Vec<(&'static str, char)>,
    tex_rows: Vec<Vec<Cell>>,
}

impl Table {
    fn csv(&self) -> String {
        let mut out = self.csv_head.join(",") + "\n";
        for row in &self.csv_rows {
            out.push_str(&row.iter().map(Cell::csv).collect::<Vec<_>>().join(","));
            out.push('\n');
        }
        out
    }

    /// A booktabs `tabular` (needs `\usepackage{booktabs}`), headed by a comment saying what
    /// made it.
    fn tex(&self, made_by: &str) -> String {
        let spec: String = self.tex_head.iter().map(|(_, a)| *a).collect();
        let mut out =
            format!("% {made_by}\n% Needs \\usepackage{{booktabs}}.\n\\begin{{tabular}}{{{spec}}}\n\\toprule\n");
        out.push_str(&self.tex_head.iter().map(|(h, _)| *h).collect::<Vec<_>>().join(" & "));
        out.push_str(" \\\\\n\\midrule\n");
        for row in &self.tex_rows {
            out.push_str(&row.iter().map(Cell::tex).collect::<Vec<_>>().join(" & "));
            out.push_str(" \\\\\n");
        }
        out.push_str("\\bottomrule\n\\end{tabular}\n");
        out
    }

    fn write(&self, dir: &Path, name: &str, made_by: &str) -> Result<()> {
        write_atomic(&dir.join(format!("{name}.csv")), self.csv().as_bytes())?;
        write_atomic(&dir.join(format!("{name}.tex")), self.tex(made_by).as_bytes())
    }
}

/// A CSV field, quoted when it holds a comma, a quote or a line break (RFC 4180).
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// Text as LaTeX typesets it literally: its ten special characters escaped, and the
/// typographic characters report.md uses spelled in LaTeX.
fn tex_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\textbackslash{}"),
            '&' | '%' | '$' | '#' | '_' | '{' | '}' => {
                out.push('\\');
                out.push(c);
            }
            '~' => out.push_str("\\textasciitilde{}"),
            '^' => out.push_str("\\textasciicircum{}"),
            '−' => out.push_str("$-$"),
            '–' => out.push_str("--"),
            '—' => out.push_str("---"),
            '±' => out.push_str("$\\pm$"),
            '×' => out.push_str("$\\times$"),
            '→' => out.push_str("$\\to$"),
            c if c.is_ascii() => out.push(c),
            // Anything else would need a Unicode engine or a package: keep its name readable.
            c => out.push_str(&format!("{{\\char\"{:X}}}", c as u32)),
        }
    }
    out
}

fn num(x: f64) -> Cell {
    Cell::Num(format!("{x:.4}"))
}

fn signed(x: f64) -> Cell {
    Cell::Num(format!("{x:+.4}"))
}

/// A p-value as report.md shows it: four decimals, or `< 0.0001`.
fn p_cell(p: Option<f64>) -> Cell {
    p.map_or(Cell::Missing, |p| Cell::Num(show_p(p).trim_start_matches("= ").replace(' ', "")))
}

/// A mean and its 95 % half-width as two CSV cells.
fn mean_ci(e: &Option<Estimate>) -> [Cell; 2] {
    match e {
        Some(e) => [num(e.mean), e.ci95.map_or(Cell::Missing, num)],
        None => [Cell::Missing, Cell::Missing],
    }
}

/// `4.1234 ± 0.0123` in LaTeX's math mode (the bare mean without an interval).
fn mean_pm(e: &Option<Estimate>) -> Cell {
    match e {
        Some(Estimate { mean, ci95: Some(h), .. }) => Cell::Num(format!("{mean:.4} \\pm {h:.4}")),
        Some(e) => num(e.mean),
        None => Cell::Missing,
    }
}

/// A signed difference's interval, `[−0.0045, +0.0201]`.
fn interval(e: &Option<Estimate>) -> Cell {
    match e {
        Some(e) if e.ci95.is_some() => Cell::Num(format!("[{:+.4}, {:+.4}]", e.low(), e.high())),
        _ => Cell::Missing,
    }
}

/// The low and high ends of a difference's interval as two CSV cells.
fn ends(e: &Option<Estimate>) -> [Cell; 2] {
    match e {
        Some(e) if e.ci95.is_some() => [signed(e.low()), signed(e.high())],
        _ => [Cell::Missing, Cell::Missing],
    }
}

/// What made a table: embgraft's version and the experiment's settings fingerprint.
fn made_by(s: &Summary) -> String {
    let settings = s.inputs.fingerprints.as_ref().map(|f| f.settings.as_str()).unwrap_or("not recorded");
    format!("Made by embgraft {} from summary.json (settings fingerprint {settings}).", s.embgraft_version)
}

/// The questions: each paired difference with its interval, p-values and verdict.
fn questions(s: &Summary) -> Table {
    let bpb = s.analysis.comparisons.iter().any(|c| c.difference_bpb.is_some());
    let mut csv_head =
        vec!["question", "minuend", "subtrahend", "difference", "ci_low", "ci_high", "p", "p_holm", "verdict", "seeds"];
    if bpb {
        csv_head.extend(["difference_bpb", "ci_low_bpb", "ci_high_bpb"]);
    }
    let (mut csv_rows, mut tex_rows) = (Vec::new(), Vec::new());
    for c in &s.analysis.comparisons {
        let seeds = c.difference.map_or(Cell::Missing, |e| Cell::Num(e.n.to_string()));
        let d = c.difference.map_or(Cell::Missing, |e| signed(e.mean));
        let mut row = vec![
            Cell::Text(c.key.clone()),
            Cell::Text(c.minuend.to_string()),
            Cell::Text(c.subtrahend.to_string()),
            d.clone(),
        ];
        row.extend(ends(&c.difference));
        row.extend([p_cell(c.p_value), p_cell(c.p_adjusted), Cell::Text(c.finding.clone()), seeds.clone()]);
        if bpb {
            row.push(c.difference_bpb.map_or(Cell::Missing, |e| signed(e.mean)));
            row.extend(ends(&c.difference_bpb));
        }
        csv_rows.push(row);
        let mut tex = vec![
            Cell::Text(format!("{} ({} − {})", c.key.replace('_', " "), c.minuend, c.subtrahend)),
            d,
            interval(&c.difference),
            p_cell(c.p_value),
            p_cell(c.p_adjusted),
            Cell::Text(c.finding.clone()),
            seeds,
        ];
        if bpb {
            tex.insert(3, c.difference_bpb.map_or(Cell::Missing, |e| signed(e.mean)));
        }
        tex_rows.push(tex);
    }
    let mut tex_head = vec![
        ("Question", 'l'),
        ("Difference (nats)", 'r'),
        ("95\\,\\% CI", 'c'),
        ("$p$", 'r'),
        ("$p_\\mathrm{Holm}$", 'r'),
        ("Verdict", 'l'),
        ("Seeds", 'r'),
    ];
    if bpb {
        tex_head.insert(3, ("Difference (BPB)", 'r'));
    }
    Table { csv_head, csv_rows, tex_head, tex_rows }
}

/// The configurations: final and best test loss over seeds, in nats and bits per byte.
fn configs(cfg: &ExperimentConfig, s: &Summary) -> Table {
    let bpb = s.analysis.configs.iter().any(|c| c.final_test_bpb.is_some());
    let mut csv_head =
        vec!["config", "description", "seeds", "final_test", "final_test_ci95", "best_test", "best_test_ci95"];
    if bpb {
        csv_head.extend(["final_test_bpb", "final_test_bpb_ci95", "best_test_bpb", "best_test_bpb_ci95"]);
    }
    let (mut csv_rows, mut tex_rows) = (Vec::new(), Vec::new());
    for c in &s.analysis.configs {
        let mut row =
            vec![Cell::Text(c.config.to_string()), Cell::Text(cfg.describe(c.config)), Cell::Num(c.runs.to_string())];
        row.extend(mean_ci(&c.final_test));
        row.extend(mean_ci(&c.best_test));
        let mut tex = vec![
            Cell::Text(format!("{} {}", c.config, cfg.describe(c.config))),
            Cell::Num(c.runs.to_string()),
            mean_pm(&c.final_test),
            mean_pm(&c.best_test),
        ];
        if bpb {
            row.extend(mean_ci(&c.final_test_bpb));
            row.extend(mean_ci(&c.best_test_bpb));
            tex.extend([mean_pm(&c.final_test_bpb), mean_pm(&c.best_test_bpb)]);
        }
        csv_rows.push(row);
        tex_rows.push(tex);
    }
    let mut tex_head =
        vec![("Configuration", 'l'), ("Seeds", 'r'), ("Final test loss (nats)", 'r'), ("Best test loss (nats)", 'r')];
    if bpb {
        tex_head.extend([("Final test BPB", 'r'), ("Best test BPB", 'r')]);
    }
    Table { csv_head, csv_rows, tex_head, tex_rows }
}

/// A sweep's trends: each question's slope on the swept setting, with its interval and verdict.
fn trends(a: &SweepAnalysis) -> Table {
    let csv_head = vec![
        "question",
        "minuend",
        "subtrahend",
        "axis",
        "line",
        "values",
        "slope",
        "ci_low",
        "ci_high",
        "per",
        "p",
        "p_holm",
        "verdict",
    ];
    let (mut csv_rows, mut tex_rows) = (Vec::new(), Vec::new());
    for s in &a.series {
        let values = s.points.iter().filter(|p| p.difference.is_some()).count();
        let slope = s.trend.as_ref().map(|t| t.slope);
        let verdict = s.trend.as_ref().map_or("too few values".to_string(), |t| t.outcome.to_string());
        let (p, p_holm) = s.trend.as_ref().map_or((None, None), |t| (t.p_value, t.p_adjusted));
        let per = s.trend.as_ref().map_or(Cell::Missing, |t| Cell::Text(t.per.clone()));
        let mut row = vec![
            Cell::Text(s.key.clone()),
            Cell::Text(s.minuend.to_string()),
            Cell::Text(s.subtrahend.to_string()),
            Cell::Text(s.axis.short().to_string()),
            Cell::Text(s.line.clone()),
            Cell::Num(values.to_string()),
            slope.map_or(Cell::Missing, |e| signed(e.mean)),
        ];
        row.extend(ends(&slope));
        row.extend([per.clone(), p_cell(p), p_cell(p_holm), Cell::Text(verdict.clone())]);
        csv_rows.push(row);
        tex_rows.push(vec![
            Cell::Text(format!("{} ({} − {})", s.key.replace('_', " "), s.minuend, s.subtrahend)),
            Cell::Text(s.line.clone()),
            slope.map_or(Cell::Missing, |e| signed(e.mean)),
            interval(&slope),
            per,
            p_cell(p_holm),
            Cell::Text(verdict),
        ]);
    }
    let tex_head = vec![
        ("Question", 'l'),
        ("Line", 'l'),
        ("Slope (nats)", 'r'),
        ("95\\,\\% CI", 'c'),
        ("Per", 'l'),
        ("$p_\\mathrm{Holm}$", 'r'),
        ("Verdict", 'l'),
    ];
    Table { csv_head, csv_rows, tex_head, tex_rows }
}

fn tables_dir(out: &Path) -> Result<std::path::PathBuf> {
    let dir = out.join(DIR);
    std::fs::create_dir_all(&dir).map_err(|e| {
        crate::error::Error::Output(format!("cannot create {} ({e}); make {} writable", dir.display(), out.display()))
    })?;
    Ok(dir)
}

/// `tables/questions.{csv,tex}` and `tables/configs.{csv,tex}` for one group's report.
pub fn write(out: &Path, cfg: &ExperimentConfig, s: &Summary) -> Result<()> {
    let dir = tables_dir(out)?;
    let by = made_by(s);
    questions(s).write(&dir, "questions", &by)?;
    configs(cfg, s).write(&dir, "configs", &by)
}

/// `tables/trends.{csv,tex}` for a sweep's overview.
pub fn write_trends(out: &Path, a: &SweepAnalysis) -> Result<()> {
    let dir = tables_dir(out)?;
    let by = format!("Made by embgraft {} from the sweep's summary.json.", env!("CARGO_PKG_VERSION"));
    trends(a).write(&dir, "trends", &by)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_for_latex_and_quoted_for_csv() {
        assert_eq!(
            tex_escape("50% of a_b & {c} #1 $x ~ ^"),
            "50\\% of a\\_b \\& \\{c\\} \\#1 \\$x \\textasciitilde{} \\textasciicircum{}"
        );
        assert_eq!(tex_escape("B − C ± 1 → 2"), "B $-$ C $\\pm$ 1 $\\to$ 2");
        assert_eq!(tex_escape("a\\b"), "a\\textbackslash{}b");
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a, b"), "\"a, b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
    }

    #[test]
    fn numbers_are_rounded_as_the_report_rounds_them() {
        assert_eq!(p_cell(Some(0.012345)), Cell::Num("0.0123".into()));
        assert_eq!(p_cell(Some(1e-7)).tex(), "$<\\,0.0001$");
        assert_eq!(p_cell(Some(1e-7)).csv(), "<0.0001");
        let e = Estimate { n: 3, mean: -0.01234, sd: 0.01, ci95: Some(0.005) };
        assert_eq!(interval(&Some(e)).tex(), "$[-0.0173, -0.0073]$");
        assert_eq!(mean_pm(&Some(Estimate { mean: 4.12345, ..e })).tex(), "$4.1235 \\pm 0.0050$");
        assert_eq!(mean_pm(&Some(Estimate { n: 1, ci95: None, ..e })).tex(), "$-0.0123$");
        assert_eq!(Cell::Missing.tex(), "--");
    }

    #[test]
    fn every_row_has_as_many_cells_as_its_head() {
        let t = Table {
            csv_head: vec!["a", "b"],
            csv_rows: vec![vec![Cell::Text("x,y".into()), Cell::Missing]],
            tex_head: vec![("A", 'l'), ("B", 'r')],
            tex_rows: vec![vec![Cell::Text("x_y".into()), num(1.0)]],
        };
        assert_eq!(t.csv(), "a,b\n\"x,y\",\n");
        let tex = t.tex("made here");
        assert!(tex.starts_with("% made here\n"));
        assert!(
            tex.contains("\\begin{tabular}{lr}\n\\toprule\nA & B \\\\\n\\midrule\nx\\_y & $1.0000$ \\\\\n\\bottomrule")
        );
    }
}
