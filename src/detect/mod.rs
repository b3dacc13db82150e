//! The detector engine (the "matcher" of the pipeline): compiled once from
//! the rule packs, it finds every candidate in a chunk of text or a table
//! value in one pass, validates it, scores it in context and attaches the
//! age evidence used for child inference.
//!
//! Callers (the text and table searchers in [`crate::scan`]) see only
//! [`Engine`], [`Hit`], [`ColumnCtx`] and [`AgeEvidence`].
//!
//! How a chunk is scanned (no per-rule re-scan of the text):
//! 1. one aho-corasick pass (DFA, leftmost-longest, ASCII case-insensitive)
//!    over every keyword, context word and trigger literal of every rule;
//! 2. one hand-written pass over ASCII alphanumeric runs: digit runs (and
//!    their spaced/hyphenated printed forms) become ID, mobile, landline,
//!    bank card, date and age candidates; letter+digit runs become passport,
//!    permit and student-register candidates; anything inside a longer
//!    alphanumeric run is never a match;
//! 3. the triggers of pass 1 (school suffixes, 岁, grades, 号, keywords,
//!    guardian and name context words) are expanded in place;
//! 4. `@` found with memchr gives e-mail candidates.
//!
//! Validators (MOD 11-2, region table, dates not after `as_of`, Luhn, number
//! segments) run on candidates only; context words are looked up in the
//! sorted match list of pass 1 within a window that never crosses a newline.

use crate::finding::{Category, Sensitivity};
use crate::fingerprint::{mask_keep, Fingerprinter, Fp};
use aho_corasick::MatchKind;
use chrono::{Datelike, NaiveDate};
use regex::{Regex, RegexSet};
use std::cell::Cell;
use std::collections::HashMap;
use std::path::PathBuf;

thread_local! {
    /// False while [`Engine::scan_value_counted`] runs on this thread: hits
    /// then carry no fingerprint and no mask (the HMAC is most of a hit's
    /// cost, the mask's allocation much of the rest).
    static FINGERPRINTS: Cell<bool> = const { Cell::new(true) };
}

pub mod pack;
mod scanner;
pub mod validate;

/// Errors building the engine from rule packs.
#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    #[error("rule pack {path}: {message}")]
    Pack { path: String, message: String },
    #[error("rule `{rule}`: {message}")]
    Rule { rule: String, message: String },
}

/// How the engine is built.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Reference date for ages (`--as-of`).
    pub as_of: NaiveDate,
    /// A person younger than this many years at `as_of` is a child (CAC Order No. 4 Art. 2: 14).
    pub child_age: u32,
    /// Rule packs to use instead of the embedded ones (`--detectors DIR`).
    pub detectors_dir: Option<PathBuf>,
}

impl EngineOptions {
    pub fn new(as_of: NaiveDate) -> Self {
        EngineOptions {
            as_of,
            child_age: 14,
            detectors_dir: None,
        }
    }
}

/// What a hit says about the age of the person it belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgeEvidence {
    /// A birth date (from an ID number or a birth-date value).
    BirthDate(NaiveDate),
    /// An age in years stated in the data.
    Years(u32),
    /// A grade of primary or lower secondary school: very likely a child.
    ChildGrade,
    /// A marker that by itself shows a child (e.g. 留守儿童).
    ChildMarker,
}

/// One validated match of one rule. Offsets are byte offsets into the text
/// handed to [`Engine::scan_text`] / [`Engine::scan_value`]. No raw value is
/// kept: only `masked` and `fingerprint`.
#[derive(Debug, Clone)]
pub struct Hit {
    pub start: usize,
    pub end: usize,
    pub category: Category,
    /// The rule's id (interned: a hit copies a pointer, not a reference count).
    pub rule: &'static str,
    pub sensitivity: Sensitivity,
    pub confidence: f64,
    pub masked: String,
    /// Keyed fingerprint of the normalized value (hex: [`Fp::hex`]).
    pub fingerprint: Fp,
    pub evidence: Option<AgeEvidence>,
}

/// The oldest age of a primary or secondary school student (a stated age
/// up to this one may be the age of the student a grade names).
const SCHOOL_AGE_MAX: i32 = 19;

/// The one `&'static str` of a rule id. Hits are made by the million and
/// copied between threads; a shared reference count (`Arc<str>`) made every
/// copy and drop an atomic write to one cache line that all scanning threads
/// contend for. Ids are few and short, and each distinct id is kept once for
/// the life of the process, however often packs are reloaded.
pub fn intern_rule_id(id: &str) -> &'static str {
    static IDS: std::sync::Mutex<Vec<&'static str>> = std::sync::Mutex::new(Vec::new());
    let mut ids = IDS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(&s) = ids.iter().find(|&&s| s == id) {
        return s;
    }
    let s: &'static str = Box::leak(id.to_owned().into_boxed_str());
    ids.push(s);
    s
}

/// What the engine knows about a column or JSON field from its name.
#[derive(Debug, Clone, Default)]
pub struct ColumnCtx {
    /// The column/field name as given.
    pub name: String,
    /// Categories the name hints at (e.g. `sfzh` → cn_resident_id, `csrq` → birth_date).
    pub hints: Vec<Category>,
}

/// The named built-in scanners a rule can use (`scanner = "..."` in a pack).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scanner {
    ResidentId,
    StudentId,
    Passport,
    HkMacauPermit,
    TwPermit,
    Mobile,
    Landline,
    Email,
    BankCard,
    BirthDate,
    Age,
    PersonName,
    Guardian,
    Address,
    SchoolName,
    GradeClass,
    Keywords,
    Regex,
}

