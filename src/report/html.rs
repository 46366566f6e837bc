//! `report.html`: the document as one self-contained page, every figure's SVG inlined,
//! so it opens anywhere without network or the `plots/` folder.

use super::document::{Block, Document};

/// Escapes text for HTML.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            _ => out.push(c),
        }
    }
    out
}

/// Escaped text with `code` spans as `<code>` and line breaks as `<br>`.
fn inline(text: &str) -> String {
    text.split('`')
        .enumerate()
        .map(|(i, part)| {
            let part = escape(part).replace('\n', "<br>");
            if i % 2 == 1 {
                format!("<code>{part}</code>")
            } else {
                part
            }
        })
        .collect()
}

/// The SVG element alone (no XML prolog), for inlining.
fn svg_element(svg: &str) -> &str {
    svg.find("<svg").map_or(svg, |i| &svg[i..])
}

const STYLE: &str = "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;\
max-width:1100px;margin:2em auto;padding:0 1em;color:#222;line-height:1.45}\
h1{font-size:1.7em}h2{margin-top:2em;border-bottom:1px solid #ddd;padding-bottom:.2em}\
code{background:#f3f3f3;padding:0 .25em;border-radius:3px;font-size:.92em}\
table{border-collapse:collapse;margin:1em 0;font-size:.9em}\
th,td{border:1px solid #ccc;padding:.3em .55em;text-align:left;vertical-align:top}\
th{background:#f0f0f0}tr:nth-child(even) td{background:#fafafa}\
figure{margin:1.5em 0}figure svg{max-width:100%;height:auto;display:block}\
figcaption{font-size:.9em;color:#444;margin-top:.4em}";

/// Renders `doc` as a complete HTML page.
pub fn render(doc: &Document) -> String {
    let title = escape(&doc.title);
    let mut out = format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{title}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<h1>{title}</h1>\n"
    );
    for block in &doc.blocks {
        match block {
            Block::Heading(level, text) => {
                let l = (*level).clamp(1, 6);
                out.push_str(&format!("<h{l}>{}</h{l}>\n", inline(text)));
            }
            Block::Paragraph(text) => out.push_str(&format!("<p>{}</p>\n", inline(text))),
            Block::List(items) => {
                out.push_str("<ul>\n");
                for item in items {
                    out.push_str(&format!("<li>{}</li>\n", inline(item)));
                }
                out.push_str("</ul>\n");
            }
            Block::Table { header, rows } => {
                out.push_str("<table>\n<thead><tr>");
                for h in header {
                    out.push_str(&format!("<th>{}</th>", inline(h)));
                }
                out.push_str("</tr></thead>\n<tbody>\n");
                for row in rows {
                    out.push_str("<tr>");
                    for c in row {
                        out.push_str(&format!("<td>{}</td>", inline(c)));
                    }
                    out.push_str("</tr>\n");
                }
                out.push_str("</tbody>\n</table>\n");
            }
            Block::Figure(f) => {
                out.push_str(&format!(
                    "<figure>\n{}\n<figcaption><b>{}</b>. {} <i>({})</i></figcaption>\n</figure>\n",
                    svg_element(&f.svg).trim_end(),
                    inline(&f.title),
                    inline(&f.caption),
                    escape(&f.file)
                ));
            }
        }
    }
    out.push_str("</body>\n</html>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_markup_is_escaped_and_coded() {
        assert_eq!(
            inline("a <b> & `x<y>` c\nd"),
            "a &lt;b&gt; &amp; <code>x&lt;y&gt;</code> c<br>d"
        );
        assert_eq!(svg_element("<?xml version=\"1.0\"?>\n<svg a/>"), "<svg a/>");
    }
}
