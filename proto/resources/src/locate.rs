//! Splits a YAML file into documents, and finds where every field of a document is written, so that an
//! error found after deserialization (an invalid CEL expression, a bad duration) can name its line. The field
//! index is built only when an error needs it: kept for every document of a large configuration, it would
//! outweigh the configuration itself.

use std::collections::HashMap;

use serde_saphyr::granit_parser::{Event, Parser};

/// One YAML document of a file.
#[derive(Debug, Default)]
pub struct Document<'a> {
    /// The document's text.
    pub text: &'a str,
    /// 1-based line where the document starts.
    pub line: u32,
}

/// Field path (`spec.rules[0].when`) to the 1-based line it is written on.
pub type FieldLines = HashMap<String, u32>;

/// A YAML syntax error, with its 1-based position.
#[derive(Debug)]
pub struct SyntaxError {
    /// Line.
    pub line: u32,
    /// Column.
    pub column: u32,
    /// What the parser said.
    pub message: String,
}

enum Frame {
    Map { key: Option<String> },
    Seq { index: usize },
}

fn path(stack: &[Frame], leaf: Option<&str>, index: Option<usize>) -> String {
    let mut p = String::new();
    for f in stack {
        match f {
            Frame::Map { key: Some(k) } => {
                if !p.is_empty() {
                    p.push('.');
                }
                p.push_str(k);
            }
            Frame::Seq { index } => p.push_str(&format!("[{index}]")),
            Frame::Map { key: None } => {}
        }
    }
    if let Some(leaf) = leaf {
        if !p.is_empty() {
            p.push('.');
        }
        p.push_str(leaf);
    }
    if let Some(i) = index {
        p.push_str(&format!("[{i}]"));
    }
    p
}

fn line_of(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Splits `text` into documents.
pub fn documents(text: &str) -> Result<Vec<Document<'_>>, SyntaxError> {
    Ok(scan(text, false)?.into_iter().map(|(doc, _)| doc).collect())
}

/// The field lines of the first document of `text` (lines counted from the start of `text`); empty when it
/// does not parse.
pub fn field_lines(text: &str) -> FieldLines {
    scan(text, true)
        .ok()
        .and_then(|docs| docs.into_iter().next())
        .map(|(_, fields)| fields)
        .unwrap_or_default()
}

/// Splits `text` into documents, indexing their field lines if `index` is set.
fn scan(text: &str, index: bool) -> Result<Vec<(Document<'_>, FieldLines)>, SyntaxError> {
    let byte_of = |m: &serde_saphyr::granit_parser::Marker| {
        m.byte_offset().unwrap_or_else(|| {
            text.char_indices()
                .nth(m.index())
                .map_or(text.len(), |(b, _)| b)
        })
    };
    let mut docs: Vec<(usize, Document<'_>, FieldLines)> = Vec::new();
    let mut stack: Vec<Frame> = Vec::new();
    for event in Parser::new_from_str(text) {
        let (event, span) = event.map_err(|e| SyntaxError {
            line: line_of(e.marker().line()),
            column: line_of(e.marker().col() + 1),
            message: e.info(),
        })?;
        let line = line_of(span.start.line());
        let starts_node = matches!(
            event,
            Event::Scalar(..)
                | Event::MappingStart(..)
                | Event::SequenceStart(..)
                | Event::Alias(..)
        );
        let Some((_, _, fields)) = docs.last_mut() else {
            if let Event::DocumentStart(..) = event {
                docs.push((
                    byte_of(&span.start),
                    Document { text: "", line },
                    FieldLines::new(),
                ));
            }
            continue;
        };
        if index && starts_node {
            match stack.last_mut() {
                Some(Frame::Seq { index }) => {
                    let i = *index;
                    stack.pop();
                    let p = path(&stack, None, Some(i));
                    stack.push(Frame::Seq { index: i });
                    fields.insert(p, line);
                }
                Some(Frame::Map { key: None }) => {
                    if let Event::Scalar(k, ..) = &event {
                        let k = k.to_string();
                        stack.pop();
                        fields.insert(path(&stack, Some(&k), None), line);
                        stack.push(Frame::Map { key: Some(k) });
                        continue;
                    }
                }
                _ => {}
            }
        }
        match event {
            Event::DocumentStart(..) => {
                docs.push((
                    byte_of(&span.start),
                    Document { text: "", line },
                    FieldLines::new(),
                ));
                stack.clear();
            }
            Event::MappingStart(..) => stack.push(Frame::Map { key: None }),
            Event::SequenceStart(..) => stack.push(Frame::Seq { index: 0 }),
            Event::MappingEnd | Event::SequenceEnd => {
                stack.pop();
                node_done(&mut stack);
            }
            Event::Scalar(..) | Event::Alias(..) => node_done(&mut stack),
            _ => {}
        }
    }
    let ends: Vec<usize> = docs
        .iter()
        .skip(1)
        .map(|(start, ..)| *start)
        .chain([text.len()])
        .collect();
    Ok(docs
        .into_iter()
        .zip(ends)
        .map(|((start, mut doc, fields), end)| {
            doc.text = text.get(start..end).unwrap_or("");
            (doc, fields)
        })
        .collect())
}

/// A node (a map value or a sequence item) is complete: advance its parent.
fn node_done(stack: &mut [Frame]) {
    match stack.last_mut() {
        Some(Frame::Map { key }) => *key = None,
        Some(Frame::Seq { index }) => *index += 1,
        None => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_documents_and_indexes_fields_of_one() {
        let text = "kind: A\nspec:\n  rules:\n  - name: x\n    when: 'a'\n  - name: y\n---\n# c\nkind: B\nspec: {sel: 1}\n";
        let docs = documents(text).unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!((docs[0].line, docs[1].line), (1, 7));
        let first = field_lines(docs[0].text);
        assert_eq!(first["kind"], 1);
        assert_eq!(first["spec.rules[0].when"], 5);
        assert_eq!(first["spec.rules[1].name"], 6);
        // Counted from the document's own start (line 7 of the file).
        assert_eq!(field_lines(docs[1].text)["spec.sel"], 4);
        assert!(docs[1].text.contains("kind: B") && !docs[0].text.contains("kind: B"));
    }

    #[test]
    fn syntax_errors_have_a_position() {
        let err = documents("kind: A\nspec: [1, 2\n").unwrap_err();
        assert!(err.line >= 2, "{err:?}");
    }
}