impl Scanner {
    /// Every built-in scanner with its pack name.
    pub const ALL: [(&'static str, Scanner); 17] = [
        ("resident_id", Scanner::ResidentId),
        ("student_id", Scanner::StudentId),
        ("passport", Scanner::Passport),
        ("hk_macau_permit", Scanner::HkMacauPermit),
        ("tw_permit", Scanner::TwPermit),
        ("mobile", Scanner::Mobile),
        ("landline", Scanner::Landline),
        ("email", Scanner::Email),
        ("bank_card", Scanner::BankCard),
        ("birth_date", Scanner::BirthDate),
        ("age", Scanner::Age),
        ("person_name", Scanner::PersonName),
        ("guardian", Scanner::Guardian),
        ("address", Scanner::Address),
        ("school_name", Scanner::SchoolName),
        ("grade_class", Scanner::GradeClass),
        ("keywords", Scanner::Keywords),
    ];

    fn from_name(s: &str) -> Option<Scanner> {
        Scanner::ALL.iter().find(|(n, _)| *n == s).map(|(_, k)| *k)
    }
}

/// A compiled rule.
#[derive(Debug, Clone)]
pub struct Rule {
    pub id: &'static str,
    pub name: String,
    pub category: Category,
    pub sensitivity: Sensitivity,
    pub scanner: Scanner,
    /// Base confidence without context.
    pub confidence: f64,
    pub required_context: bool,
    /// Pack file the rule came from.
    pub source: String,
    pub spec: pack::RuleSpec,
    regex: Option<Regex>,
}

/// What an aho-corasick pattern means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// Context word of a rule.
    Ctx(u16),
    /// Negative context word of a rule.
    Neg(u16),
    /// A keyword finding (`keywords` scanner); `child` when it shows a child.
    Kw(u16, bool),
    /// Guardian keyword.
    Guard(u16),
    /// Built-in trigger literal.
    Trig(Trig),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Trig {
    School,
    NotSchool,
    Sui,
    /// `个月` / `月龄`: an infant's age in months.
    Months,
    Grade,
    Hao,
}

const SCHOOL_SUFFIXES: [&str; 21] = [
    "幼儿园",
    "中心校",
    // (only with a school word nearby: see `scanner::Engine::school`)
    "学校",
    "小学",
    "中学",
    "初级中学",
    "高级中学",
    "实验学校",
    "外国语学校",
    "九年一贯制学校",
    "特殊教育学校",
    "完全中学",
    "双语学校",
    "寄宿制学校",
    "附属小学",
    "附属中学",
    "培智学校",
    "聋哑学校",
    "附中",
    "附小",
    "托儿所",
];
const NOT_SCHOOL: [&str; 6] = [
    "小学生",
    "中学生",
    "幼儿园里",
    "小学校",
    "中心校区",
    "学校里",
];
const GRADE_TRIGGERS: [&str; 8] = [
    "年级",
    "初一",
    "初二",
    "初三",
    "高一",
    "高二",
    "高三",
    "学前班",
];

/// The compiled rule set. Shared read-only across threads.
pub struct Engine {
    opts: EngineOptions,
    fp: Fingerprinter,
    rules: Vec<Rule>,
    /// First rule of each built-in scanner, indexed by `Scanner as usize`.
    scanner_rule: [Option<u16>; 18],
    /// Every keyword, context word and trigger literal (leftmost-longest,
    /// ASCII case-insensitive; anchored walks: `scanner::anchored_at`).
    kw_dfa: aho_corasick::dfa::DFA,
    /// Roles per pattern id.
    roles: Vec<Vec<Role>>,
    /// Whether the pattern is ASCII-alphabetic at its start/end (needs word boundaries).
    ascii_word: Vec<bool>,
    /// Whether the pattern has any context role (for "nearest context word").
    is_context: Vec<bool>,
    hint_set: RegexSet,
    hint_cat: Vec<Category>,
    /// Bitmap over the low 16 bits of 3-byte first characters of patterns.
    first_cjk: Vec<u64>,
    /// ASCII first bytes of patterns (both cases).
    first_ascii: [bool; 256],
    /// Whether every pattern starts with a character the bitmaps cover.
    anchored_ok: bool,
    /// Whether the block-mask pass may replace the byte loop: no pattern
    /// that starts with a CJK character holds an ASCII letter or digit (a
    /// match of one would end inside an alphanumeric run, where the byte
    /// loop resumes and starts a run of its own).
    mask_loop_ok: bool,
    /// Bitmap over [`pair_hash`] of the first two characters of every
    /// pattern (ASCII lowercased): the automaton runs only where one of them
    /// may start. Patterns of a single character are in `single`.
    pair: Vec<u64>,
    /// The same over the patterns of exactly two characters: where one may
    /// start, the automaton runs without looking at a third character.
    pair_only: Vec<u64>,
    /// Bitmap over [`triple_hash`] of the first three characters of the
    /// longer patterns: in logs most word starts share their first two
    /// letters with some keyword (`st`atus/`st`udent, `pa`th/`pa`rent) and
    /// the automaton walk this saves costs ~120 instructions.
    triple: Vec<u64>,
    /// Bitmap over the low 16 bits of single-character patterns (岁, 号).
    single: Vec<u64>,
    /// The keyword patterns (lowercased), by pattern id: the prefilter test
    /// embeds every one in text and checks that the pass finds it.
    #[cfg_attr(not(test), allow(dead_code))]
    kw_pats: Vec<String>,
    regions: validate::Regions,
    regex_rules: Vec<u16>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("rules", &self.rules.len())
            .finish()
    }
}

