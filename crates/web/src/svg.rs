//! What the SVG charts of both web interfaces share (the dashboard's usage charts, the
//! console's installation charts): escaping text, an accessible name and description on
//! the document a chart library wrote, and the chart that says it could not be drawn.

/// Text made safe inside SVG/XML text and attributes.
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Adds an accessible name (`title`) and description (`desc`) to an SVG document.
pub fn add_title(mut svg: String, title: &str, desc: &str) -> String {
    let Some(open) = svg.find("<svg") else {
        return svg;
    };
    let Some(end) = svg[open..].find('>').map(|i| open + i) else {
        return svg;
    };
    let (title, desc) = (escape(title), escape(desc));
    svg.insert_str(
        end + 1,
        &format!("\n<title>{title}</title>\n<desc>{desc}</desc>"),
    );
    svg.insert_str(
        open + 4,
        &format!(" role=\"img\" aria-label=\"{title}: {desc}\""),
    );
    svg
}

/// A `width` × `height` chart saying it could not be drawn, and why.
pub fn fallback_svg(title: &str, error: &str, width: u32, height: u32) -> String {
    let (title, error) = (escape(title), escape(error));
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\" role=\"img\"><title>{title}</title>\
         <text x=\"20\" y=\"30\" font-family=\"sans-serif\" font-size=\"16\">{title}</text>\
         <text x=\"20\" y=\"60\" font-family=\"sans-serif\" font-size=\"13\">chart could not be drawn: {error}</text></svg>"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_are_added_and_escaped() {
        let svg = add_title("<svg width=\"1\">\n</svg>".into(), "a <b>", "c & d");
        assert!(svg.starts_with("<svg role=\"img\" aria-label=\"a &lt;b&gt;: c &amp; d\""));
        assert!(svg.contains("<title>a &lt;b&gt;</title>"));
        assert_eq!(add_title("no svg".into(), "t", "d"), "no svg");
        assert!(fallback_svg("t", "e<", 10, 20).contains("e&lt;"));
    }
}
