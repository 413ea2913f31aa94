//! Results as people read them: aligned tables on the terminal (Markdown,
//! so they paste into RESULTS.md), CSV and JSON files, and SVG plots.

use std::fs;
use std::path::Path;

use plotters::prelude::*;

/// One table of results.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Table {
    /// File stem.
    pub name: String,
    /// Heading.
    pub title: String,
    /// Column names.
    pub head: Vec<String>,
    /// Rows of cells.
    pub rows: Vec<Vec<String>>,
}

impl Table {
    /// An empty table.
    pub fn new(name: &str, title: &str, head: &[&str]) -> Self {
        Table {
            name: name.into(),
            title: title.into(),
            head: head.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// The table in Markdown, columns aligned.
    pub fn markdown(&self) -> String {
        let widths: Vec<usize> = (0..self.head.len())
            .map(|c| {
                self.rows
                    .iter()
                    .map(|r| r.get(c).map_or(0, |s| s.len()))
                    .chain([self.head[c].len()])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let line = |cells: &[String]| {
            let inner: Vec<String> = cells
                .iter()
                .zip(&widths)
                .map(|(c, w)| format!("{c:>w$}"))
                .collect();
            format!("| {} |\n", inner.join(" | "))
        };
        let mut s = format!("### {}\n\n", self.title);
        s += &line(&self.head);
        s += &format!(
            "|{}|\n",
            widths
                .iter()
                .map(|w| format!("{}:", "-".repeat(w + 1)))
                .collect::<Vec<_>>()
                .join("|")
        );
        for r in &self.rows {
            s += &line(r);
        }
        s
    }

    /// Writes `<name>.csv` into `dir`.
    pub fn write_csv(&self, dir: &Path) -> std::io::Result<()> {
        let esc = |c: &String| {
            if c.contains(',') {
                format!("\"{c}\"")
            } else {
                c.clone()
            }
        };
        let mut s = self.head.iter().map(esc).collect::<Vec<_>>().join(",") + "\n";
        for r in &self.rows {
            s += &(r.iter().map(esc).collect::<Vec<_>>().join(",") + "\n");
        }
        fs::write(dir.join(format!("{}.csv", self.name)), s)
    }
}

/// Writes every table as one JSON document.
pub fn write_json(tables: &[Table], dir: &Path) -> anyhow::Result<()> {
    fs::write(
        dir.join("results.json"),
        serde_json::to_string_pretty(tables)?,
    )?;
    Ok(())
}

/// A line plot of series over named categories (packet sizes), as SVG.
pub fn plot(
    path: &Path,
    title: &str,
    y_label: &str,
    categories: &[String],
    series: &[(String, Vec<f64>)],
) -> anyhow::Result<()> {
    let top = series
        .iter()
        .flat_map(|(_, v)| v.iter().copied())
        .fold(0.0f64, f64::max)
        * 1.15;
    let root = SVGBackend::new(path, (800, 480)).into_drawing_area();
    root.fill(&WHITE)?;
    let n = categories.len();
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(-0.5f64..(n as f64 - 0.5), 0.0..top.max(1e-9))?;
    let cats = categories.to_vec();
    chart
        .configure_mesh()
        .x_labels(n)
        .x_label_formatter(&move |x| {
            let i = x.round();
            if (x - i).abs() < 1e-6 && i >= 0.0 {
                cats.get(i as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .y_desc(y_label)
        .draw()?;
    for (k, (name, values)) in series.iter().enumerate() {
        let color = Palette99::pick(k).to_rgba();
        let points: Vec<(f64, f64)> = values
            .iter()
            .enumerate()
            .map(|(i, v)| (i as f64, *v))
            .collect();
        chart
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))?
            .label(name.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color));
        chart.draw_series(points.iter().map(|p| Circle::new(*p, 4, color.filled())))?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}