impl Engine {
    pub fn new(opts: EngineOptions, fp: Fingerprinter) -> Result<Self, DetectError> {
        let (packs, regions_text) = pack::load(opts.detectors_dir.as_deref())?;
        let regions =
            validate::Regions::parse(&regions_text).map_err(|message| DetectError::Pack {
                path: "regions.tsv".into(),
                message,
            })?;
        let mut rules: Vec<Rule> = Vec::new();
        for p in &packs {
            for spec in &p.file.rule {
                if rules.iter().any(|r| r.id == spec.id.as_str()) {
                    return Err(DetectError::Rule {
                        rule: spec.id.clone(),
                        message: "duplicate rule id".into(),
                    });
                }
                let rerr = |message: String| DetectError::Rule {
                    rule: spec.id.clone(),
                    message,
                };
                let (scanner, regex) = match (&spec.scanner, &spec.regex) {
                    (Some(s), None) => (
                        Scanner::from_name(s).ok_or_else(|| {
                            rerr(format!(
                                "unknown scanner `{s}` (known: {})",
                                Scanner::ALL
                                    .iter()
                                    .map(|x| x.0)
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ))
                        })?,
                        None,
                    ),
                    (None, Some(re)) => (
                        Scanner::Regex,
                        Some(Regex::new(re).map_err(|e| rerr(format!("regex: {e}")))?),
                    ),
                    _ => {
                        return Err(rerr(
                            "exactly one of `scanner` or `regex` is required".into(),
                        ))
                    }
                };
                let confidence = spec.confidence.unwrap_or(0.8);
                if !(0.0..=1.0).contains(&confidence) {
                    return Err(rerr("confidence must be within 0..1".into()));
                }
                rules.push(Rule {
                    id: intern_rule_id(&spec.id),
                    name: spec.name.clone(),
                    category: spec.category,
                    sensitivity: spec.sensitivity,
                    scanner,
                    confidence,
                    required_context: spec.required_context,
                    source: p.source.clone(),
                    spec: spec.clone(),
                    regex,
                });
            }
        }
        if rules.len() > u16::MAX as usize {
            return Err(DetectError::Pack {
                path: "rule packs".into(),
                message: "too many rules".into(),
            });
        }
        let mut scanner_rule: [Option<u16>; 18] = [None; 18];
        let mut regex_rules = Vec::new();
        for (i, r) in rules.iter().enumerate() {
            scanner_rule[r.scanner as usize].get_or_insert(i as u16);
            if r.scanner == Scanner::Regex {
                regex_rules.push(i as u16);
            }
        }

        // Patterns of the one aho-corasick pass.
        let mut index: HashMap<String, usize> = HashMap::new();
        let mut pats: Vec<String> = Vec::new();
        let mut roles: Vec<Vec<Role>> = Vec::new();
        let mut add = |p: &str, role: Role| {
            let key = p.to_lowercase();
            if key.is_empty() {
                return;
            }
            let id = *index.entry(key.clone()).or_insert_with(|| {
                pats.push(key.clone());
                roles.push(Vec::new());
                pats.len() - 1
            });
            if !roles[id].contains(&role) {
                roles[id].push(role);
            }
        };
        for (i, r) in rules.iter().enumerate() {
            let i = i as u16;
            for c in &r.spec.context {
                add(c, Role::Ctx(i));
            }
            for c in &r.spec.negative_context {
                add(c, Role::Neg(i));
            }
            match r.scanner {
                Scanner::Keywords => {
                    for k in &r.spec.keywords {
                        let child = k.ends_with('!');
                        add(k.trim_end_matches('!'), Role::Kw(i, child));
                    }
                }
                Scanner::Guardian => {
                    for k in &r.spec.keywords {
                        add(k, Role::Guard(i));
                    }
                }
                Scanner::SchoolName => {
                    for s in SCHOOL_SUFFIXES {
                        add(s, Role::Trig(Trig::School));
                    }
                    for s in NOT_SCHOOL {
                        add(s, Role::Trig(Trig::NotSchool));
                    }
                }
                Scanner::Age => {
                    add("岁", Role::Trig(Trig::Sui));
                    add("周岁", Role::Trig(Trig::Sui));
                    add("个月", Role::Trig(Trig::Months));
                    add("月龄", Role::Trig(Trig::Months));
                }
                Scanner::GradeClass => {
                    for s in GRADE_TRIGGERS {
                        add(s, Role::Trig(Trig::Grade));
                    }
                }
                Scanner::Address => add("号", Role::Trig(Trig::Hao)),
                _ => {}
            }
        }
        let ascii_word = pats
            .iter()
            .map(|p| {
                let b = p.as_bytes();
                b[0].is_ascii_alphabetic() || b[b.len() - 1].is_ascii_alphabetic()
            })
            .collect();
        let is_context = roles
            .iter()
            .map(|rs| rs.iter().any(|r| matches!(r, Role::Ctx(_) | Role::Neg(_))))
            .collect();
        // First characters of the patterns: the one pass over the text tests
        // a bitmap per character and runs the automaton anchored only where
        // a pattern can start (CJK code points fit 16 bits; ASCII patterns
        // only at word starts). Any other first character: plain search.
        let mut first_cjk = vec![0u64; 65536 / 64];
        let mut first_ascii = [false; 256];
        let mut anchored_ok = true;
        for p in &pats {
            let c = p.chars().next().unwrap_or(' ');
            if c.is_ascii_alphabetic() {
                first_ascii[c.to_ascii_lowercase() as usize] = true;
                first_ascii[c.to_ascii_uppercase() as usize] = true;
            } else if c.len_utf8() == 3 {
                let cp = c as u32 & 0xFFFF;
                first_cjk[cp as usize / 64] |= 1 << (cp % 64);
            } else {
                anchored_ok = false;
            }
        }
        let mask_loop_ok = anchored_ok
            && pats.iter().all(|p| {
                p.starts_with(|c: char| c.is_ascii_alphabetic())
                    || !p.bytes().any(|c| c.is_ascii_alphanumeric())
            });
        let mut pair = vec![0u64; 65536 / 64];
        let mut pair_only = vec![0u64; 65536 / 64];
        let mut triple = vec![0u64; 65536 / 64];
        let mut single = vec![0u64; 65536 / 64];
        for p in &pats {
            let mut cs = p.chars().map(|c| c.to_ascii_lowercase());
            let c1 = cs.next().unwrap_or(' ') as u32;
            match cs.next() {
                Some(c2) => {
                    let h = pair_hash(c1, c2 as u32);
                    pair[h / 64] |= 1 << (h % 64);
                    match cs.next() {
                        Some(c3) => {
                            let h = triple_hash(c1, c2 as u32, c3 as u32);
                            triple[h / 64] |= 1 << (h % 64);
                        }
                        None => pair_only[h / 64] |= 1 << (h % 64),
                    }
                }
                None => {
                    let h = (c1 & 0xFFFF) as usize;
                    single[h / 64] |= 1 << (h % 64);
                }
            }
        }
        // One DFA for every keyword: the single pass tries it anchored at
        // the few positions where a keyword may start, walking its table
        // directly (a generic `find` call's setup cost several times the
        // walk); packs whose keywords defeat that pass search it unanchored.
        let kw_dfa = aho_corasick::dfa::Builder::new()
            .match_kind(MatchKind::LeftmostLongest)
            .ascii_case_insensitive(true)
            .start_kind(aho_corasick::StartKind::Both)
            .build(&pats)
            .map_err(|e| DetectError::Pack {
                path: "rule packs".into(),
                message: format!("keyword automaton: {e}"),
            })?;

        let mut hint_pats = Vec::new();
        let mut hint_cat = Vec::new();
        for r in &rules {
            for h in &r.spec.column_hints {
                Regex::new(h).map_err(|e| DetectError::Rule {
                    rule: r.id.to_string(),
                    message: format!("column hint: {e}"),
                })?;
                hint_pats.push(h.clone());
                hint_cat.push(r.category);
            }
        }
        let hint_set = RegexSet::new(&hint_pats).map_err(|e| DetectError::Pack {
            path: "rule packs".into(),
            message: format!("column hints: {e}"),
        })?;
        Ok(Engine {
            opts,
            fp,
            rules,
            scanner_rule,
            kw_dfa,
            roles,
            ascii_word,
            is_context,
            hint_set,
            hint_cat,
            first_cjk,
            first_ascii,
            anchored_ok,
            mask_loop_ok,
            pair,
            pair_only,
            triple,
            single,
            kw_pats: pats,
            regions,
            regex_rules,
        })
    }

