//! A small XML writer for the camt files we produce: elements, text and
//! one attribute, indented, every text escaped. Names are our own
//! constants; only text and attribute values come from callers.

use std::fmt::Write as _;

#[derive(Debug)]
pub(crate) struct XmlOut {
    out: String,
    open: Vec<&'static str>,
}

impl XmlOut {
    /// A document with the XML declaration and `<Document xmlns=…>` open.
    pub(crate) fn document(namespace: &str) -> XmlOut {
        let mut x = XmlOut { out: String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"), open: Vec::new() };
        x.indent();
        x.out.push_str("<Document xmlns=\"");
        escape_into(&mut x.out, namespace);
        x.out.push_str("\">\n");
        x.open.push("Document");
        x
    }

    fn indent(&mut self) {
        for _ in 0..self.open.len() {
            self.out.push_str("  ");
        }
    }

    pub(crate) fn open(&mut self, name: &'static str) {
        self.indent();
        let _ = writeln!(self.out, "<{name}>");
        self.open.push(name);
    }

    pub(crate) fn close(&mut self) {
        if let Some(name) = self.open.pop() {
            self.indent();
            let _ = writeln!(self.out, "</{name}>");
        }
    }

    /// `<name>text</name>`.
    pub(crate) fn leaf(&mut self, name: &'static str, text: &str) {
        self.indent();
        let _ = write!(self.out, "<{name}>");
        escape_into(&mut self.out, text);
        let _ = writeln!(self.out, "</{name}>");
    }

    /// `<name attr="value">text</name>`.
    pub(crate) fn leaf_with(&mut self, name: &'static str, attr: &'static str, value: &str, text: &str) {
        self.indent();
        let _ = write!(self.out, "<{name} {attr}=\"");
        escape_into(&mut self.out, value);
        self.out.push_str("\">");
        escape_into(&mut self.out, text);
        let _ = writeln!(self.out, "</{name}>");
    }

    /// Closes whatever is still open and returns the text.
    pub(crate) fn finish(mut self) -> String {
        while !self.open.is_empty() {
            self.close();
        }
        self.out
    }
}

/// Escapes the five XML special characters; the rest is written as is
/// (callers only pass text without control characters).
fn escape_into(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_attributes_are_escaped_and_parse_back() {
        let nasty = r#"<a href="x">&amp; 'q' ]]> </Ustrd>"#;
        let mut x = XmlOut::document("urn:test");
        x.open("Outer");
        x.leaf("Ustrd", nasty);
        x.leaf_with("Amt", "Ccy", nasty, "1");
        let text = x.finish();
        let doc = roxmltree::Document::parse(&text).unwrap();
        let outer = doc.root_element().first_element_child().unwrap();
        let mut leaves = outer.children().filter(roxmltree::Node::is_element);
        assert_eq!(leaves.next().unwrap().text(), Some(nasty));
        assert_eq!(leaves.next().unwrap().attribute("Ccy"), Some(nasty));
        assert!(text.ends_with("  </Outer>\n</Document>\n"), "{text}");
    }
}
