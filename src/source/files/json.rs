//! JSON lines and JSON documents: values are walked with their key paths
//! (`student.idNo`, `items[0].phone`), each leaf is scanned with the hints of
//! its key, and findings carry `location.field`. Child inference spans one
//! line (JSON lines) or one record (the innermost array element of a document).

use super::chunk::Chunk;
use super::UnitCtx;
use crate::detect::{ColumnCtx, Hit};
use crate::finding::Finding;
use crate::scan::text::{scan_chunk, to_finding, TextOrigin};
use serde_json::Value;
use std::collections::HashMap;

/// A hit found in a JSON leaf, with its key path and the matched text's
/// position when it could be located in the raw JSON.
struct LeafHit {
    hit: Hit,
    field: String,
    /// Offset of the match in the raw text (relative to the text searched).
    offset: Option<usize>,
    /// Record group (document mode): the path up to the innermost array index.
    group: String,
}

/// Walk `v`, calling `leaf(path, key, value_text)` for every string and number.
fn walk(v: &Value, path: &mut String, key: &str, leaf: &mut dyn FnMut(&str, &str, &str)) {
    match v {
        Value::String(s) => leaf(path, key, s),
        Value::Number(n) => leaf(path, key, &n.to_string()),
        Value::Object(m) => {
            for (k, child) in m {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(k);
                walk(child, path, k, leaf);
                path.truncate(len);
            }
        }
        Value::Array(a) => {
            for (i, child) in a.iter().enumerate() {
                let len = path.len();
                path.push('[');
                path.push_str(&i.to_string());
                path.push(']');
                walk(child, path, key, leaf);
                path.truncate(len);
            }
        }
        Value::Bool(_) | Value::Null => {}
    }
}

/// Scan the leaves of one parsed value; locate each match in `raw`.
fn scan_value_hits(
    ctx: &UnitCtx<'_>,
    v: &Value,
    raw: &str,
    cols: &mut HashMap<String, ColumnCtx>,
) -> Vec<LeafHit> {
    let mut out: Vec<LeafHit> = Vec::new();
    let mut hits = Vec::new();
    let mut used: Vec<usize> = Vec::new();
    let mut path = String::new();
    walk(v, &mut path, "", &mut |path, key, value| {
        if value.is_empty() {
            return;
        }
        let col = cols
            .entry(key.to_string())
            .or_insert_with(|| ctx.engine.column_ctx(key));
        hits.clear();
        ctx.engine.scan_value(value, col, &mut hits);
        for h in hits.drain(..) {
            let needle = &value[h.start..h.end];
            // The n-th occurrence not yet claimed by an earlier hit with the same text.
            let mut from = 0;
            let mut offset = None;
            while let Some(p) = raw.get(from..).and_then(|r| r.find(needle)) {
                let at = from + p;
                if !used.contains(&at) {
                    used.push(at);
                    offset = Some(at);
                    break;
                }
                from = at + needle.len().max(1);
            }
            let group = match path.rfind(']') {
                Some(i) => path[..=i].to_string(),
                None => String::new(),
            };
            out.push(LeafHit {
                hit: h,
                field: path.to_string(),
                offset,
                group,
            });
        }
    });
    out
}