    pub fn options(&self) -> &EngineOptions {
        &self.opts
    }

    pub fn fingerprinter(&self) -> &Fingerprinter {
        &self.fp
    }

    /// The compiled rules, in pack order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Number of administrative division codes loaded.
    pub fn region_count(&self) -> usize {
        self.regions.len()
    }

    /// Find every hit in free text (one or many lines). Appends to `out`.
    ///
    /// Full-width digits and letters (０-９, Ａ-Ｚ, common in Chinese
    /// documents and OCR output) are folded to ASCII before matching, so a
    /// full-width ID, phone, date or age is found, validated and
    /// fingerprinted like its ASCII form; the hit offsets still refer to
    /// `text`.
    pub fn scan_text(&self, text: &str, out: &mut Vec<Hit>) {
        let base = out.len();
        match fold_fullwidth(text) {
            None => {
                self.scan_impl(text, &[], out);
                finish(out, base);
            }
            Some((folded, at)) => {
                self.scan_impl(&folded, &[], out);
                finish(out, base);
                remap(out, base, &at);
            }
        }
    }

    /// Find hits in one table cell or JSON value, using the column's hints.
    pub fn scan_value(&self, value: &str, column: &ColumnCtx, out: &mut Vec<Hit>) {
        let base = out.len();
        let folded = fold_fullwidth(value);
        let v = folded.as_ref().map_or(value, |(f, _)| f.as_str());
        self.scan_impl(v, &column.hints, out);
        if !column.hints.is_empty() {
            self.scan_hinted_value(v, column, base, out);
        }
        finish(out, base);
        if let Some((_, map)) = &folded {
            remap(out, base, map);
        }
    }

    /// [`Engine::scan_value`] for callers that count hits and take the
    /// identity (mask, fingerprint) of only a few of them: the hits are the
    /// same, in the same order, but `fingerprint` and `masked` are empty. Such a caller
    /// scans the value again with [`Engine::scan_value`] for a hit whose
    /// fingerprint it keeps (see [`crate::scan::table::TableScanner`]).
    pub fn scan_value_counted(&self, value: &str, column: &ColumnCtx, out: &mut Vec<Hit>) {
        struct Restore;
        impl Drop for Restore {
            fn drop(&mut self) {
                FINGERPRINTS.with(|f| f.set(true));
            }
        }
        FINGERPRINTS.with(|f| f.set(false));
        let _restore = Restore;
        self.scan_value(value, column, out);
    }

    /// Hints from a column or field name (a JSON key path uses its last
    /// segment). Names are normalized: camelCase split with `_`, lowercase.
    pub fn column_ctx(&self, name: &str) -> ColumnCtx {
        let norm = normalize_column(name);
        let mut hints = Vec::new();
        // A key path under a guardian object (guardian.name, parent.phone) is the guardian's.
        let lower = name.to_ascii_lowercase();
        if name.contains('.') {
            let parent = &lower[..lower.rfind('.').unwrap_or(0)];
            if [
                "guardian",
                "parent",
                "jhr",
                "father",
                "mother",
                "监护人",
                "家长",
            ]
            .iter()
            .any(|k| parent.contains(k))
            {
                hints.push(Category::Guardian);
            }
        }
        for i in self.hint_set.matches(&norm).iter() {
            let c = self.hint_cat[i];
            if !hints.contains(&c) {
                hints.push(c);
            }
        }
        ColumnCtx {
            name: name.to_string(),
            hints,
        }
    }

