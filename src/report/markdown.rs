//! `report.md`: the document as GitHub-flavoured Markdown, figures linked as files.

use super::document::{Block, Document};

/// A table cell on one line: pipes escaped, line breaks as `<br>`.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', "<br>")
}

/// Renders `doc`; figures are `![title](plots/….svg)` followed by their caption.
pub fn render(doc: &Document) -> String {
    let mut out = format!("# {}\n\n", doc.title);
    for block in &doc.blocks {
        match block {
            Block::Heading(level, text) => {
                out.push_str(&format!("{} {text}\n\n", "#".repeat(usize::from(*level))));
            }
            Block::Paragraph(text) => out.push_str(&format!("{text}\n\n")),
            Block::List(items) => {
                for item in items {
                    out.push_str(&format!("- {}\n", item.replace('\n', " ")));
                }
                out.push('\n');
            }
            Block::Table { header, rows } => {
                let line = |cells: &[String]| {
                    let cells: Vec<String> = cells.iter().map(|c| cell(c)).collect();
                    format!("| {} |\n", cells.join(" | "))
                };
                out.push_str(&line(header));
                out.push_str(&format!("|{}\n", "---|".repeat(header.len())));
                for row in rows {
                    out.push_str(&line(row));
                }
                out.push('\n');
            }
            Block::Figure(f) => {
                out.push_str(&format!(
                    "![{}]({})\n\n*{}*\n\n",
                    f.title.replace(['[', ']'], ""),
                    f.file,
                    f.caption
                ));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::document::Figure;

    #[test]
    fn tables_and_figures() {
        let doc = Document {
            title: "T".into(),
            blocks: vec![
                Block::Table {
                    header: vec!["a".into(), "b".into()],
                    rows: vec![vec!["x|y".into(), "1\n2".into()]],
                },
                Block::Figure(Figure {
                    file: "plots/f.svg".into(),
                    title: "F".into(),
                    caption: "c".into(),
                    svg: String::new(),
                }),
            ],
        };
        let md = render(&doc);
        assert!(md.starts_with("# T\n"));
        assert!(
            md.contains("| a | b |\n|---|---|\n| x\\|y | 1<br>2 |\n"),
            "{md}"
        );
        assert!(md.contains("![F](plots/f.svg)\n\n*c*"), "{md}");
    }
}
