//! Minimal, formatting-preserving edits of a JSON document's top-level object: add or remove
//! one string in an array member, add or remove a member. Everything else in the text (key
//! order, indentation, other members byte for byte) stays as it was, and removing what was
//! added gives back the same bytes. The caller checks with serde_json that the text is valid
//! JSON first; this scanner then only finds spans. Pure.

use std::ops::Range;

/// A member of the top-level object: the key's text span start and the value's span.
#[derive(Debug, Clone)]
pub(crate) struct Member {
    pub key: String,
    pub start: usize,
    pub value: Range<usize>,
}

/// The top-level object's `{` and `}` offsets and its members. Err when the text is not a
/// JSON object.
pub(crate) fn members(text: &str) -> Result<(usize, usize, Vec<Member>), String> {
    let b = text.as_bytes();
    let mut i = skip_ws(b, 0);
    if b.get(i) != Some(&b'{') {
        return Err("the top level is not a JSON object".into());
    }
    let open = i;
    i += 1;
    let mut out = Vec::new();
    loop {
        i = skip_ws(b, i);
        match b.get(i) {
            Some(b'}') => return Ok((open, i, out)),
            Some(b',') => i += 1,
            Some(b'"') => {
                let start = i;
                let end = skip_value(b, i)?;
                let key: String =
                    serde_json::from_str(&text[start..end]).map_err(|e| e.to_string())?;
                i = skip_ws(b, end);
                if b.get(i) != Some(&b':') {
                    return Err("expected ':'".into());
                }
                let vstart = skip_ws(b, i + 1);
                let vend = skip_value(b, vstart)?;
                out.push(Member {
                    key,
                    start,
                    value: vstart..vend,
                });
                i = vend;
            }
            _ => return Err("unexpected text in the object".into()),
        }
    }
}

/// The spans of an array's elements; `range` covers the array from `[` to `]`.
pub(crate) fn elements(text: &str, range: Range<usize>) -> Result<Vec<Range<usize>>, String> {
    let b = text.as_bytes();
    if b.get(range.start) != Some(&b'[') {
        return Err("not an array".into());
    }
    let mut i = range.start + 1;
    let mut out = Vec::new();
    loop {
        i = skip_ws(b, i);
        match b.get(i) {
            Some(b']') => return Ok(out),
            Some(b',') => i += 1,
            Some(_) => {
                let end = skip_value(b, i)?;
                out.push(i..end);
                i = end;
            }
            None => return Err("unterminated array".into()),
        }
    }
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while b
        .get(i)
        .is_some_and(|c| matches!(c, b' ' | b'\t' | b'\n' | b'\r'))
    {
        i += 1;
    }
    i
}

/// The end of the value starting at `i`.
fn skip_value(b: &[u8], i: usize) -> Result<usize, String> {
    match b.get(i) {
        Some(b'"') => {
            let mut j = i + 1;
            while let Some(&c) = b.get(j) {
                match c {
                    b'\\' => j += 2,
                    b'"' => return Ok(j + 1),
                    _ => j += 1,
                }
            }
            Err("unterminated string".into())
        }
        Some(b'{') | Some(b'[') => {
            let mut depth = 0usize;
            let mut j = i;
            while let Some(&c) = b.get(j) {
                match c {
                    b'"' => {
                        j = skip_value(b, j)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Ok(j + 1);
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
            Err("unterminated object or array".into())
        }
        Some(_) => {
            let mut j = i;
            while b
                .get(j)
                .is_some_and(|c| !matches!(c, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r'))
            {
                j += 1;
            }
            if j == i {
                Err("expected a value".into())
            } else {
                Ok(j)
            }
        }
        None => Err("unexpected end".into()),
    }
}

/// The separator to put before a new item after `last` (which follows `prev`, or the
/// opening bracket at `open`): the same as between the last two items, else a comma plus
/// the whitespace after the bracket when that holds a newline, else `", "`.
fn separator(text: &str, open: usize, items: &[Range<usize>]) -> String {
    match items {
        [.., prev, last] => text[prev.end..last.start].to_owned(),
        [first] => {
            let lead = &text[open + 1..first.start];
            if lead.contains('\n') {
                format!(",{lead}")
            } else {
                ", ".to_owned()
            }
        }
        [] => String::new(),
    }
}

/// Inserts `item` (JSON text) as the last element of the array at `range`.
pub(crate) fn push_element(text: &str, range: Range<usize>, item: &str) -> Result<String, String> {
    let items = elements(text, range.clone())?;
    Ok(match items.last() {
        None => format!(
            "{}{item}{}",
            &text[..range.start + 1],
            &text[range.start + 1..]
        ),
        Some(last) => {
            let sep = separator(text, range.start, &items);
            format!("{}{sep}{item}{}", &text[..last.end], &text[last.end..])
        }
    })
}

/// Removes element `index` of the array at `range`, with the separator before it (or after
/// it, for the first of several).
pub(crate) fn remove_element(
    text: &str,
    range: Range<usize>,
    index: usize,
) -> Result<String, String> {
    let items = elements(text, range)?;
    let cut = span_to_cut(&items, index)?;
    Ok(format!("{}{}", &text[..cut.start], &text[cut.end..]))
}

fn span_to_cut(items: &[Range<usize>], index: usize) -> Result<Range<usize>, String> {
    let this = items.get(index).ok_or("no such element")?.clone();
    Ok(
        match (
            index.checked_sub(1).and_then(|p| items.get(p)),
            items.get(index + 1),
        ) {
            (Some(prev), _) => prev.end..this.end,
            (None, Some(next)) => this.start..next.start,
            (None, None) => this,
        },
    )
}

/// Appends member `"key": value` (value as JSON text) to the top-level object.
pub(crate) fn push_member(text: &str, key: &str, value: &str) -> Result<String, String> {
    let (open, _, members) = members(text)?;
    let spans: Vec<Range<usize>> = members.iter().map(|m| m.start..m.value.end).collect();
    let key = serde_json::to_string(key).map_err(|e| e.to_string())?;
    let item = format!("{key}: {value}");
    Ok(match spans.last() {
        None => format!("{}{item}{}", &text[..open + 1], &text[open + 1..]),
        Some(last) => {
            let sep = separator(text, open, &spans);
            format!("{}{sep}{item}{}", &text[..last.end], &text[last.end..])
        }
    })
}

/// Removes the top-level member `key` (the first of that name) with its separator.
pub(crate) fn remove_member(text: &str, key: &str) -> Result<String, String> {
    let (_, _, members) = members(text)?;
    let spans: Vec<Range<usize>> = members.iter().map(|m| m.start..m.value.end).collect();
    let index = members
        .iter()
        .position(|m| m.key == key)
        .ok_or("no such member")?;
    let cut = span_to_cut(&spans, index)?;
    Ok(format!("{}{}", &text[..cut.start], &text[cut.end..]))
}