    /// Child inference over the evidence of one line or row: a child signal
    /// wins (the data then holds a child's PI); else an adult signal gives
    /// `Some(false)`; else unknown.
    ///
    /// A school grade is the weakest signal: it gives way when the same
    /// line or row states an age of a school student that is not a child's
    /// (`初三学生，14岁`: the grade's student is that age). An adult's age
    /// no student has (a parent's 45岁) leaves the grade's child standing.
    pub fn infer_child<'a>(
        &self,
        evidence: impl IntoIterator<Item = &'a AgeEvidence>,
    ) -> Option<bool> {
        let (mut adult, mut grade, mut student_age) = (false, false, false);
        for e in evidence {
            if matches!(e, AgeEvidence::ChildGrade) {
                grade = true;
                continue;
            }
            match self.is_child(e) {
                Some(true) => return Some(true),
                Some(false) => {
                    adult = true;
                    student_age |= self.age_of(e).is_some_and(|a| a <= SCHOOL_AGE_MAX);
                }
                None => {}
            }
        }
        if grade && !student_age {
            return Some(true);
        }
        adult.then_some(false)
    }

    /// Age in whole years at `as_of` that a piece of evidence states.
    fn age_of(&self, e: &AgeEvidence) -> Option<i32> {
        match *e {
            AgeEvidence::BirthDate(b) => age_at(b, self.opts.as_of),
            AgeEvidence::Years(y) => Some(y as i32),
            AgeEvidence::ChildGrade | AgeEvidence::ChildMarker => None,
        }
    }

    /// Whether one piece of evidence shows a child at `as_of`.
    pub fn is_child(&self, e: &AgeEvidence) -> Option<bool> {
        match *e {
            AgeEvidence::BirthDate(b) => {
                Some(age_at(b, self.opts.as_of)? < self.opts.child_age as i32)
            }
            AgeEvidence::Years(y) => Some(y < self.opts.child_age),
            AgeEvidence::ChildGrade | AgeEvidence::ChildMarker => Some(true),
        }
    }

    fn rule_for(&self, s: Scanner) -> Option<u16> {
        self.scanner_rule[s as usize]
    }

    #[allow(clippy::too_many_arguments)]
    /// Emit a whole cell/field value (`v` at `off`) as one hit: the value is
    /// both what is fingerprinted and what is masked.
    #[allow(clippy::too_many_arguments)]
    fn emit_value(
        &self,
        out: &mut Vec<Hit>,
        rule: u16,
        cat: Category,
        off: usize,
        v: &str,
        confidence: f64,
        evidence: Option<AgeEvidence>,
    ) {
        self.emit(
            out,
            rule,
            off,
            off + v.len(),
            confidence,
            v,
            self.mask(cat, v),
            evidence,
        );
    }

    fn emit(
        &self,
        out: &mut Vec<Hit>,
        rule: u16,
        start: usize,
        end: usize,
        confidence: f64,
        normalized: &str,
        masked: String,
        evidence: Option<AgeEvidence>,
    ) {
        let r = &self.rules[rule as usize];
        out.push(Hit {
            start,
            end,
            category: r.category,
            rule: r.id,
            sensitivity: r.sensitivity,
            confidence: confidence.clamp(0.0, 1.0),
            masked,
            fingerprint: if FINGERPRINTS.with(Cell::get) {
                Fp::new(self.fp.digest(normalized))
            } else {
                Fp::NONE
            },
            evidence,
        });
    }

    /// Report the value of hit `of` again as a hit of `rule`: its span, mask
    /// and fingerprint (a guardian's phone is that phone's hit under the
    /// guardian rule).
    fn emit_same_value(&self, out: &mut Vec<Hit>, of: usize, rule: u16, confidence: f64) {
        let r = &self.rules[rule as usize];
        let h = &out[of];
        let hit = Hit {
            start: h.start,
            end: h.end,
            category: r.category,
            rule: r.id,
            sensitivity: r.sensitivity,
            confidence: confidence.clamp(0.0, 1.0),
            masked: h.masked.clone(),
            fingerprint: h.fingerprint,
            evidence: None,
        };
        out.push(hit);
    }

    /// Mask for a value of a category (never the raw value).
    fn mask(&self, cat: Category, norm: &str) -> String {
        if !FINGERPRINTS.with(Cell::get) {
            return String::new();
        }
        match cat {
            Category::CnResidentId => mask_ascii(norm, 6, 4),
            Category::CnMobile => mask_ascii(norm, 3, 4),
            Category::StudentId => mask_ascii(norm, 7, 4),
            Category::CnLandline => mask_ascii(norm, 4, 2),
            Category::BankCard => mask_ascii(norm, 4, 4),
            Category::CnPassport | Category::HkMacauPermit | Category::TwPermit => {
                mask_keep(norm, 1, 2)
            }
            Category::BirthDate => {
                // keep the year only
                let mut s: String = norm.chars().take(4).collect();
                s.push_str("-**-**");
                s
            }
            Category::Age => norm
                .chars()
                .map(|c| {
                    if c.is_ascii_digit() || validate::is_cn_numeral(c) {
                        '*'
                    } else {
                        c
                    }
                })
                .collect(),
            Category::Email => {
                let (local, domain) = norm.split_once('@').unwrap_or((norm, ""));
                let tld = domain.rsplit('.').next().unwrap_or("");
                format!("{}***@***.{}", local.chars().next().unwrap_or('*'), tld)
            }
            _ => {
                let mut out = String::with_capacity(norm.len());
                let mut cs = norm.chars();
                if let Some(c) = cs.next() {
                    out.push(c);
                }
                for _ in cs {
                    out.push('*');
                }
                out
            }
        }
    }

    /// A date at byte `p` of a hinted value (YYYY-MM-DD, YYYY/M/D, YYYY.MM.DD,
    /// YYYY年M月D日, YYYYMMDD, optionally followed by a time).
    fn scan_hinted_value(&self, value: &str, col: &ColumnCtx, base: usize, out: &mut Vec<Hit>) {
        let v = value.trim();
        if v.is_empty() {
            return;
        }
        let off = value.len() - value.trim_start().len();
        // Only the grade and flag columns look at the normalized name.
        let norm_col = || normalize_column(&col.name);
        for &cat in &col.hints {
            if out[base..].iter().any(|h| h.category == cat) {
                continue;
            }
            match cat {
                Category::BirthDate => {
                    let Some(rule) = self.rule_for(Scanner::BirthDate) else {
                        continue;
                    };
                    if let Some((end, d)) = scanner::parse_date(v.as_bytes(), 0) {
                        let rest = &v[end..];
                        let time_ok = rest.is_empty()
                            || rest.starts_with(' ')
                                && rest[1..]
                                    .bytes()
                                    .all(|c| c.is_ascii_digit() || c == b':' || c == b'.')
                            || rest.starts_with('T');
                        if time_ok && d <= self.opts.as_of && d.year() >= 1900 {
                            let norm = iso_date(d);
                            self.emit(
                                out,
                                rule,
                                off,
                                off + end,
                                0.9,
                                &norm,
                                self.mask(cat, &norm),
                                Some(AgeEvidence::BirthDate(d)),
                            );
                        }
                    }
                }
                Category::Age => {
                    let Some(rule) = self.rule_for(Scanner::Age) else {
                        continue;
                    };
                    let num = v.trim_end_matches("周岁").trim_end_matches('岁').trim();
                    let years = validate::parse_u32(num.as_bytes())
                        .or_else(|| validate::chinese_numeral(num));
                    if let Some(y) = years.filter(|y| *y <= 120) {
                        let norm = format!("{y}");
                        self.emit(
                            out,
                            rule,
                            off,
                            off + v.len(),
                            0.9,
                            &norm,
                            self.mask(cat, v),
                            Some(AgeEvidence::Years(y)),
                        );
                    }
                }
                Category::PersonName | Category::Guardian => {
                    let scanner_kind = if cat == Category::PersonName {
                        Scanner::PersonName
                    } else {
                        Scanner::Guardian
                    };
                    let Some(rule) = self.rule_for(scanner_kind) else {
                        continue;
                    };
                    // A guardian column of phone numbers (jhrdh, parent_phone):
                    // the phone found in the value is the guardian's.
                    if cat == Category::Guardian {
                        let phone = out[base..].iter().position(|h| {
                            matches!(h.category, Category::CnMobile | Category::CnLandline)
                        });
                        if let Some(j) = phone {
                            let conf = self.rules[rule as usize].confidence + 0.1;
                            self.emit_same_value(out, base + j, rule, conf);
                            continue;
                        }
                    }
                    // The column says it holds names: no context word is
                    // needed. A name on the surname list is near-certain; a
                    // rarer surname still counts unless the value is a
                    // placeholder or an ordinary word. Aligned tables space
                    // two-character names (张　伟).
                    let spaced = |c: char| matches!(c, ' ' | '\u{3000}');
                    let compact: std::borrow::Cow<str> = if v.contains(spaced) {
                        v.chars().filter(|c| !spaced(*c)).collect::<String>().into()
                    } else {
                        v.into()
                    };
                    let name_shape = scanner::is_name_value(&compact);
                    let pinyin = !name_shape && scanner::is_pinyin_name(v);
                    let compact = if pinyin { v.into() } else { compact };
                    let conf = if pinyin {
                        Some(0.7)
                    } else if scanner::is_name_placeholder(&compact) {
                        None
                    } else if name_shape {
                        if scanner::starts_with_surname(&compact) || compact.contains('·') {
                            Some(0.9)
                        } else {
                            (!scanner::not_a_name(&compact)).then_some(0.75)
                        }
                    } else {
                        None
                    };
                    if let Some(conf) = conf {
                        self.emit(
                            out,
                            rule,
                            off,
                            off + v.len(),
                            conf,
                            &compact,
                            self.mask(cat, &compact),
                            None,
                        );
                    }
                }
                Category::SchoolName => {
                    let Some(rule) = self.rule_for(Scanner::SchoolName) else {
                        continue;
                    };
                    let n = v.chars().count();
                    if (4..=40).contains(&n)
                        && v.chars().filter(|c| scanner::is_cjk(*c)).count() * 2 >= n
                    {
                        self.emit_value(out, rule, cat, off, v, 0.75, None);
                    }
                }
                Category::GradeClass => {
                    let Some(rule) = self.rule_for(Scanner::GradeClass) else {
                        continue;
                    };
                    let norm_col = norm_col();
                    let grade_col = ["nj", "grade", "nianji"]
                        .iter()
                        .any(|k| norm_col.contains(k));
                    if let Some(g) = validate::parse_u32(v.as_bytes()) {
                        if (1..=12).contains(&g) {
                            let ev = (grade_col && g <= 9).then_some(AgeEvidence::ChildGrade);
                            self.emit_value(out, rule, cat, off, v, 0.7, ev);
                        }
                    } else if v.ends_with('班') && v.chars().count() <= 8 {
                        self.emit_value(out, rule, cat, off, v, 0.75, None);
                    }
                }
                Category::StudentId => {
                    let Some(rule) = self.rule_for(Scanner::StudentId) else {
                        continue;
                    };
                    if (6..=24).contains(&v.len())
                        && v.bytes().all(|c| c.is_ascii_alphanumeric())
                        && v.bytes().any(|c| c.is_ascii_digit())
                    {
                        let norm = v.to_ascii_uppercase();
                        let ev = if norm.len() == 19 {
                            validate::resident_id_18_bytes(&norm.as_bytes()[1..])
                                .map(AgeEvidence::BirthDate)
                        } else {
                            None
                        };
                        self.emit(
                            out,
                            rule,
                            off,
                            off + v.len(),
                            0.75,
                            &norm,
                            self.mask(cat, &norm),
                            ev,
                        );
                    }
                }
                Category::Address => {
                    let Some(rule) = self.rule_for(Scanner::Address) else {
                        continue;
                    };
                    let n = v.chars().count();
                    if n >= 6
                        && v.chars()
                            .any(|c| scanner::one_of("省市区县镇乡村路街道巷号弄", c))
                    {
                        self.emit_value(out, rule, cat, off, v, 0.75, None);
                    }
                }
                Category::VulnerableChild => {
                    let Some(rule) = self.rule_for(Scanner::Keywords) else {
                        continue;
                    };
                    let truthy = matches!(
                        v.to_ascii_lowercase().as_str(),
                        "是" | "1" | "y" | "yes" | "true" | "t"
                    );
                    if truthy {
                        let norm_col = norm_col();
                        let child_col = ["sfle", "sfgr", "lset", "knet", "orphan", "left_behind"]
                            .iter()
                            .any(|k| norm_col.contains(k));
                        let norm = format!("{}={}", norm_col, v);
                        self.emit(
                            out,
                            rule,
                            off,
                            off + v.len(),
                            0.85,
                            &norm,
                            "*".into(),
                            child_col.then_some(AgeEvidence::ChildMarker),
                        );
                    }
                }
                _ => {}
            }
        }
    }
}