/// Whether `text` nests objects/arrays deeper than `max` (one pass over the
/// bytes, strings skipped; invalid JSON is judged as far as it goes).
pub fn too_deep(text: &str, max: usize) -> bool {
    let (mut depth, mut in_str, mut esc) = (0usize, false, false);
    for &b in text.as_bytes() {
        if in_str {
            match b {
                _ if esc => esc = false,
                b'\\' => esc = true,
                b'"' => in_str = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_str = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// Scan one chunk of a JSON-lines file. Lines that are not valid JSON (or
/// are pieces of an over-long line, or nest deeper than `max_json_depth`)
/// are scanned as text. Returns the first line that nests too deep.
pub fn scan_jsonl_chunk(ctx: &UnitCtx<'_>, c: &Chunk, out: &mut Vec<Finding>) -> Option<u64> {
    let origin = TextOrigin {
        target: ctx.target,
        path: ctx.path,
    };
    let mut cols = HashMap::new();
    let text = &c.text[..];
    let mut pos = 0usize;
    let mut line = c.first_line;
    let mut first = true;
    let mut deep = None;
    while pos < c.keep {
        let end = memchr::memchr(b'\n', &text.as_bytes()[pos..]).map_or(text.len(), |e| pos + e);
        let is_last = end >= text.len() || end + 1 > c.keep;
        let l = &text[pos..end];
        let partial = (first && c.partial_head) || (is_last && c.partial_tail);
        first = false;
        if !l.trim().is_empty() {
            let parsed = if partial {
                None
            } else if too_deep(l, ctx.cfg.max_json_depth) {
                deep = deep.or(Some(line));
                None
            } else {
                serde_json::from_str::<Value>(l).ok()
            };
            match parsed {
                Some(v) => {
                    let hits = scan_value_hits(ctx, &v, l, &mut cols);
                    let child = ctx
                        .engine
                        .infer_child(hits.iter().filter_map(|h| h.hit.evidence.as_ref()));
                    let mut fs: Vec<(u64, Finding)> = hits
                        .into_iter()
                        .map(|lh| {
                            let off = c.base_offset + (pos + lh.offset.unwrap_or(0)) as u64;
                            (
                                off,
                                to_finding(&origin, lh.hit, line, off, Some(lh.field), child),
                            )
                        })
                        .collect();
                    fs.sort_by(|a, b| {
                        a.0.cmp(&b.0)
                            .then_with(|| a.1.location.field.cmp(&b.1.location.field))
                    });
                    out.extend(fs.into_iter().map(|(_, f)| f));
                }
                None => {
                    let piece_end = if is_last { c.text.len() } else { end };
                    let keep = c.base_offset + c.keep as u64;
                    let before = out.len();
                    scan_chunk(
                        ctx.engine,
                        &origin,
                        &text[pos..piece_end],
                        line,
                        c.base_offset + pos as u64,
                        out,
                    );
                    retain_from(out, before, |f| f.location.byte_offset.unwrap_or(0) < keep);
                }
            }
        }
        pos = end + 1;
        line += 1;
    }
    deep
}

fn retain_from(out: &mut Vec<Finding>, from: usize, keep: impl Fn(&Finding) -> bool) {
    let mut i = from;
    while i < out.len() {
        if keep(&out[i]) {
            i += 1;
        } else {
            out.remove(i);
        }
    }
}

/// Scan a whole JSON document held in memory. Returns false when `text` is
/// not valid JSON (the caller then scans it as text).
pub fn scan_document(ctx: &UnitCtx<'_>, text: &str, out: &mut Vec<Finding>) -> bool {
    let Ok(v) = serde_json::from_str::<Value>(text) else {
        return false;
    };
    let origin = TextOrigin {
        target: ctx.target,
        path: ctx.path,
    };
    let mut cols = HashMap::new();
    let mut hits = scan_value_hits(ctx, &v, text, &mut cols);
    // Child inference per record group.
    let mut groups: HashMap<&str, Option<bool>> = HashMap::new();
    for g in hits
        .iter()
        .map(|h| h.group.as_str())
        .collect::<std::collections::BTreeSet<_>>()
    {
        let ev = hits
            .iter()
            .filter(|h| h.group == g)
            .filter_map(|h| h.hit.evidence.as_ref());
        groups.insert(g, ctx.engine.infer_child(ev));
    }
    let groups: HashMap<String, Option<bool>> = groups
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    hits.sort_by(|a, b| {
        a.offset
            .unwrap_or(0)
            .cmp(&b.offset.unwrap_or(0))
            .then_with(|| a.field.cmp(&b.field))
    });
    let bytes = text.as_bytes();
    let mut line = 1u64;
    let mut pos = 0usize;
    for lh in hits {
        let off = lh.offset.unwrap_or(0);
        line += memchr::memchr_iter(b'\n', &bytes[pos..off.max(pos)]).count() as u64;
        pos = off.max(pos);
        let child = groups.get(&lh.group).copied().flatten();
        out.push(to_finding(
            &origin,
            lh.hit,
            line,
            off as u64,
            Some(lh.field),
            child,
        ));
    }
    true
}