/// The ASCII character a full-width form (U+FF01..U+FF5E, UTF-8 `EF BC xx` /
/// `EF BD xx`) stands for, for the forms folded before matching: digits,
/// letters and `- / . + = @`. Chinese punctuation (：，（）) is kept.
#[inline]
fn fullwidth_ascii(b1: u8, b2: u8) -> Option<u8> {
    let cp = match b1 {
        0xBC if (0x80..=0xBF).contains(&b2) => 0xFF00 + (b2 as u32 - 0x80),
        0xBD if (0x80..=0x9E).contains(&b2) => 0xFF40 + (b2 as u32 - 0x80),
        _ => return None,
    };
    let a = (cp - 0xFF00 + 0x20) as u8;
    (a.is_ascii_alphanumeric() || matches!(a, b'-' | b'/' | b'.' | b'+' | b'=' | b'@')).then_some(a)
}

/// Texts shorter than this (table cells, JSON fields) take the short paths:
/// byte loops without memchr's per-call setup.
pub(crate) const SHORT: usize = 256;

/// Whether `b` holds byte `x`; for short slices (no early exit, so the
/// compiler vectorizes it; memchr's setup costs more than the loop).
#[inline]
pub(crate) fn has_byte(b: &[u8], x: u8) -> bool {
    b.iter().fold(false, |a, &c| a | (c == x))
}

/// Fold full-width digits and letters to ASCII. `None` when the text has
/// none (the common case: one memchr pass). Otherwise the folded text and
/// the folded offsets of the folded characters, in order: each one is 2
/// bytes shorter than the original (3-byte UTF-8 → ASCII), see [`remap`].
pub(crate) fn fold_fullwidth(text: &str) -> Option<(String, Vec<u32>)> {
    let b = text.as_bytes();
    // Table cells are short: a branch-free pass beats memchr's setup.
    if b.len() < SHORT && !has_byte(b, 0xEF) {
        return None;
    }
    let mut next = Some(first_fullwidth(b, 0)?);
    let mut out = String::with_capacity(b.len());
    let mut at: Vec<u32> = Vec::new();
    let mut copied = 0;
    while let Some((p, a)) = next {
        // A folded form at p (both ends of every copy are char boundaries).
        out.push_str(&text[copied..p]);
        at.push(out.len() as u32);
        out.push(a as char);
        copied = p + 3;
        next = first_fullwidth(b, copied);
    }
    out.push_str(&text[copied..]);
    Some((out, at))
}

/// The first full-width form [`fold_fullwidth`] folds at or after `from`,
/// with the ASCII character it stands for. Chinese text is
/// full of `EF`-led punctuation (：，（）) that is not folded: the lead
/// bytes are found 16 at a time (SSE2) and checked in place, without a
/// memchr call per punctuation mark.
fn first_fullwidth(b: &[u8], from: usize) -> Option<(usize, u8)> {
    let folds = |p: usize| {
        if p + 2 < b.len() {
            fullwidth_ascii(b[p + 1], b[p + 2]).map(|a| (p, a))
        } else {
            None
        }
    };
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::*;
        let mut i = from;
        while i + 16 <= b.len() {
            // SAFETY: SSE2 is part of the x86-64 baseline; 16 bytes in bounds.
            let mut m = unsafe {
                let x = _mm_loadu_si128(b.as_ptr().add(i) as *const __m128i);
                _mm_movemask_epi8(_mm_cmpeq_epi8(x, _mm_set1_epi8(0xEFu8 as i8))) as u32
            };
            while m != 0 {
                if let Some(f) = folds(i + m.trailing_zeros() as usize) {
                    return Some(f);
                }
                m &= m - 1;
            }
            i += 16;
        }
        (i..b.len()).filter(|&p| b[p] == 0xEF).find_map(folds)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        memchr::memchr_iter(0xEF, &b[from..]).find_map(|p| folds(from + p))
    }
}

/// Map the offsets of the hits appended since `base` from folded text back
/// to the original. The hits are sorted by start ([`finish`]) and the map is
/// strictly increasing, so one forward walk of `at` serves every start; an
/// end is searched only in the part of `at` after its start.
fn remap(out: &mut [Hit], base: usize, at: &[u32]) {
    let mut k = 0; // folded characters before the current start
    for h in &mut out[base..] {
        while k < at.len() && (at[k] as usize) < h.start {
            k += 1;
        }
        let ke = k + at[k..].partition_point(|&f| (f as usize) < h.end);
        h.start += 2 * k;
        h.end += 2 * ke;
    }
}

/// Bucket of the first two characters of a keyword (ASCII lowercased) in
/// the 65,536-bit prefilter of the keyword pass.
#[inline]
pub(crate) fn pair_hash(c1: u32, c2: u32) -> usize {
    (c1.wrapping_mul(0x9E37_79B1) ^ c2.wrapping_mul(0x85EB_CA6B)) as usize >> 16 & 0xFFFF
}

/// Bucket of the first three characters of a keyword (ASCII lowercased).
#[inline]
pub(crate) fn triple_hash(c1: u32, c2: u32, c3: u32) -> usize {
    (c1.wrapping_mul(0x9E37_79B1) ^ c2.wrapping_mul(0x85EB_CA6B) ^ c3.wrapping_mul(0xC2B2_AE35))
        .wrapping_mul(0x2768_4E2D) as usize
        >> 16
        & 0xFFFF
}

/// Sort the hits appended since `base` by (start, end, category), stably,
/// and drop exact duplicates (the first of equal keys stays). The passes
/// append in a few sorted runs (tokens, then triggers, ...); a hit is ~120
/// bytes, so the keys are sorted with their indexes and each hit is moved
/// once, instead of moving hits at every merge.
fn finish(out: &mut Vec<Hit>, base: usize) {
    let key = |h: &Hit| (h.start, h.end, h.category);
    let n = out.len() - base;
    if n < 2 {
        return;
    }
    let tail = &out[base..];
    if tail.windows(2).all(|w| key(&w[0]) <= key(&w[1])) {
        let mut w = base + 1;
        for r in base + 1..out.len() {
            if key(&out[r]) != key(&out[w - 1]) {
                // (no copy while no duplicate has been dropped)
                if w != r {
                    out.swap(w, r);
                }
                w += 1;
            }
        }
        out.truncate(w);
        return;
    }
    // The index is part of the key (a stable order); the stable sort finds
    // the passes' sorted runs and merges them.
    let mut order: Vec<(usize, usize, Category, u32)> = tail
        .iter()
        .enumerate()
        .map(|(i, h)| (h.start, h.end, h.category, i as u32))
        .collect();
    order.sort();
    let mut slots: Vec<Option<Hit>> = out.drain(base..).map(Some).collect();
    let mut last = None;
    for (s, e, c, i) in order {
        if last == Some((s, e, c)) {
            continue;
        }
        last = Some((s, e, c));
        if let Some(h) = slots[i as usize].take() {
            out.push(h);
        }
    }
}

/// `YYYY-MM-DD` of a date (years 0..=9999), without chrono's format-string
/// machinery (one birth-date hit = one call).
pub(crate) fn iso_date(d: NaiveDate) -> String {
    let (y, m, day) = (d.year().clamp(0, 9999) as u32, d.month(), d.day());
    let v = [
        b'0' + (y / 1000) as u8,
        b'0' + (y / 100 % 10) as u8,
        b'0' + (y / 10 % 10) as u8,
        b'0' + (y % 10) as u8,
        b'-',
        b'0' + (m / 10) as u8,
        b'0' + (m % 10) as u8,
        b'-',
        b'0' + (day / 10) as u8,
        b'0' + (day % 10) as u8,
    ];
    String::from_utf8(v.to_vec()).unwrap_or_default()
}

/// Mask an ASCII identifier keeping `ks` leading and `ke` trailing characters.
fn mask_ascii(norm: &str, ks: usize, ke: usize) -> String {
    let b = norm.as_bytes();
    if !norm.is_ascii() || ks + ke >= b.len() {
        return mask_keep(norm, ks, ke);
    }
    let mut v = Vec::with_capacity(b.len());
    v.extend_from_slice(&b[..ks]);
    for &c in &b[ks..b.len() - ke] {
        v.push(if c == b' ' || c == b'-' { c } else { b'*' });
    }
    v.extend_from_slice(&b[b.len() - ke..]);
    String::from_utf8(v).unwrap_or_default()
}

/// Normalize a column/field name for hint matching: last segment of a key
/// path, `[n]` indices removed, camelCase split with `_`, lowercase.
pub fn normalize_column(name: &str) -> String {
    let last = name.rsplit('.').next().unwrap_or(name);
    let last = last.split('[').next().unwrap_or(last);
    let mut out = String::with_capacity(last.len() + 4);
    let mut prev_lower = false;
    for c in last.chars() {
        if c.is_ascii_uppercase() {
            if prev_lower {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
            prev_lower = false;
        } else if c == '-' || c == ' ' {
            out.push('_');
            prev_lower = false;
        } else {
            out.push(c);
            prev_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
        }
    }
    out
}

/// Completed years between `birth` and `as_of`; None when born after `as_of`.
/// Born exactly N years before `as_of` is N years old that day.
pub fn age_at(birth: NaiveDate, as_of: NaiveDate) -> Option<i32> {
    if birth > as_of {
        return None;
    }
    let mut years = as_of.year() - birth.year();
    if (as_of.month(), as_of.day()) < (birth.month(), birth.day()) {
        years -= 1;
    }
    Some(years)
}

/// Result of checking the rule packs (`childguard detectors check`).
#[derive(Debug, Default)]
pub struct PackCheck {
    /// Rules checked.
    pub rules: usize,
    /// Examples and negative examples checked.
    pub examples: usize,
    /// Problems found, one line each (never raw values other than the pack's own examples' rule ids).
    pub problems: Vec<String>,
}

/// Verify every pack: unique ids, all rules compile together (building the
/// engine), every example found by its rule, no negative example found.
pub fn check_packs(opts: EngineOptions) -> Result<PackCheck, DetectError> {
    let engine = Engine::new(opts, Fingerprinter::new(b"detectors-check"))?;
    let mut res = PackCheck {
        rules: engine.rules.len(),
        ..Default::default()
    };
    let mut hits = Vec::new();
    for r in &engine.rules {
        if r.spec.examples.is_empty() {
            res.problems
                .push(format!("{} ({}): no examples", r.id, r.source));
        }
        for (i, ex) in r.spec.examples.iter().enumerate() {
            res.examples += 1;
            hits.clear();
            engine.scan_text(ex, &mut hits);
            if !hits.iter().any(|h| h.rule == r.id) {
                res.problems.push(format!(
                    "{} ({}): example #{} is not found",
                    r.id,
                    r.source,
                    i + 1
                ));
            }
        }
        for (i, ex) in r.spec.negative_examples.iter().enumerate() {
            res.examples += 1;
            hits.clear();
            engine.scan_text(ex, &mut hits);
            if hits.iter().any(|h| h.rule == r.id) {
                res.problems.push(format!(
                    "{} ({}): negative example #{} is found",
                    r.id,
                    r.source,
                    i + 1
                ));
            }
        }
    }
    Ok(res)
}

#[cfg(test)]
mod tests;
